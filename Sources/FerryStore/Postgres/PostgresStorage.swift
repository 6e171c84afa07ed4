public import FerryCore
import Foundation
public import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import PostgresNIO

/// The scale-out backend: PostgreSQL, shared by several `ferry serve` processes.
///
/// Same contract as ``SQLiteStorage``. A write transaction allocates its timestamp with an
/// upsert on the kind's row in `timestamps`, which locks that row until commit: writers of one
/// collection are serialised there, across processes, so commit order equals timestamp order
/// and a reader polling `_since` never misses a change that commits late (invariant 2). A write
/// is acknowledged only after its COMMIT returned (invariant 3).
///
/// Sessions are synchronous (the storage protocol's), so each transaction runs on a thread of
/// the storage's own pool and waits there for PostgresNIO's answers; the connections are a small
/// pool of their own. A connection that fails is dropped and replaced, so the server answers 503
/// while the database is away and recovers by itself when it is back.
public final class PostgresStorage: Storage, @unchecked Sendable {
    public struct Configuration: Sendable {
        public var host: String
        public var port: Int
        public var user: String
        public var password: String?
        public var database: String
        /// Most connections (and transactions at once).
        public var poolSize = 10
        /// `statement_timeout` of every connection, in milliseconds (0: none).
        public var statementTimeout = 30_000
        var tls: PostgresConnection.Configuration.TLS = .disable
        /// Seconds to wait for a connection to be made.
        public var connectTimeout: Int64 = 10

        /// From `postgres://USER[:PASS]@HOST[:PORT]/DB[?pool=N&statement_timeout=MS&sslmode=disable|require&connect_timeout=S]`.
        public init(url: String) throws(StorageError) {
            guard let components = URLComponents(string: url), ["postgres", "postgresql"].contains(components.scheme ?? ""),
                  let host = components.host, !host.isEmpty else {
                throw .backend("database: \"\(PostgresStorage.redacted(url))\" is not a postgres://USER:PASS@HOST:PORT/DB URL")
            }
            let database = String(components.path.dropFirst())
            guard !database.isEmpty, !database.contains("/") else { throw .backend("database: the URL must name a database: postgres://USER:PASS@HOST:PORT/DB") }
            guard let user = components.user, !user.isEmpty else { throw .backend("database: the URL must name a user: postgres://USER:PASS@HOST:PORT/DB") }
            self.host = host
            self.port = components.port ?? 5432
            self.user = user.removingPercentEncoding ?? user
            self.password = components.password.map { $0.removingPercentEncoding ?? $0 }
            self.database = database
            for item in components.queryItems ?? [] {
                let value = item.value ?? ""
                switch item.name {
                case "pool":
                    guard let n = Int(value), (1...500).contains(n) else { throw .backend("database: pool must be 1 to 500, not \"\(value)\"") }
                    poolSize = n
                case "statement_timeout":
                    guard let n = Int(value), n >= 0 else { throw .backend("database: statement_timeout must be milliseconds, not \"\(value)\"") }
                    statementTimeout = n
                case "connect_timeout":
                    guard let n = Int64(value), (1...3600).contains(n) else { throw .backend("database: connect_timeout must be 1 to 3600 seconds, not \"\(value)\"") }
                    connectTimeout = n
                case "sslmode":
                    switch value {
                    case "disable": tls = .disable
                    case "require", "verify-full":
                        var tlsConfiguration = TLSConfiguration.makeClientConfiguration()
                        if value == "require" { tlsConfiguration.certificateVerification = .none }
                        do {
                            tls = .require(try NIOSSLContext(configuration: tlsConfiguration))
                        } catch {
                            throw .backend("database: cannot set up TLS: \(error)")
                        }
                    default: throw .backend("database: sslmode must be disable, require or verify-full, not \"\(value)\"")
                    }
                default:
                    throw .backend("database: unknown URL setting \"\(item.name)\" (pool, statement_timeout, connect_timeout, sslmode)")
                }
            }
        }
    }

    public let configuration: Configuration
    let logger: Logger
    let threads: NIOThreadPool
    private let idle = NIOLockedValueBox<[PostgresConnection]>([])
    private let slots: DispatchSemaphore
    private let nextID = NIOLockedValueBox(0)
    /// Where it is, for messages (no password).
    public let displayName: String

