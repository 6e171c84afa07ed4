public import Foundation

extension Process {
    /// Stops the process for good without waiting forever: `signal` (SIGTERM by default), up to
    /// `seconds` for it to end, then SIGKILL and as long again. Foundation's `waitUntilExit()`
    /// waits until Foundation itself has seen the child end; once, in a test's deinit, it never
    /// did, and the run hung for 25 minutes after the server was already gone.
    public func stop(signal: Int32 = 15 /* SIGTERM */, seconds: Double = 10) {
        guard processIdentifier > 0 else { return }
        if isRunning { kill(processIdentifier, signal) }
        if waitForExit(seconds: seconds) { return }
        kill(processIdentifier, SIGKILL)
        _ = waitForExit(seconds: seconds)
    }

    /// Waits up to `seconds` for the process to end; whether it did.
    @discardableResult
    public func waitForExit(seconds: Double) -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        while isRunning {
            if Date() > deadline { return false }
            usleep(10_000)
        }
        return true
    }

    /// Waits for the process to end on a thread of its own. A test that waited with
    /// `waitUntilExit()` held a thread of Swift's cooperative pool (there are as many as cores):
    /// two kill -9 tests doing so at once left none for the in-process servers and clients of
    /// the tests running beside them, and the whole suite hung (it did, in a fresh-clone run).
    public func exited() async {
        let process = UncheckedProcess(process: self)
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            Thread.detachNewThread {
                process.process.waitUntilExit()
                continuation.resume()
            }
        }
    }
}

/// A `Process` handed to the thread that waits for it (it is not `Sendable`; only
/// `waitUntilExit()` is called on it there).
private struct UncheckedProcess: @unchecked Sendable {
    let process: Process
}
