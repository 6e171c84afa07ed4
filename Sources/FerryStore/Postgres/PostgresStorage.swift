public import FerryCore
public import FerryPostgres
import Foundation
public import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import PostgresNIO

/// The scale-out backend: PostgreSQL, shared by several `ferry serve` processes.
///
/// Same contract as ``SQLiteStorage``. A write transaction allocates its timestamps on the
/// ``TimestampClock`` and holds them as claims until it ends; readers stop below the oldest
/// claim, so writers of one collection commit in any order and a reader polling `_since` never
/// misses a change that commits late (invariant 2). A write is acknowledged only after its
/// COMMIT returned (invariant 3).
///
/// Sessions are synchronous (the storage protocol's), so each transaction runs on a thread of
/// the storage's own pool and waits there for PostgresNIO's answers; the connections are a small
/// pool of their own. A connection that fails is dropped and replaced, so the server answers 503
/// while the database is away and recovers by itself when it is back.
public final class PostgresStorage: Storage, @unchecked Sendable {
    public struct Configuration: Sendable {
        /// Where the database is and how to sign in (``PostgresAddress``, the one parser of such URLs).
        public var address: PostgresAddress
        /// Most connections (and transactions at once).
        public var poolSize = 10

        /// From `postgres://USER[:PASS]@HOST[:PORT]/DB[?pool=N&statement_timeout=MS&sslmode=disable|require|verify-full&connect_timeout=S]`;
        /// `statement_timeout` is 30 s unless the URL says otherwise (0: none).
        public init(url: String) throws(StorageError) {
            let parsed: PostgresAddress.Parsed
            do {
                parsed = try PostgresAddress.parse(url, extraSettings: ["pool"])
            } catch {
                throw .backend("database: \"\(PostgresAddress.redacted(url))\": \(error.message)")
            }
            address = parsed.address
            if address.statementTimeoutMilliseconds == nil { address.statementTimeoutMilliseconds = 30_000 }
            for (name, value) in parsed.settings where name == "pool" {
                guard let n = Int(value), (1...500).contains(n) else { throw .backend("database: pool must be 1 to 500, not \"\(value)\"") }
                poolSize = n
            }
            // The TLS set-up is checked now, not at the first connection.
            do {
                _ = try address.connectionConfiguration()
            } catch {
                throw .backend("database: \(error.message)")
            }
        }
    }

    public let configuration: Configuration
    /// How every connection of this storage is made (TLS, timeouts, start-up parameters).
    private let driverConfiguration: PostgresConnection.Configuration
    let logger: Logger
    let threads: NIOThreadPool
    private let idle = NIOLockedValueBox<[PostgresLink]>([])
    private let slots: DispatchSemaphore
    private let nextID = NIOLockedValueBox(0)
    /// Where it is, for messages (no password).
    public let displayName: String
    /// Where this process's writes allocate their timestamps.
    private var clock: TimestampClock!

    /// Connects, and migrates the schema (once, whichever process comes first).
    public init(configuration: Configuration, logger: Logger = Logger(label: "ferry.store")) async throws {
        self.configuration = configuration
        self.logger = logger
        displayName = configuration.address.displayName
        do {
            var driver = try configuration.address.connectionConfiguration()
            // Every statement the server prepares (the object read, the upsert, the allocation,
            // the access check, the feed page) is planned once per connection, not at each
            // execution: with the default `auto`, PostgreSQL judged the generic plans dearer than
            // the custom ones and planned the object read again at every PUT (pg_stat_statements:
            // plans = calls, 408 µs of planning against 101 µs of execution), the access check
            // at every page (201 µs against 38). The dynamic statements (filters, sorts) are
            // planned once each either way; only their parameters' estimates are generic.
            driver.options.additionalStartupParameters.append(("plan_cache_mode", "force_generic_plan"))
            driverConfiguration = driver
        } catch {
            throw StorageError.backend("database: \(error.message)")
        }
        threads = NIOThreadPool(numberOfThreads: configuration.poolSize)
        threads.start()
        slots = DispatchSemaphore(value: configuration.poolSize)
        clock = TimestampClock(logger: logger) { [unowned self] in try connect() }
        do {
            try await write { session in try (session as! PostgresSession).migrate() }
        } catch {
            // close() waits for connections to close: on a thread that may block, not an event loop.
            _ = try? await NIOThreadPool.singleton.runIfActive { [self] in try close() }
            throw error
        }
    }

    // MARK: Connections

    private func connect() throws -> PostgresLink {
        let id = nextID.withLockedValue { $0 += 1; return $0 }
        do {
            let connection = try PostgresConnection.connect(on: MultiThreadedEventLoopGroup.singleton.any(), configuration: driverConfiguration,
                                                            id: id, logger: logger).wait()
            return PostgresLink(connection)
        } catch {
            throw StorageError.backend("cannot connect to \(displayName): \(describe(error, connecting: true))")
        }
    }