    /// Connects, and migrates the schema (once, whichever process comes first).
    public init(configuration: Configuration, logger: Logger = Logger(label: "ferry.store")) async throws {
        self.configuration = configuration
        self.logger = logger
        displayName = "postgres://\(configuration.user)@\(configuration.host):\(configuration.port)/\(configuration.database)"
        threads = NIOThreadPool(numberOfThreads: configuration.poolSize)
        threads.start()
        slots = DispatchSemaphore(value: configuration.poolSize)
        do {
            try await write { session in try (session as! PostgresSession).migrate() }
        } catch {
            // close() waits for connections to close: on a thread that may block, not an event loop.
            _ = try? await NIOThreadPool.singleton.runIfActive { [self] in try close() }
            throw error
        }
    }

    static func redacted(_ url: String) -> String {
        guard var components = URLComponents(string: url), components.password != nil else { return url }
        components.password = "***"
        return components.string ?? url
    }

    // MARK: Connections

    /// How every connection of this storage is made.
    private var connectionConfiguration: PostgresConnection.Configuration {
        var config = PostgresConnection.Configuration(host: configuration.host, port: configuration.port, username: configuration.user,
                                                      password: configuration.password, database: configuration.database, tls: configuration.tls)
        config.options.connectTimeout = .seconds(configuration.connectTimeout)
        return config
    }

    private func connect() throws -> PostgresConnection {
        let config = connectionConfiguration
        let id = nextID.withLockedValue { $0 += 1; return $0 }
        let connection: PostgresConnection
        do {
            connection = try PostgresConnection.connect(on: MultiThreadedEventLoopGroup.singleton.any(), configuration: config, id: id, logger: logger).wait()
        } catch {
            throw StorageError.backend("cannot connect to \(displayName): \(Self.describe(error))")
        }
        if configuration.statementTimeout > 0 {
            _ = try? connection.query(PostgresQuery(unsafeSQL: "SET statement_timeout = \(configuration.statementTimeout)"), logger: logger).wait()
        }
        return connection
    }

    /// Runs `body` on a pooled connection, on a thread that may block.
    private func withConnection<T: Sendable>(_ body: @escaping @Sendable (PostgresConnection) throws -> T) async throws -> T {
        try await threads.runIfActive { [self] in
            slots.wait()
            defer { slots.signal() }
            let pooled = idle.withLockedValue { $0.popLast() }
            let connection = try pooled.flatMap { $0.isClosed ? nil : $0 } ?? connect()
            do {
                let result = try body(connection)
                idle.withLockedValue { $0.append(connection) }
                return result
            } catch let error as PSQLError where error.code == .server {
                // The server refused the statement; the connection is fine (the transaction was rolled back).
                idle.withLockedValue { $0.append(connection) }
                throw error
            } catch let error as StorageError where error.isNotFound {
                idle.withLockedValue { $0.append(connection) }
                throw error
            } catch {
                // Anything else may have left the connection in an unknown state: drop it.
                try? connection.close().wait()
                throw error
            }
        }
    }

    /// - Parameters:
    ///   - begin: the statement that opens the transaction; nil: none (each statement on its own).
    ///   - announcements: NOTIFY payloads sent with the commit (see ``PostgresSession/unannounced``).
    private func transaction<T: Sendable>(_ begin: String?, announcing announcements: [String] = [],
                                          _ body: @escaping @Sendable (any StorageSession) throws -> T) async throws -> T {
        let payloads = announcements.map { "\(processTag) \($0)" }
        do {
            return try await withConnection { [logger] connection in
                let session = PostgresSession(connection: connection, logger: logger, unannounced: payloads.isEmpty ? nil : .init(payloads))
                guard let begin else { return try body(session) }
                try session.execute(begin)
                do {
                    let result = try body(session)
                    try session.announceRest()
                    try session.execute("COMMIT")
                    return result
                } catch {
                    try? session.execute("ROLLBACK")
                    throw error
                }
            }
        } catch let error as PSQLError {
            throw StorageError.backend("PostgreSQL: \(Self.describe(error))")
        }
    }

    public func read<T: Sendable>(_ body: @escaping @Sendable (any StorageSession) throws -> T) async throws -> T {
        try await transaction("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", body)
    }

