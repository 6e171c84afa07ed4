public import Foundation

/// A `ferry serve` child process (the binary of ``Ferry/binary``) on a data folder, on loopback.
///
/// What it prints is collected for its whole life (a full pipe would block it); it is stopped
/// (SIGTERM, then SIGKILL) when the last one holding it lets go.
public final class ServeProcess: @unchecked Sendable {
    public let process = Process()
    /// The port the server listens on.
    public let port: Int
    /// The data folder.
    public let data: String
    /// The temporary data folder this server keeps while it lives (nil when given a path): a
    /// restart on the same folder hands it to the next server.
    public let directory: TempDir?
    private let log = LockedData()

    /// A server on the data folder `data` (made when missing), kept when the server ends.
    /// - Parameters:
    ///   - port: the port to take (again, after a restart); 0 picks a free one.
    ///   - extra: more `ferry serve` flags.
    ///   - environment: added to this process's environment.
    public convenience init(data: String, port: Int = 0, extra: [String] = [], logLevel: String = "notice",
                            environment: [String: String] = [:]) throws {
        try self.init(data: data, keeping: nil, port: port, extra: extra, logLevel: logLevel, environment: environment)
    }

    /// A server on `directory` (a new temporary folder when nil), which it keeps while it lives.
    public convenience init(directory: TempDir? = nil, port: Int = 0, extra: [String] = [], logLevel: String = "notice",
                            environment: [String: String] = [:]) throws {
        let directory = try directory ?? TempDir()
        try self.init(data: directory.path, keeping: directory, port: port, extra: extra, logLevel: logLevel, environment: environment)
    }

    private init(data: String, keeping directory: TempDir?, port: Int, extra: [String], logLevel: String,
                 environment: [String: String]) throws {
        self.data = data
        self.directory = directory
        process.executableURL = URL(fileURLWithPath: Ferry.binary)
        process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        process.arguments = ["serve", "--port", String(port), "--data", data, "--log-level", logLevel] + extra
        // The notice line names the URL with the port the OS picked.
        self.port = try launch(process, output: Pipe(), port: #"127\.0\.0\.1:(\d+)/v1/"#, what: "ferry serve", log: log)
    }

    deinit {
        process.stop()
    }

    /// Everything the server printed so far, stdout and stderr together.
    public var printed: String { log.text }

    /// Sends `signal` and returns at once.
    public func kill(_ signal: Int32) {
        Foundation.kill(process.processIdentifier, signal)
    }

    /// `kill -9`, waiting for the end: the server dies mid-request, as in a crash.
    public func crash() {
        process.stop(signal: SIGKILL)
    }

    /// Waits up to `timeout` seconds for the server to end; its exit status, nil if it did not end.
    public func waitForExit(timeout: TimeInterval) -> Int32? {
        process.waitForExit(seconds: timeout) ? process.terminationStatus : nil
    }
}