    /// Runs `body` on a pooled connection, on a thread that may block.
    private func withConnection<T: Sendable>(_ body: @escaping @Sendable (PostgresLink) throws -> T) async throws -> T {
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
            } catch let error as ReadShapeBroken {
                // Refused before its statement was sent.
                idle.withLockedValue { $0.append(connection) }
                throw error
            } catch let error as StorageError where error.isNotFound || error.isTimedOut {
                // Nothing wrong with the connection (a timed-out transaction was rolled back).
                idle.withLockedValue { $0.append(connection) }
                throw error
            } catch {
                // Anything else may have left the connection in an unknown state: drop it.
                try? connection.connection.close().wait()
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
        let deadline = StorageDeadline.current
        do {
            return try await withConnection { [logger, clock, otherListeners] link in
                if let deadline, deadline.isExpired { throw deadline.error }
                // Changed collections are announced only while another process listens (OtherListeners).
                let listeners = begin == "BEGIN" && payloads.contains(where: OtherListeners.isCollection) ? otherListeners : nil
                var session = PostgresSession(link: link, logger: logger, unannounced: payloads.isEmpty ? nil : .init(payloads, listeners: listeners),
                                              deadline: deadline)
                if let listeners, listeners.isStale { session.lookUpOtherListeners(listeners) }
                if begin == "BEGIN" {
                    session.clock = clock
                    session.claims = .init()
                } else {
                    session.listsBelowClaims = true
                }
                guard let begin else { return try body(session) }
                // A write's statements (and its waits for row locks) end with the request's
                // time; its transaction id (which its timestamps are claimed by) comes with it,
                // on its first statement (``PostgresSession/Claims/unsettled``), sent right behind
                // its BEGIN (``PostgresSession/pipelined(_:)``).
                if deadline != nil, session.claims != nil {
                    try session.checkDeadline()
                    session.begin()
                    session.claims?.unsettled = true
                } else {
                    try session.execute(begin)
                }
                do {
                    let result = try body(session)
                    try session.beforeCommit()
                    // A write that sent no statement has nothing to settle before its COMMIT.
                    session.claims?.unsettled = false
                    try session.begun()
                    // Only a write claims the commit: a read commits nothing, and a read that
                    // claimed would leave a later write of the same request without a deadline.
                    // A write's upsert may still be unanswered here (its COMMIT goes right behind
                    // it): if it runs out of the request's time, commit() answers the timeout.
                    if let deadline, session.claims != nil ? !deadline.claim() : deadline.isExpired { throw deadline.error }
                    try session.commit()
                    return result
                } catch {
                    if (try? session.execute("ROLLBACK", checkingDeadline: false)) != nil { session.undoClaimsAfterRollback() }
                    throw error
                }
            }
        } catch let error as PSQLError {
            if let deadline, deadline.isExpired { throw deadline.error }
            throw StorageError.backend("PostgreSQL: \(describe(error))")
        }
    }

    /// A ``ReadShape/oneStatement`` read opens no transaction: its one statement is its own
    /// snapshot, and a `BEGIN` and a `COMMIT` would cost two round trips.
    public func read<T: Sendable>(_ shape: ReadShape, _ body: @escaping @Sendable (any StorageSession) throws -> T) async throws -> T {
        let snapshot = "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"
        switch shape {
        case .snapshot:
            return try await transaction(snapshot, body)
        case .oneStatement:
            return try await ReadShape.runOneStatement(body, direct: { try await transaction(nil, $0) },
                                                       snapshot: { try await transaction(snapshot, $0) })
        }
    }

    public func sharedSecret(proposing proposal: String) async throws -> String? {
        try await write { session in
            let session = session as! PostgresSession
            _ = try session.rows("INSERT INTO ferry_settings (name, value) VALUES ('secret', $1) ON CONFLICT (name) DO NOTHING",
                                 PostgresSession.binds([proposal]))
            return try session.rows("SELECT value FROM ferry_settings WHERE name = 'secret'").first?.decode(String.self)
        }
    }

    public func write<T: Sendable>(_ body: @escaping @Sendable (any StorageSession) throws -> T) async throws -> T {
        try await transaction("BEGIN", body)
    }

    /// NOTIFY is transactional: the other processes hear of the write exactly when it commits
    /// (never of one rolled back, and a crash after the commit cannot lose the announcement). It
    /// rides on the statement that releases the write's claims: its first upsert outside a
    /// savepoint, else the statement before its COMMIT.
    public func write<T: Sendable>(announcing announcements: [String], _ body: @escaping @Sendable (any StorageSession) throws -> T) async throws -> T {
        try await transaction("BEGIN", announcing: announcements, body)
    }

    /// `pg_database_size` of the server's database (every table and index in it).
    public func sizeInBytes() async -> Int64? {
        try? await withConnection { [logger] link in
            try PostgresSession(link: link, logger: logger).rows("SELECT pg_database_size(current_database())").first?.decode(Int64.self)
        }
    }