    public func sharedSecret(proposing proposal: String) async throws -> String? {
        try await write { session in
            let session = session as! PostgresSession
            _ = try session.rows("INSERT INTO ferry_settings (name, value) VALUES ('secret', $1) ON CONFLICT (name) DO NOTHING",
                                 PostgresSession.binds([proposal]))
            return try session.rows("SELECT value FROM ferry_settings WHERE name = 'secret'").first?.decode(String.self)
        }
    }

    public func readSingle<T: Sendable>(_ body: @escaping @Sendable (any StorageSession) throws -> T) async throws -> T {
        try await transaction(nil, body)
    }

    public func write<T: Sendable>(_ body: @escaping @Sendable (any StorageSession) throws -> T) async throws -> T {
        try await transaction("BEGIN", body)
    }

    /// NOTIFY is transactional: the other processes hear of the write exactly when it commits
    /// (never of one rolled back, and a crash after the commit cannot lose the announcement). It
    /// rides on the write's first timestamp allocation, so it costs no round trip of its own.
    public func write<T: Sendable>(announcing announcements: [String], _ body: @escaping @Sendable (any StorageSession) throws -> T) async throws -> T {
        try await transaction("BEGIN", announcing: announcements, body)
    }

    public func ping() async -> Bool {
        (try? await withConnection { [logger] connection in
            try connection.query(PostgresQuery(unsafeSQL: "SELECT 1"), logger: logger).wait().rows.count == 1
        }) == true
    }

    public func close() throws {
        let connections = idle.withLockedValue { all in
            defer { all = [] }
            return all
        }
        for connection in connections { try? connection.close().wait() }
        try threads.syncShutdownGracefully()
    }

    static func describe(_ error: any Error) -> String {
        if let error = error as? PSQLError {
            if let message = error.serverInfo?[.message] { return message }
            if let underlying = error.underlying, "\(underlying)".localizedCaseInsensitiveContains("refused") { return "connection refused" }
            switch error.code {
            case .connectionError, .serverClosedConnection, .uncleanShutdown: return "the connection was lost"
            default: break
            }
            if let underlying = error.underlying { return "\(underlying)" }
            return "\(error.code)"
        }
        let text = "\(error)"
        if text.localizedCaseInsensitiveContains("refused") { return "connection refused" }
        return text
    }

    // MARK: Change announcements (LISTEN/NOTIFY)

    /// The channel several processes announce their writes on.
    static let channel = "ferry_changes"
    /// Tells processes apart, so one does not react to its own announcements.
    let processTag = UUID().uuidString.prefix(8)
    private let listener = NIOLockedValueBox<Task<Void, Never>?>(nil)

    public func listenForChanges(_ handler: @escaping @Sendable (String?) -> Void) {
        let config = connectionConfiguration
        let logger = self.logger
        let tag = String(processTag)
        let task = Task {
            var attempt = 0
            while !Task.isCancelled {
                do {
                    let connection = try await PostgresConnection.connect(configuration: config, id: -1, logger: logger)
                    defer { Task { try? await connection.close() } }
                    attempt = 0
                    // Changes made while not listening are unknown: wake everyone once.
                    handler(nil)
                    for try await notification in try await connection.listen(Self.channel) {
                        let parts = notification.payload.split(separator: " ", maxSplits: 1)
                        guard parts.count == 2, parts[0] != tag else { continue }
                        handler(parts[1] == "*" ? nil : String(parts[1]))
                    }
                } catch {
                    if Task.isCancelled { return }
                    logger.warning("PostgreSQL LISTEN failed; retrying", metadata: ["ferry.error": .string(Self.describe(error))])
                }
                attempt += 1
                try? await Task.sleep(for: .milliseconds(min(5_000, 100 * (1 << min(attempt, 6)))))
            }
        }
        listener.withLockedValue { $0 = task }
    }

    public func stopListening() {
        listener.withLockedValue { $0?.cancel() }
    }

    // MARK: Leading (one process of several does the work that must happen once)

    /// How often a process that does not lead tries to, and a leader checks it still does (seconds).
    static let leadCheckInterval = 2

