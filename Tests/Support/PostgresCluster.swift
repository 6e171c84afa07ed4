import Foundation

/// A throwaway PostgreSQL server for the tests: `initdb` and `pg_ctl` on a temporary folder and
/// a free port, password authentication, stopped and removed when the test process exits.
///
/// Found through `FERRY_PG_BIN`, `pg_config --bindir`, `/usr/lib/postgresql/*/bin` or `PATH`.
/// Without PostgreSQL the tests that need it are skipped (and say so), unless
/// `FERRY_REQUIRE_POSTGRES=1` (CI sets it): then they fail.
public final class PostgresCluster: @unchecked Sendable {
    public static let user = "ferry"
    public static let password = "ferry-test-password"

    public let port: Int
    public let directory: String
    let bin: String
    private let lock = NSLock()
    private var databases = 0

    /// Whether PostgreSQL tests should run: the server is installed, or CI requires them (and they fail without it).
    public static var enabled: Bool { required || binDirectory() != nil }

    /// `FERRY_REQUIRE_POSTGRES=1`: a missing PostgreSQL fails the tests instead of skipping them.
    public static var required: Bool { ProcessInfo.processInfo.environment["FERRY_REQUIRE_POSTGRES"] == "1" }

    /// The one cluster of this test process, started on first use.
    public static func shared() throws -> PostgresCluster {
        try sharedLock.withLock {
            if let cluster = sharedCluster { return cluster }
            let cluster = try PostgresCluster()
            sharedCluster = cluster
            return cluster
        }
    }

    /// A cluster of its own, for a test that stops and starts the server (the shared one serves
    /// tests running at the same time). Removed when the process exits.
    public static func dedicated() throws -> PostgresCluster { try PostgresCluster() }

    nonisolated(unsafe) private static var sharedCluster: PostgresCluster?
    private static let sharedLock = NSLock()

    static func binDirectory() -> String? {
        let fm = FileManager.default
        var candidates: [String] = []
        if let given = ProcessInfo.processInfo.environment["FERRY_PG_BIN"] { candidates.append(given) }
        if let out = try? run("/usr/bin/env", ["pg_config", "--bindir"]), out.status == 0 {
            candidates.append(out.output.trimmingCharacters(in: .whitespacesAndNewlines))
        }
        let versions = ((try? fm.contentsOfDirectory(atPath: "/usr/lib/postgresql")) ?? []).sorted { (Int($0) ?? 0) > (Int($1) ?? 0) }
        candidates += versions.map { "/usr/lib/postgresql/\($0)/bin" }
        candidates += (ProcessInfo.processInfo.environment["PATH"] ?? "").split(separator: ":").map(String.init)
        return candidates.first { fm.isExecutableFile(atPath: $0 + "/initdb") && fm.isExecutableFile(atPath: $0 + "/pg_ctl") }
    }

    private init() throws {
        guard let bin = Self.binDirectory() else {
            throw ClusterError("PostgreSQL is not installed (no initdb/pg_ctl; set FERRY_PG_BIN or apt-get install postgresql)")
        }
        self.bin = bin
        directory = NSTemporaryDirectory() + "ferry-pg-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let data = directory + "/data"
        let passwordFile = directory + "/password"
        try Self.password.write(toFile: passwordFile, atomically: true, encoding: .utf8)
        // PostgreSQL refuses to run as root: run it as the postgres user then.
        let asRoot = geteuid() == 0
        if asRoot { _ = try Self.run("/bin/chown", ["-R", "postgres", directory]) }
        let initdb = try Self.run(asRoot ? "/usr/sbin/runuser" : bin + "/initdb",
                                  (asRoot ? ["-u", "postgres", "--", bin + "/initdb"] : []) +
                                  ["-D", data, "-U", Self.user, "--pwfile", passwordFile, "--auth", "scram-sha-256", "-E", "UTF8", "--no-sync"])
        guard initdb.status == 0 else { throw ClusterError("initdb failed: \(initdb.output)") }
        var started: Int?
        var lastOutput = ""
        for _ in 0..<5 {
            let port = Self.freePort()
            let options = "-p \(port) -k \(directory) -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
            let arguments = ["-D", data, "-l", directory + "/server.log", "-o", options, "-w", "-t", "60", "start"]
            let start = try Self.run(asRoot ? "/usr/sbin/runuser" : bin + "/pg_ctl", (asRoot ? ["-u", "postgres", "--", bin + "/pg_ctl"] : []) + arguments)
            if start.status == 0 {
                started = port
                break
            }
            lastOutput = start.output + ((try? String(contentsOfFile: directory + "/server.log", encoding: .utf8)) ?? "")
        }
        guard let started else { throw ClusterError("pg_ctl start failed: \(lastOutput)") }
        port = started
        let stop = "\(asRoot ? "/usr/sbin/runuser -u postgres -- " : "")\(bin)/pg_ctl -D \(data) -m immediate stop >/dev/null 2>&1; rm -rf \(directory)"
        let first = PostgresCluster.stopLock.withLock {
            PostgresCluster.stopCommands.append(stop)
            return PostgresCluster.stopCommands.count == 1
        }
        if first {
            atexit {
                for command in PostgresCluster.stopCommands { _ = try? PostgresCluster.run("/bin/sh", ["-c", command]) }
            }
        }
    }