    public func ping() async -> Bool {
        (try? await withConnection { [logger] link in
            try PostgresSession(link: link, logger: logger).rows("SELECT 1").count == 1
        }) == true
    }

    public func close() throws {
        let connections = idle.withLockedValue { all in
            defer { all = [] }
            return all
        }
        for link in connections { try? link.connection.close().wait() }
        clock.close()
        try threads.syncShutdownGracefully()
    }

    /// `error` in words (``PostgresFailure``), without any password.
    func describe(_ error: any Error, connecting: Bool = false) -> String {
        PostgresFailure.explain(error, configuration.address, connecting: connecting).message
    }

    // MARK: Change announcements (LISTEN/NOTIFY)

    /// The channel several processes announce their writes on.
    static let channel = "ferry_changes"
    /// Tells processes apart, so one does not react to its own announcements.
    let processTag = UUID().uuidString.prefix(8)
    private let listener = NIOLockedValueBox<Task<Void, Never>?>(nil)
    /// Whether another process listens (its changed collections are announced only then).
    let otherListeners = OtherListeners()

    public func listenForChanges(_ handler: @escaping @Sendable (String?) -> Void) {
        let config = driverConfiguration
        let logger = self.logger
        let tag = String(processTag)
        let listeners = otherListeners
        let task = Task {
            var attempt = 0
            while !Task.isCancelled {
                do {
                    let connection = try await PostgresConnection.connect(configuration: config, id: -1, logger: logger)
                    defer { Task { try? await connection.close() } }
                    if attempt > 0 { logger.info("PostgreSQL LISTEN connected again", metadata: ["ferry.attempts": "\(attempt)"]) }
                    attempt = 0
                    let notifications = try await connection.listen(Self.channel)
                    // Listening now: the other processes announce their changed collections while
                    // this connection holds the lock (OtherListeners).
                    let own = try await connection.query("SELECT pg_backend_pid() FROM (SELECT pg_advisory_lock_shared(\(OtherListeners.key))) AS locked",
                                                         logger: logger).collect().first?.decode(Int32.self)
                    listeners.setOwnBackend(own)
                    defer { listeners.setOwnBackend(nil) }
                    // Changes made while not listening are unknown: wake everyone, now and twice
                    // more, after the writes that decided before they saw this one have committed.
                    handler(nil)
                    let wakes = Task {
                        for delay in [2, 5] {
                            guard (try? await Task.sleep(for: .seconds(delay))) != nil else { return }
                            handler(nil)
                        }
                    }
                    defer { wakes.cancel() }
                    for try await notification in notifications {
                        let parts = notification.payload.split(separator: " ", maxSplits: 1)
                        guard parts.count == 2, parts[0] != tag else { continue }
                        handler(parts[1] == "*" ? nil : String(parts[1]))
                    }
                } catch {
                    if Task.isCancelled { return }
                    // Once when the failures start, then about once a minute (every attempt
                    // filled the log several times a second while a database was away).
                    if attempt % 12 == 0 {
                        logger.warning("PostgreSQL LISTEN failed; retrying with back-off (up to every 5 s) until it is back",
                                       metadata: ["ferry.error": .string(self.describe(error)), "ferry.attempts": "\(attempt + 1)"])
                    } else {
                        logger.debug("PostgreSQL LISTEN failed again", metadata: ["ferry.error": .string(self.describe(error))])
                    }
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
        let config = driverConfiguration
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
                logger.warning("cannot try to lead \(role); retrying", metadata: ["ferry.error": .string(self.describe(error))])
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
            for row in try session.rows("SELECT parent_id, resource_name, id, last_modified, deleted, data, coalesce(encode(content_hash, 'hex'), '-') FROM objects ORDER BY parent_id, resource_name, id") {
                let (parent, resource, id, lastModified, deleted, data, hash) = try row.decode((String, String, String, Int64, Bool, String, String).self)
                lines.append("object \(parent) \(resource) \(id) \(lastModified) \(deleted ? 1 : 0) \(data) \(hash)")
            }
            for row in try session.rows("SELECT parent_id, resource_name, last_modified FROM timestamps ORDER BY parent_id, resource_name") {
                let (parent, resource, lastModified) = try row.decode((String, String, Int64).self)
                lines.append("timestamp \(parent) \(resource) \(lastModified)")
            }
            for row in try session.rows("SELECT object_id, permission, principal FROM access_control_entries ORDER BY 1, 2, 3") {
                let (uri, permission, principal) = try row.decode((String, String, String).self)
                lines.append("ace \(uri) \(permission) \(principal)")
            }
            for row in try session.rows("SELECT parent_id, resource_name, horizon FROM tombstone_horizons ORDER BY 1, 2") {
                let (parent, resource, horizon) = try row.decode((String, String, Int64).self)
                lines.append("horizon \(parent) \(resource) \(horizon)")
            }
            return lines
        }
    }
}
