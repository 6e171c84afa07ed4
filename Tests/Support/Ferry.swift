public import Foundation

/// The `ferry` binary the tests start as a process: FERRY_BIN, or the one `swift build` put next
/// to the test bundle.
public enum Ferry {
    public static var binary: String {
        if let path = ProcessInfo.processInfo.environment["FERRY_BIN"] { return path }
        let exe = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        return URL(fileURLWithPath: exe).deletingLastPathComponent().appendingPathComponent("ferry").path
    }

    /// Runs `ferry ARGS` in `directory` to its end (``Spawn/detached(_:_:in:environment:)``: no
    /// thread of the cooperative pool waits for it).
    /// - Parameter environment: added to ``childEnvironment(_:)``.
    public static func run(_ arguments: [String], in directory: String, environment: [String: String] = [:]) async throws -> Spawn.Result {
        try await Spawn.detached(binary, arguments, in: directory, environment: childEnvironment(environment))
    }

    /// The environment of a `ferry` child: this process's without the credentials a test may have
    /// set, plus `extra`.
    public static func childEnvironment(_ extra: [String: String]) -> [String: String] {
        var env = ProcessInfo.processInfo.environment
        env.removeValue(forKey: "FERRY_SOURCE_AUTH")
        env.removeValue(forKey: "FERRY_TARGET_AUTH")
        env.removeValue(forKey: "FERRY_WEBHOOK_SECRET")
        for (k, v) in extra { env[k] = v }
        return env
    }

    /// Starts `ferry ARGS` in `directory` and returns at once; its stdout and stderr are pipes
    /// (`quiet`: thrown away).
    public static func start(_ arguments: [String], in directory: String, environment: [String: String] = [:], quiet: Bool = false) -> Process {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: binary)
        process.arguments = arguments
        process.currentDirectoryURL = URL(fileURLWithPath: directory)
        process.environment = childEnvironment(environment)
        if quiet {
            process.standardOutput = FileHandle.nullDevice
            process.standardError = FileHandle.nullDevice
        } else {
            process.standardOutput = Pipe()
            process.standardError = Pipe()
        }
        try! process.run()
        return process
    }
}