    nonisolated(unsafe) static var stopCommands: [String] = []
    static let stopLock = NSLock()

    /// A new, empty database; returns its URL (`postgres://ferry:…@127.0.0.1:PORT/NAME`).
    public func createDatabase(_ prefix: String = "t") throws -> String {
        let name = lock.withLock {
            databases += 1
            return "\(prefix)_\(getpid())_\(databases)"
        }
        let result = try Self.run(bin + "/createdb", ["-h", "127.0.0.1", "-p", String(port), "-U", Self.user, name],
                                  environment: ["PGPASSWORD": Self.password])
        guard result.status == 0 else { throw ClusterError("createdb \(name) failed: \(result.output)") }
        return url(database: name)
    }

    public func url(database: String, user: String = PostgresCluster.user, password: String = PostgresCluster.password) -> String {
        "postgres://\(user):\(password)@127.0.0.1:\(port)/\(database)"
    }

    /// Runs SQL with `psql` (for setting up tables and checking rows); returns its output (`-At`: unaligned, tuples only).
    @discardableResult
    public func psql(_ database: String, _ sql: String) throws -> String {
        let result = try Self.run(bin + "/psql", ["-h", "127.0.0.1", "-p", String(port), "-U", Self.user, "-d", database,
                                                  "-v", "ON_ERROR_STOP=1", "-At", "-c", sql], environment: ["PGPASSWORD": Self.password])
        guard result.status == 0 else { throw ClusterError("psql failed: \(result.output)") }
        return result.output.trimmingCharacters(in: .newlines)
    }

    /// Stops the server (a database that goes away mid-run); ``start()`` brings it back. Only on a
    /// ``dedicated()`` cluster: other tests use the shared one at the same time.
    public func stop() throws {
        let asRoot = geteuid() == 0
        let arguments = ["-D", directory + "/data", "-m", "fast", "-w", "stop"]
        _ = try Self.run(asRoot ? "/usr/sbin/runuser" : bin + "/pg_ctl", (asRoot ? ["-u", "postgres", "--", bin + "/pg_ctl"] : []) + arguments)
    }

    public func start() throws {
        let asRoot = geteuid() == 0
        let options = "-p \(port) -k \(directory) -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
        let arguments = ["-D", directory + "/data", "-l", directory + "/server.log", "-o", options, "-w", "-t", "60", "start"]
        let result = try Self.run(asRoot ? "/usr/sbin/runuser" : bin + "/pg_ctl", (asRoot ? ["-u", "postgres", "--", bin + "/pg_ctl"] : []) + arguments)
        guard result.status == 0 else { throw ClusterError("pg_ctl start failed: \(result.output)") }
    }

    struct ClusterError: Error, CustomStringConvertible {
        let description: String
        init(_ description: String) { self.description = description }
    }

    /// Runs a program and waits for it (``Spawn``: `pg_ctl start` leaves a server running, which
    /// Foundation's Process does not always cope with); its output and errors, in that order.
    static func run(_ executable: String, _ arguments: [String], environment: [String: String] = [:]) throws -> (status: Int32, output: String) {
        let result = try Spawn.run(executable, arguments, environment: ProcessInfo.processInfo.environment.merging(environment) { $1 })
        return (result.status, result.stdout + result.stderr)
    }

    static func freePort() -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = 0
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        _ = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        var bound = sockaddr_in()
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &bound) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) } }
        return Int(UInt16(bigEndian: bound.sin_port))
    }
}
