import Foundation

/// "Look again": one waiter is woken by ``raise()``; a raise while nobody waits is kept for the
/// next ``wait(timeout:)``, and several raises before a wait count as one.
///
/// Used where a wake-up only means "read the change feed again" (event streams, long-polls,
/// `--follow`): merging wake-ups can delay a change, never drop it.
public final class WakeSignal: @unchecked Sendable {
    private let lock = NSLock()
    private var pending = false
    private var closed = false
    private var waiter: CheckedContinuation<Bool, Never>?
    private var waiterID = 0
    private var timer: Task<Void, Never>?

    public init() {}

    /// Whether ``close()`` was called: every wait from now on returns false at once.
    public var isClosed: Bool { lock.withLock { closed } }

    /// Wakes the waiter, or the next one.
    public func raise() {
        let taken = lock.withLock {
            if waiter == nil { pending = true }
            return take()
        }
        Self.resume(taken, true)
    }

    /// Ends the current wait and every later one (the process is stopping).
    public func close() {
        let taken = lock.withLock {
            closed = true
            return take()
        }
        Self.resume(taken, false)
    }

    /// Waits until raised (true), or until `timeout` passes, the task is cancelled or the
    /// signal is closed (false). One waiter at a time.
    public func wait(timeout: Duration) async -> Bool {
        let id = lock.withLock {
            waiterID += 1
            return waiterID
        }
        return await withTaskCancellationHandler {
            await withCheckedContinuation { continuation in
                let immediate: Bool? = lock.withLock {
                    if pending {
                        pending = false
                        return true
                    }
                    if closed || Task.isCancelled { return false }
                    waiter = continuation
                    timer = Task { [weak self] in
                        try? await Task.sleep(for: timeout)
                        if !Task.isCancelled { self?.giveUp(id: id) }
                    }
                    return nil
                }
                if let immediate { continuation.resume(returning: immediate) }
            }
        } onCancel: {
            giveUp(id: id)
        }
    }

    /// Ends wait number `id` (timed out or cancelled) if it is still the one waiting.
    private func giveUp(id: Int) {
        let taken = lock.withLock { waiterID == id ? take() : nil }
        Self.resume(taken, false)
    }

    /// The waiter and its timer, removed (call with the lock held).
    private func take() -> (CheckedContinuation<Bool, Never>, Task<Void, Never>?)? {
        guard let waiter else { return nil }
        defer {
            self.waiter = nil
            timer = nil
        }
        return (waiter, timer)
    }

    private static func resume(_ taken: (CheckedContinuation<Bool, Never>, Task<Void, Never>?)?, _ value: Bool) {
        guard let (waiter, timer) = taken else { return }
        timer?.cancel()
        waiter.resume(returning: value)
    }
}