    /// The lead is a session-level advisory lock, held by a connection of its own: it goes with
    /// that connection, so a leader that dies, or loses its database connection, frees it for the
    /// next process that tries (within ``leadCheckInterval`` seconds). A leader that cannot reach the
    /// database within the interval stops leading (its lock may be gone).
    public func whileLeading(_ role: String, _ body: @escaping @Sendable () async -> Void) async {
        let key = Self.lockKey(role)
        let logger = self.logger
        let config = connectionConfiguration
        let interval = Duration.seconds(Self.leadCheckInterval)
        while !Task.isCancelled {
            do {
                let connection = try await PostgresConnection.connect(configuration: config, id: -2, logger: logger)
                defer { Task { try? await connection.close() } }
                while !Task.isCancelled && !connection.isClosed {
                    let answer = await Self.within(interval) {
                        try await connection.query("SELECT pg_try_advisory_lock(\(key))", logger: logger).collect().first?.decode(Bool.self)
                    }
                    guard let led = answer else { break }  // no answer in time: a new connection
                    if led {
                        logger.info("this process leads \(role)")
                        await withTaskGroup(of: Void.self) { group in
                            group.addTask { await body() }
                            group.addTask {
                                while !Task.isCancelled {
                                    try? await Task.sleep(for: interval)
                                    if Task.isCancelled { return }
                                    let alive = await Self.within(interval) { try await connection.query("SELECT 1", logger: logger).collect().count }
                                    if alive != 1 { return }
                                }
                            }
                            await group.next()
                            group.cancelAll()
                        }
                        if Task.isCancelled { return }
                        logger.warning("this process lost the lead of \(role) (the database connection failed)")
                        break
                    }
                    try await Task.sleep(for: interval)
                }
            } catch {
                if Task.isCancelled { return }
                logger.warning("cannot try to lead \(role); retrying", metadata: ["ferry.error": .string(Self.describe(error))])
            }
            try? await Task.sleep(for: interval)
        }
    }

    /// An advisory lock key for a role: 64 bits of FNV-1a over "ferry:ROLE", the same in every process.
    static func lockKey(_ role: String) -> Int64 {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in ("ferry:" + role).utf8 {
            hash ^= UInt64(byte)
            hash = hash &* 0x0000_0100_0000_01b3
        }
        return Int64(bitPattern: hash)
    }

    /// `body`'s result, or nil when it fails or takes longer than `limit`. The body is cancelled
    /// then, but not waited for: a query to a server that went away may never return
    /// (postgres-nio 1.33), and neither would a task group waiting for it.
    static func within<T: Sendable>(_ limit: Duration, _ body: @escaping @Sendable () async throws -> T?) async -> T? {
        let waiting = NIOLockedValueBox<CheckedContinuation<T?, Never>?>(nil)
        @Sendable func finish(_ value: T?) {
            waiting.withLockedValue { continuation in
                continuation?.resume(returning: value)
                continuation = nil
            }
        }
        return await withCheckedContinuation { continuation in
            waiting.withLockedValue { $0 = continuation }
            let work = Task { finish(try? await body()) }
            Task {
                try? await Task.sleep(for: limit)
                finish(nil)
                work.cancel()
            }
        }
    }
}

extension PostgresStorage: DumpableStorage {
    package func dump() async throws -> [String] {
        try await read { session in
            let session = session as! PostgresSession
            var lines: [String] = []
            for row in try session.rows("SELECT parent_id, resource_name, id, last_modified, deleted, data FROM objects ORDER BY parent_id, resource_name, id") {
                let (parent, resource, id, lastModified, deleted, data) = try row.decode((String, String, String, Int64, Bool, String).self)
                lines.append("object \(parent) \(resource) \(id) \(lastModified) \(deleted ? 1 : 0) \(data)")
            }
            for row in try session.rows("SELECT parent_id, resource_name, last_modified FROM timestamps ORDER BY parent_id, resource_name") {
                let (parent, resource, lastModified) = try row.decode((String, String, Int64).self)
                lines.append("timestamp \(parent) \(resource) \(lastModified)")
            }
            for row in try session.rows("SELECT object_id, permission, principal FROM access_control_entries ORDER BY 1, 2, 3") {
                let (uri, permission, principal) = try row.decode((String, String, String).self)
                lines.append("ace \(uri) \(permission) \(principal)")
            }
            return lines
        }
    }
}
