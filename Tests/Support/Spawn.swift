public import Foundation

/// Runs a program to its end with `posix_spawn` and `waitpid`, its output going to files.
///
/// Foundation's `Process.waitUntilExit()` waits until Foundation itself has seen the child end,
/// and with many children started and ended from many threads it sometimes never does: a
/// fresh-clone CI run hung in it with the child long gone. `waitpid` on the child's own id always
/// returns. Output goes to files, so a chatty child never blocks on a full pipe.
public enum Spawn {
    public struct Result: Sendable {
        public var status: Int32
        public var stdout: String
        public var stderr: String

        public init(status: Int32, stdout: String, stderr: String) {
            self.status = status
            self.stdout = stdout
            self.stderr = stderr
        }
    }

    public struct Failure: Error, CustomStringConvertible {
        public let description: String

        public init(_ description: String) { self.description = description }
    }

    /// ``run(_:_:in:environment:)`` on a thread of its own: a test waiting here never holds a
    /// thread of Swift's cooperative pool (as many as cores), which every in-process server and
    /// client of the other tests running meanwhile needs.
    public static func detached(_ executable: String, _ arguments: [String], in directory: String? = nil,
                                environment: [String: String] = ProcessInfo.processInfo.environment) async throws -> Result {
        try await withCheckedThrowingContinuation { continuation in
            Thread.detachNewThread {
                continuation.resume(with: Swift.Result { try run(executable, arguments, in: directory, environment: environment) })
            }
        }
    }

    /// - Parameters:
    ///   - directory: the child's working folder (nil: this process's).
    ///   - environment: the child's whole environment.
    /// - Returns: the exit status (128 + the signal's number when a signal ended it) and the output.
    public static func run(_ executable: String, _ arguments: [String], in directory: String? = nil,
                           environment: [String: String] = ProcessInfo.processInfo.environment) throws -> Result {
        let base = NSTemporaryDirectory() + "ferry-spawn-" + UUID().uuidString
        defer {
            try? FileManager.default.removeItem(atPath: base + ".out")
            try? FileManager.default.removeItem(atPath: base + ".err")
        }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, base + ".out", O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        posix_spawn_file_actions_addopen(&actions, 2, base + ".err", O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        if let directory { _ = addChdir(&actions, directory) }
        let argv = ([executable] + arguments).map { strdup($0) } + [nil]
        let envp = environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer {
            for pointer in argv { free(pointer) }
            for pointer in envp { free(pointer) }
        }
        var pid: pid_t = 0
        let spawned = posix_spawn(&pid, executable, &actions, nil, argv, envp)
        guard spawned == 0 else { throw Failure("cannot run \(executable): \(String(cString: strerror(spawned)))") }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) == -1 && errno == EINTR {}
        let exitStatus = (status & 0x7f) == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
        func read(_ path: String) -> String {
            String(decoding: FileManager.default.contents(atPath: path) ?? Data(), as: UTF8.self)
        }
        return Result(status: exitStatus, stdout: read(base + ".out"), stderr: read(base + ".err"))
    }
}

/// glibc's `posix_spawn_file_actions_addchdir_np` (2.29+), which the Glibc module does not import.
@_silgen_name("posix_spawn_file_actions_addchdir_np")
private func addChdir(_ actions: UnsafeMutablePointer<posix_spawn_file_actions_t>, _ path: UnsafePointer<CChar>) -> Int32
