public import FerryCore
import Foundation
import GRDB
import GRDBSQLite
public import Logging

/// The embedded backend: one SQLite file in WAL mode (GRDB `DatabasePool`).
///
/// Writes are serialised by SQLite; timestamps are allocated inside the write
/// transaction, so commit order equals timestamp order and a reader polling
/// `_since` never misses a change (invariant 2). WAL with `synchronous=NORMAL`
/// keeps every committed transaction across a crash of the process (invariant 3);
/// `synchronous=FULL` (``Configuration/fullSync``) also survives power loss.
public final class SQLiteStorage: Storage {
    /// Options of the SQLite backend.
    public struct Configuration: Sendable {
        /// `synchronous=FULL`: fsync on every commit (survives power loss, slower).
        public var fullSync: Bool = false
        /// How long a connection waits for a lock before failing.
        public var busyTimeout: Double = 10
        /// Maximum concurrent readers.
        public var maximumReaderCount: Int = 8

        public init(fullSync: Bool = false) {
            self.fullSync = fullSync
        }
    }

    /// The open database, opened again when it was read-only and its folder became writable.
    let database: ReopeningPool
    let groupCommit: GroupCommit
    /// Copies the write-ahead log into the database beside the writer.
    let checkpointer: Checkpointer
    /// Grant checks and permissions read since the last write (``ACLCache``).
    let acl = ACLCache()
    public let path: String

    /// Opens (creating if needed) the database at `path` and migrates its schema.
    public init(path: String, configuration: Configuration = .init(), logger: Logger = Logger(label: "ferry.store")) throws {
        self.path = path
        var config = GRDB.Configuration()
        config.busyMode = .timeout(configuration.busyTimeout)
        config.maximumReaderCount = configuration.maximumReaderCount
        let fullSync = configuration.fullSync
        let checkpointer = Checkpointer(path: path, busyTimeout: configuration.busyTimeout)
        self.checkpointer = checkpointer
        config.prepareDatabase { db in
            try db.execute(sql: "PRAGMA synchronous = \(fullSync ? "FULL" : "NORMAL")")
            try db.execute(sql: "PRAGMA cache_size = -32000")
            // Savepoint journals in memory: each sub-request of a batch runs in a savepoint, and
            // on a file they cost a write system call per changed page.
            try db.execute(sql: "PRAGMA temp_store = MEMORY")
            // The writer's log is copied into the database beside it, not by it (Checkpointer).
            if !db.configuration.readonly { checkpointer.install(on: db) }
        }
        do {
            database = try ReopeningPool(path: path, configuration: config, logger: logger)
        } catch {
            let why = WritableFolder.problem(for: path).map { " (\($0))" } ?? ""
            throw StorageError.backend("cannot open the SQLite database at \(path): \(error)\(why)")
        }
        groupCommit = GroupCommit(writer: { [database] in database.current },
                                  beforeCommit: { [acl] in acl.commitStarting() }, afterEach: { [acl] in acl.writeEnded() })
    }

    /// The pool to use now (see ``ReopeningPool``).
    var pool: DatabasePool { database.current }

    /// The migration that rebuilds the objects table (``ReopeningPool`` vacuums the file after it).
    static let parentNumbers = "v6-parent-numbers"

    static var migrator: DatabaseMigrator {
        var migrator = DatabaseMigrator()
        migrator.registerMigration("v1") { db in
            try db.execute(sql: """
                CREATE TABLE objects (
                    parent_id TEXT NOT NULL,
                    resource_name TEXT NOT NULL,
                    id TEXT NOT NULL,
                    last_modified INTEGER NOT NULL,
                    deleted INTEGER NOT NULL DEFAULT 0,
                    data TEXT NOT NULL
                );
                CREATE UNIQUE INDEX objects_key ON objects (parent_id, resource_name, id);
                CREATE INDEX objects_modified ON objects (parent_id, resource_name, last_modified);
                CREATE TABLE timestamps (
                    parent_id TEXT NOT NULL,
                    resource_name TEXT NOT NULL,
                    last_modified INTEGER NOT NULL,
                    PRIMARY KEY (parent_id, resource_name)
                ) WITHOUT ROWID;
                CREATE TABLE access_control_entries (
                    object_id TEXT NOT NULL,
                    permission TEXT NOT NULL,
                    principal TEXT NOT NULL,
                    PRIMARY KEY (object_id, permission, principal)
                ) WITHOUT ROWID;
                CREATE INDEX access_control_entries_principal ON access_control_entries (principal, permission);
                """)
        }
        migrator.registerMigration("v2-groups") { db in
            // Group memberships are looked up on every authenticated request. A partial index:
            // statements on `objects` write their kind in, never bind it (see
            // ``SQLQueryBuilder/resourceName(_:)``), or SQLite plans them again at every execution.
            try db.execute(sql: "CREATE INDEX objects_groups ON objects (parent_id, id) WHERE resource_name = 'group' AND deleted = 0")
        }
        migrator.registerMigration("v3-tombstone-horizons") { db in
            // Where retention purged a kind's tombstones up to (see TombstoneRetention).
            try db.execute(sql: """
                CREATE TABLE tombstone_horizons (
                    parent_id TEXT NOT NULL,
                    resource_name TEXT NOT NULL,
                    horizon INTEGER NOT NULL,
                    PRIMARY KEY (parent_id, resource_name)
                ) WITHOUT ROWID
                """)
        }
        migrator.registerMigration("v4-content-hashes") { db in
            // Each live record's content hash (ContentHash), so reconciliation parses no JSON.
            // Filled in by v6, which runs the backfill on the table as the statements know it now.
            try db.execute(sql: "ALTER TABLE objects ADD COLUMN content_hash BLOB")
        }
        migrator.registerMigration("v5-no-principal-index") { db in
            // Every new record gets its creator's write entry, and this index was a third of what
            // the single writer spent on one (its key is the principal, the permission and the
            // whole object URI). Only `GET /v1/permissions` looked entries up by principal
            // (``SQLiteSession/grants(of:)``), which now reads the table through.
            try db.execute(sql: "DROP INDEX access_control_entries_principal")
        }
        migrator.registerMigration(parentNumbers) { db in
            // An object's parent is a number (`parents`), not its URI: every key of the objects
            // table and of its two indexes started with the parent's URI (about 30 bytes, compared
            // at each step down a B-tree). SQLite's share of the single writer's work on a new
            // record is 7-10 % smaller, and the file about a fifth (bench/README). Rows keep their rowids,
            // so the table stays in the order they were written (a page of the change feed reads
            // neighbouring pages).
            try db.execute(sql: """
                CREATE TABLE parents (number INTEGER PRIMARY KEY, uri TEXT NOT NULL UNIQUE);
                INSERT INTO parents (uri) SELECT DISTINCT parent_id FROM objects ORDER BY parent_id;
                CREATE TABLE objects_numbered (
                    parent INTEGER NOT NULL,
                    resource_name TEXT NOT NULL,
                    id TEXT NOT NULL,
                    last_modified INTEGER NOT NULL,
                    deleted INTEGER NOT NULL DEFAULT 0,
                    data TEXT NOT NULL,
                    content_hash BLOB
                );
                INSERT INTO objects_numbered (rowid, parent, resource_name, id, last_modified, deleted, data, content_hash)
                    SELECT o.rowid, p.number, o.resource_name, o.id, o.last_modified, o.deleted, o.data, o.content_hash
                    FROM objects o JOIN parents p ON p.uri = o.parent_id ORDER BY o.rowid;
                DROP TABLE objects;
                ALTER TABLE objects_numbered RENAME TO objects;
                CREATE UNIQUE INDEX objects_key ON objects (parent, resource_name, id);
                CREATE INDEX objects_modified ON objects (parent, resource_name, last_modified);
                CREATE INDEX objects_groups ON objects (parent, id) WHERE resource_name = 'group' AND deleted = 0;
                """)
            // Live records of a database older than v4 (none for a newer one).
            try SQLiteSession(db: db).backfillContentHashes()
        }
        return migrator
    }

    /// A ``ReadShape/oneStatement`` read runs without a transaction: the body's statement is its
    /// own snapshot, and a `BEGIN` and a `COMMIT` around it cost as much as a short statement (5 %
    /// of a GET's time).
    ///
    /// A read hops threads twice: to a reader's queue and back to the task (``Readers``; GRDB's pool
    /// hopped three times). Reading on the calling thread instead (GRDB's synchronous read) was
    /// measured slower twice, in A/B runs of one binary: GET 2,048-2,452 against 3,499-3,949
    /// req/s, a page of 100 1,137-1,193 against 1,565-2,304. Tried again for one-statement reads
    /// only (2026-12-04): CPU a request fell on a loaded machine (GET 0.65-0.85x; context switches
    /// a GET 4 -> 1.2), but on the quiet machine it lost against the pool's callback reads on both
    /// counts (GET 12,375 against 15,463 req/s at 134 against 110 µs of CPU, the page 6,128
    /// against 7,457 at 292 against 241 µs): with two cores Swift's cooperative pool has two
    /// threads, and a read on one of them holds back every task queued behind it.
    public func read<T: Sendable>(_ shape: ReadShape, _ body: @escaping @Sendable (any StorageSession) throws -> T) async throws -> T {
        switch shape {
        case .snapshot:
            return try await reading(snapshot: true, body)
        case .oneStatement:
            return try await ReadShape.runOneStatement(body, direct: { try await reading(snapshot: false, $0) },
                                                       snapshot: { try await reading(snapshot: true, $0) })
        }
    }

    /// `body` on a reader, in a read transaction when `snapshot`, stopped at the request's deadline.
    ///
    /// A read that finds its pool closed, or fails while it is (the database being opened again,
    /// read-write, by ``ReopeningPool``), waits for the new pool and runs again there.
    private func reading<T: Sendable>(snapshot: Bool, again: Bool = false, _ body: @escaping @Sendable (any StorageSession) throws -> T) async throws -> T {
        let deadline = StorageDeadline.current
        let start = acl.reading
        let cache = (cache: start.cache, version: start.version)
        let work = { @Sendable (cached: Bool) in
            { @Sendable (db: Database) throws -> T in
                if let deadline, deadline.isExpired { throw deadline.error }
                return try Self.stopping(db, at: deadline) { try body(SQLiteSession(db: db, acl: cached ? cache : nil)) }
            }
        }
        let readers = database.readers
        do {
            if !start.committing {
                let value = try await Self.read(readers, snapshot: snapshot, work(true))
                if start.cache.unchanged(since: start.version) { return value }
            }
            // A commit ran while it read: its statements (outside a transaction) and the cache's
            // answers may come from both sides of it. Once more from one snapshot, without the cache.
            return try await Self.read(readers, snapshot: true, work(false))
        } catch {
            if let deadline, deadline.isExpired { throw deadline.error }
            // A read that failed on readers being closed (whatever the error: a reader closed
            // under it, or the closed readers' own) runs once more on the new ones.
            if !again, ReopeningPool.isClosed(error) || database.isReopening || database.readers !== readers {
                await database.reopened()
                return try await reading(snapshot: snapshot, again: true, body)
            }
            throw Self.translate(error, "read")
        }
    }

    /// `work` on a reader, in a read transaction when `snapshot`: two thread hops (``Readers``).
    private static func read<T: Sendable>(_ readers: Readers, snapshot: Bool,
                                          _ work: @escaping @Sendable (Database) throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            readers.read(snapshot: snapshot) { result in
                continuation.resume(with: Result { try work(result.get()) })
            }
        }
    }

    /// Concurrent writes share a transaction (``GroupCommit``); each is answered after it commits.
    /// Under a ``StorageDeadline`` a write that runs out of time is rolled back, never committed.
    ///
    /// While the database is read-only (its folder was when the server opened it), a write first
    /// opens it again if the folder has become writable (``ReopeningPool/reopenIfDue()``).
    public func write<T: Sendable>(_ body: @escaping @Sendable (any StorageSession) throws -> T) async throws -> T {
        let deadline = StorageDeadline.current
        if database.isReadOnly { await database.reopenIfDue() }
        return try await withCheckedThrowingContinuation { continuation in
            groupCommit.submit(GroupedWrite(body, deadline: deadline, continuation: continuation))
        }
    }

    /// `work` on `db`, its statements interrupted (`SQLITE_INTERRUPT`) once `deadline` expires:
    /// SQLite's progress handler asks every 1000 virtual-machine steps.
    static func stopping<R>(_ db: Database, at deadline: StorageDeadline?, _ work: () throws -> R) throws -> R {
        guard let deadline, let connection = db.sqliteConnection else { return try work() }
        sqlite3_progress_handler(connection, 1000, { context in
            Unmanaged<StorageDeadline>.fromOpaque(context!).takeUnretainedValue().isExpired ? 1 : 0
        }, Unmanaged.passUnretained(deadline).toOpaque())
        defer { sqlite3_progress_handler(connection, 0, nil, nil) }
        return try withExtendedLifetime(deadline) { try work() }
    }

    /// A database error as the storage layer reports it; other errors (the API's own) pass as they are.
    static func translate(_ error: any Error, _ operation: String) -> any Error {
        guard let error = error as? DatabaseError else { return error }
        let message = "SQLite \(operation) failed: \(error.message ?? "\(error.resultCode)")"
        if error.resultCode == .SQLITE_READONLY {
            // SQLite opened the file read-only (its folder or file system was read-only when the
            // server started): writes resume once the folder is writable (ReopeningPool).
            return StorageError.backend(message + " (the data folder was read-only when the server opened it: writes are refused until it is writable again, then they resume by themselves; reads keep working)")
        }
        return StorageError.backend(message)
    }

    /// SQLite's progress handler interrupts a read at its deadline (``stopping(_:at:_:)``).
    public var stopsReadsAtDeadline: Bool { true }

    /// The database file and its write-ahead log.
    public func sizeInBytes() async -> Int64? {
        let sizes = [path, path + "-wal"].compactMap { file in
            (try? FileManager.default.attributesOfItem(atPath: file)[.size] as? NSNumber)?.int64Value
        }
        return sizes.isEmpty ? nil : sizes.reduce(0, +)
    }

    /// What SQLite holds in memory in this process, over all its connections: page caches
    /// (`cache_size`, per connection), prepared statements, schema. Bounded by the settings, so it
    /// grows with the database up to them and no further.
    public static func memoryInUse() -> Int64 { sqlite3_memory_used() }

    public func ping() async -> Bool {
        (try? await Self.read(database.readers, snapshot: false) { db in try Int.fetchOne(db, sql: "SELECT 1") }) == 1
    }

    public func close() throws {
        try checkpointer.close()
        try database.close()
    }
}

/// The timestamps a write transaction moved, kept in memory and stored once before it commits
/// (``store(_:)``): a batch of a thousand records into one collection updates the collection's
/// timestamp row once, not a thousand times. Only the writer thread touches it.
final class PendingTimestamps: @unchecked Sendable {
    var values: [ResourceKey: Int64] = [:]
    /// The parents' numbers this transaction looked up or gave (``SQLiteSession/parentNumber(_:)``).
    var parents: [String: Int64] = [:]

    /// Writes every moved timestamp; the group calls it just before `COMMIT`.
    func store(_ db: Database) throws {
        let statement = try db.cachedStatement(sql: """
            INSERT INTO timestamps (parent_id, resource_name, last_modified) VALUES (?, ?, ?)
            ON CONFLICT (parent_id, resource_name) DO UPDATE SET last_modified = excluded.last_modified
            """)
        for (key, value) in values {
            try statement.execute(arguments: [key.parentID, key.resourceName, value])
        }
        values = [:]
    }
}

/// A transaction on the SQLite database.
struct SQLiteSession: ObjectRows {
    let db: Database
    /// In a write transaction: the timestamps it moved, not yet stored (nil in a read).
    var pending: PendingTimestamps? = nil
    /// In a read session: the storage's ``ACLCache`` and its version when the session began.
    var acl: (cache: ACLCache, version: UInt64)? = nil

    func timestamp(_ key: ResourceKey) throws -> Int64 {
        if let value = pending?.values[key] { return value }
        return try RawStatement(db, "SELECT last_modified FROM timestamps WHERE parent_id = ? AND resource_name = ?",
                                [.text(key.parentID), .text(key.resourceName)]).first { $0.int(0) } ?? 0
    }

    func savepoint<T>(_ body: () throws -> T) throws -> T {
        try Self.savepoint(db, pending, body)
    }

    /// `body` in a savepoint of the open transaction: undone when it throws, with the
    /// timestamps it moved. The statements are prepared once per connection (GRDB's
    /// `inSavepoint` prepares them on every call, which cost a tenth of a batch of record writes).
    static func savepoint<T>(_ db: Database, _ pending: PendingTimestamps?, _ body: () throws -> T) throws -> T {
        let moved = pending.map { ($0.values, $0.parents) }
        try db.cachedStatement(sql: "SAVEPOINT ferry").execute()
        let result: T
        do {
            result = try body()
        } catch {
            if let pending, let moved { (pending.values, pending.parents) = moved }
            // An error that already undid the whole transaction (disk full, I/O) leaves no savepoint.
            if db.isInsideTransaction {
                try db.cachedStatement(sql: "ROLLBACK TO SAVEPOINT ferry").execute()
                try db.cachedStatement(sql: "RELEASE SAVEPOINT ferry").execute()
            }
            throw error
        }
        try db.cachedStatement(sql: "RELEASE SAVEPOINT ferry").execute()
        return result
    }

    func raiseTimestamp(_ key: ResourceKey, to value: Int64) throws {
        guard let pending else { throw StorageError.backend("SQLite write outside a write transaction") }
        pending.values[key] = max(try timestamp(key), value)
    }

    /// Kept in memory and stored with the transaction (``PendingTimestamps``).
    func allocateTimestamp(_ key: ResourceKey, requested: Int64?) throws -> Int64 {
        guard let pending else { throw StorageError.backend("SQLite write outside a write transaction") }
        let previous = try timestamp(key)
        var next = Timestamp.next(after: previous)
        if let requested, requested > previous { next = requested }
        pending.values[key] = next
        return next
    }

    /// An objects statement's parent: the number its URI has in `parents` (see the v6 migration).
    /// SQLite looks the number up once a statement, before the objects' index; no row in
    /// `parents` means no object under it.
    static let parentIs = "parent = (SELECT number FROM parents WHERE uri = ?)"

    /// The number of the parent `uri` in a write, given now if it has none; kept for the
    /// transaction, so a batch into one collection looks it up once.
    func parentNumber(_ uri: String) throws -> Int64 {
        guard let pending else { throw StorageError.backend("SQLite write outside a write transaction") }
        if let known = pending.parents[uri] { return known }
        let number = try RawStatement(db, "SELECT number FROM parents WHERE uri = ?", [.text(uri)]).first { $0.int(0) }
            ?? RawStatement(db, "INSERT INTO parents (uri) VALUES (?) RETURNING number", [.text(uri)]).first { $0.int(0) }
        guard let number else { throw StorageError.backend("SQLite gave the parent \(uri) no number") }
        pending.parents[uri] = number
        return number
    }

    func get(_ key: ResourceKey, id: String, includeDeleted: Bool) throws -> StoredObject? {
        guard let object = try RawStatement(db, "SELECT id, last_modified, deleted, data FROM objects WHERE \(Self.parentIs) AND resource_name = ? AND id = ?",
                                            [.text(key.parentID), .text(key.resourceName), .text(id)]).first(Self.object) else { return nil }
        if object.deleted && !includeDeleted { return nil }
        return object
    }

    static func object(_ row: RawRow) -> StoredObject {
        StoredObject(id: row.text(0), lastModified: row.int(1), deleted: row.int(2) != 0, json: row.text(3))
    }

    func upsertRow(_ key: ResourceKey, id: String, lastModified: Int64, json: String, hash: [UInt8]?) throws {
        try RawStatement(db, """
            INSERT INTO objects (parent, resource_name, id, last_modified, deleted, data, content_hash) VALUES (?, ?, ?, ?, 0, ?, ?)
            ON CONFLICT (parent, resource_name, id) DO UPDATE SET last_modified = excluded.last_modified, deleted = 0, data = excluded.data,
                content_hash = excluded.content_hash
            """, [.int(try parentNumber(key.parentID)), .text(key.resourceName), .text(id), .int(lastModified), .text(json), hash.map { .blob($0) } ?? .null]).execute()
    }

    /// One statement: the ids go as a JSON array (no limit on bound variables), each looked up
    /// through the objects' key index.
    func objects(_ key: ResourceKey, ids: [String]) throws -> [String: StoredObject] {
        var found: [String: StoredObject] = [:]
        guard !ids.isEmpty else { return found }
        let list = JSON.array(ids.map(JSON.string)).serialized()
        try RawStatement(db, """
            SELECT id, last_modified, deleted, data FROM objects
            WHERE \(Self.parentIs) AND \(SQLQueryBuilder.resourceName(key.resourceName)) AND id IN (SELECT value FROM json_each(?)) AND deleted = 0
            """, [.text(key.parentID), .text(list)]).forEachRow { row in
            let object = Self.object(row)
            found[object.id] = object
            return true
        }
        return found
    }

    func tombstoneRow(_ key: ResourceKey, id: String, lastModified: Int64, json: String) throws {
        try db.cachedStatement(sql: "UPDATE objects SET last_modified = ?, deleted = 1, data = ?, content_hash = NULL WHERE \(Self.parentIs) AND resource_name = ? AND id = ?")
            .execute(arguments: [lastModified, json, key.parentID, key.resourceName, id])
    }

    func list(_ key: ResourceKey, query: ListQuery, _ each: (StoredObject) throws -> Bool) throws {
        var sql = SQLQueryBuilder(key: key, filters: query.filters, includeDeleted: query.includeDeleted, ids: query.ids)
        if let after = query.after { sql.addPageAfter(after, sort: query.sort) }
        var text = "SELECT id, last_modified, deleted, data FROM objects WHERE " + sql.whereClause
        if !query.sort.isEmpty {  // an empty sort list means any order
            text += " ORDER BY " + query.sort.map { SQLQueryBuilder.expression($0.field) + ($0.descending ? " DESC" : " ASC") }.joined(separator: ", ")
        }
        if let limit = query.limit { text += " LIMIT \(limit)" }
        try RawStatement(db, text, sql.arguments).forEachRow { row in try each(Self.object(row)) }
    }

    func count(_ key: ResourceKey, filters: [Filter], includeDeleted: Bool, ids: [String]?) throws -> Int {
        let sql = SQLQueryBuilder(key: key, filters: filters, includeDeleted: includeDeleted, ids: ids)
        return try RawStatement(db, "SELECT COUNT(*) FROM objects WHERE " + sql.whereClause, sql.arguments).first { Int($0.int(0)) } ?? 0
    }

    func deleteObjectRows(parentIn range: DescendantRange) throws {
        let parents = "SELECT number FROM parents WHERE uri = ? OR (uri >= ? AND uri < ?)"
        try db.cachedStatement(sql: "DELETE FROM objects WHERE parent IN (\(parents))").execute(arguments: [range.uri, range.lower, range.upper])
        // Their numbers go with them: a parent made again later gets a number with no objects.
        try db.cachedStatement(sql: "DELETE FROM parents WHERE number IN (\(parents))").execute(arguments: [range.uri, range.lower, range.upper])
        pending?.parents = [:]
    }

    func deletePermissionRows(objectIn range: DescendantRange) throws {
        try db.cachedStatement(sql: "DELETE FROM access_control_entries WHERE object_id >= ? AND object_id < ?")
            .execute(arguments: [range.lower, range.upper])
    }

    func tombstoneHorizon(_ key: ResourceKey) throws -> Int64 {
        try RawStatement(db, "SELECT horizon FROM tombstone_horizons WHERE parent_id = ? AND resource_name = ?",
                         [.text(key.parentID), .text(key.resourceName)]).first { $0.int(0) } ?? 0
    }

    func tombstoneTimestamp(_ key: ResourceKey, offset: Int, newestFirst: Bool, atMost: Int64?) throws -> Int64? {
        try RawStatement(db, """
            SELECT last_modified FROM objects WHERE \(Self.parentIs) AND \(SQLQueryBuilder.resourceName(key.resourceName)) AND deleted = 1 AND last_modified <= ?
            ORDER BY last_modified \(newestFirst ? "DESC" : "ASC") LIMIT 1 OFFSET ?
            """, [.text(key.parentID), .int(atMost ?? Int64.max), .int(Int64(offset))]).first { $0.int(0) }
    }

    func dropTombstones(_ key: ResourceKey, through: Int64) throws -> Int {
        let arguments: [RawValue] = [.text(key.parentID), .int(through)]
        let tombstones = "FROM objects WHERE \(Self.parentIs) AND \(SQLQueryBuilder.resourceName(key.resourceName)) AND deleted = 1 AND last_modified <= ?"
        let found = try RawStatement(db, "SELECT count(*), max(last_modified) " + tombstones, arguments).first { ($0.int(0), $0.int(1)) }
        guard let (count, newest) = found, count > 0 else { return 0 }
        try RawStatement(db, "DELETE " + tombstones, arguments).execute()
        try RawStatement(db, """
            INSERT INTO tombstone_horizons (parent_id, resource_name, horizon) VALUES (?, ?, ?)
            ON CONFLICT (parent_id, resource_name) DO UPDATE SET horizon = max(horizon, excluded.horizon)
            """, [.text(key.parentID), .text(key.resourceName), .int(newest)]).execute()
        return Int(count)
    }

    func listContentHashes(_ key: ResourceKey, ids: [String]?, _ each: (StoredContentHash) throws -> Void) throws {
        let sql = SQLQueryBuilder(key: key, filters: [], includeDeleted: false, ids: ids)
        // TEXT compares with BINARY: the order of the ids' UTF-8 bytes.
        try RawStatement(db, "SELECT id, content_hash, CASE WHEN content_hash IS NULL THEN data END FROM objects WHERE "
                             + sql.whereClause + " ORDER BY id", sql.arguments).forEachRow { row in
            try each(StoredContentHash(id: row.text(0), bytes: row.blob(1), json: row.optionalText(2)))
            return true
        }
    }

    func recordsWithoutContentHash(after: (key: ResourceKey, id: String)?, limit: Int) throws -> [(key: ResourceKey, object: StoredObject)] {
        // In the order of the objects' key: the parents' numbers, then kind and id.
        let start = after.map { [RawValue.text($0.key.parentID), .text($0.key.resourceName), .text($0.id)] } ?? [.text(""), .text(""), .text("")]
        var found: [(key: ResourceKey, object: StoredObject)] = []
        try RawStatement(db, """
            SELECT p.uri, o.resource_name, o.id, o.last_modified, o.deleted, o.data FROM objects o JOIN parents p ON p.number = o.parent
            WHERE (o.parent, o.resource_name, o.id) > (coalesce((SELECT number FROM parents WHERE uri = ?), 0), ?, ?)
              AND \(SQLQueryBuilder.resourceName(ContentHash.resourceName)) AND o.deleted = 0 AND o.content_hash IS NULL
            ORDER BY o.parent, o.resource_name, o.id LIMIT ?
            """, start + [.int(Int64(limit))]).forEachRow { row in
            found.append((ResourceKey(parentID: row.text(0), resourceName: row.text(1)),
                          StoredObject(id: row.text(2), lastModified: row.int(3), deleted: row.int(4) != 0, json: row.text(5))))
            return true
        }
        return found
    }

    func setContentHashes(_ hashes: [(key: ResourceKey, id: String, hash: [UInt8])]) throws {
        for (key, id, hash) in hashes {
            try RawStatement(db, "UPDATE objects SET content_hash = ? WHERE \(Self.parentIs) AND resource_name = ? AND id = ?",
                             [.blob(hash), .text(key.parentID), .text(key.resourceName), .text(id)]).execute()
        }
    }

    func flush() throws {
        try db.execute(sql: "DELETE FROM objects; DELETE FROM parents; DELETE FROM timestamps; DELETE FROM access_control_entries; DELETE FROM tombstone_horizons")
        pending?.values = [:]  // the timestamps this transaction moved go too
        pending?.parents = [:]
    }

    func permissions(of uri: String) throws -> Permissions {
        guard let acl else { return try readPermissions(of: uri) }
        if case .permissions(let known)? = acl.cache.answer(.permissions(uri: uri)) { return known }
        let permissions = try readPermissions(of: uri)
        acl.cache.remember(.permissions(uri: uri), .permissions(permissions), asOf: acl.version)
        return permissions
    }

    private func readPermissions(of uri: String) throws -> Permissions {
        var result: Permissions = [:]
        try RawStatement(db, "SELECT permission, principal FROM access_control_entries WHERE object_id = ?", [.text(uri)]).forEachRow { row in
            result[row.text(0), default: []].insert(row.text(1))
            return true
        }
        return result
    }

    func setPermissions(of uri: String, _ permissions: Permissions) throws {
        let delete = try db.cachedStatement(sql: "DELETE FROM access_control_entries WHERE object_id = ? AND permission = ?")
        let insert = try db.cachedStatement(sql: "INSERT OR IGNORE INTO access_control_entries (object_id, permission, principal) VALUES (?, ?, ?)")
        for (permission, principals) in permissions {
            try delete.execute(arguments: [uri, permission])
            for principal in principals.sorted() {
                try insert.execute(arguments: [uri, permission, principal])
            }
        }
    }

    func addPermissions(of uri: String, _ permissions: Permissions) throws {
        for (permission, principals) in permissions {
            for principal in principals.sorted() {
                try RawStatement(db, "INSERT OR IGNORE INTO access_control_entries (object_id, permission, principal) VALUES (?, ?, ?)",
                                 [.text(uri), .text(permission), .text(principal)]).execute()
            }
        }
    }

    /// A statement a permission and principal, the URIs as a JSON array (no limit on bound
    /// variables): 0.7 µs an entry where a statement each took about 2.5.
    func addPermissions(ofEach uris: [String], _ permissions: Permissions) throws {
        guard !uris.isEmpty, permissions.contains(where: { !$0.value.isEmpty }) else { return }
        let text = JSON.array(uris.map(JSON.string)).serialized()  // as ``objects(_:ids:)`` sends its ids
        for (permission, principals) in permissions {
            for principal in principals.sorted() {
                try RawStatement(db, "INSERT OR IGNORE INTO access_control_entries (object_id, permission, principal) SELECT value, ?, ? FROM json_each(?)",
                                 [.text(permission), .text(principal), .text(text)]).execute()
            }
        }
    }

    func removePermissions(of uri: String) throws {
        try db.cachedStatement(sql: "DELETE FROM access_control_entries WHERE object_id = ?").execute(arguments: [uri])
    }

    func anyGranted(_ grants: [(uri: String, permission: String)], principals: [String]) throws -> Bool {
        guard !grants.isEmpty, !principals.isEmpty else { return false }
        guard let acl else { return try readGranted(grants, principals: principals) }
        let key = ACLCache.Key.grant(objects: grants.map(\.uri), permissions: grants.map(\.permission), principals: principals)
        if case .granted(let known)? = acl.cache.answer(key) { return known }
        let granted = try readGranted(grants, principals: principals)
        acl.cache.remember(key, .granted(granted), asOf: acl.version)
        return granted
    }

    private func readGranted(_ grants: [(uri: String, permission: String)], principals: [String]) throws -> Bool {
        let principalMarks = Array(repeating: "?", count: principals.count).joined(separator: ",")
        let grantClauses = Array(repeating: "(object_id = ? AND permission = ?)", count: grants.count).joined(separator: " OR ")
        var arguments = principals.map(RawValue.text)
        for grant in grants {
            arguments.append(.text(grant.uri))
            arguments.append(.text(grant.permission))
        }
        // Each grant is looked up by the primary key (object, permission).
        let sql = "SELECT 1 FROM access_control_entries WHERE principal IN (\(principalMarks)) AND (\(grantClauses)) LIMIT 1"
        return try RawStatement(db, sql, arguments).first { _ in true } != nil
    }

    func childIDs(under parentURI: String, childPath: String, permissions: [String], principals: [String]) throws -> [String] {
        guard !permissions.isEmpty, !principals.isEmpty else { return [] }
        let prefix = parentURI + "/" + childPath + "/"
        let upper = parentURI + "/" + childPath + "0"
        let sql = """
            SELECT DISTINCT object_id FROM access_control_entries
            WHERE object_id >= ? AND object_id < ?
              AND permission IN (\(Array(repeating: "?", count: permissions.count).joined(separator: ",")))
              AND principal IN (\(Array(repeating: "?", count: principals.count).joined(separator: ",")))
            """
        var arguments: [any DatabaseValueConvertible] = [prefix, upper]
        arguments += permissions as [any DatabaseValueConvertible]
        arguments += principals as [any DatabaseValueConvertible]
        let uris = try String.fetchAll(db.cachedStatement(sql: sql), arguments: StatementArguments(arguments))
        return uris.compactMap { uri in
            let id = String(uri.dropFirst(prefix.count))
            return id.contains("/") ? nil : id
        }
    }

    func groups(containing principals: [String]) throws -> [String] {
        guard !principals.isEmpty else { return [] }
        let sql = """
            SELECT p.uri || '/groups/' || objects.id FROM objects JOIN parents p ON p.number = objects.parent
            WHERE resource_name = 'group' AND deleted = 0
              AND EXISTS (SELECT 1 FROM json_each(objects.data, '$.members') WHERE json_each.value IN (\(Array(repeating: "?", count: principals.count).joined(separator: ",")))) 
            ORDER BY 1
            """
        return try String.fetchAll(db.cachedStatement(sql: sql), arguments: StatementArguments(principals))
    }

    /// Reads every entry (there is no index by principal since v5): `GET /v1/permissions` is rare
    /// (Kinto ships it disabled), a write of a record is not.
    func grants(of principals: [String]) throws -> [String: Set<String>] {
        guard !principals.isEmpty else { return [:] }
        let sql = "SELECT object_id, permission FROM access_control_entries WHERE principal IN (\(Array(repeating: "?", count: principals.count).joined(separator: ",")))"
        var result: [String: Set<String>] = [:]
        let rows = try Row.fetchCursor(db.cachedStatement(sql: sql), arguments: StatementArguments(principals))
        while let row = try rows.next() {
            result[row[0], default: []].insert(row[1])
        }
        return result
    }
}

extension SQLiteStorage: DumpableStorage {
    /// Every row of every table in a stable order; tests compare it before and after a refused request.
    package func dump() async throws -> [String] {
        try await pool.read { db in
            var lines: [String] = []
            for row in try Row.fetchAll(db, sql: "SELECT p.uri, resource_name, id, last_modified, deleted, data, coalesce(lower(hex(content_hash)), '-') FROM objects JOIN parents p ON p.number = objects.parent ORDER BY 1, 2, 3") {
                lines.append("object \(row[0] as String) \(row[1] as String) \(row[2] as String) \(row[3] as Int64) \(row[4] as Int64) \(row[5] as String) \(row[6] as String)")
            }
            for row in try Row.fetchAll(db, sql: "SELECT parent_id, resource_name, last_modified FROM timestamps ORDER BY parent_id, resource_name") {
                lines.append("timestamp \(row[0] as String) \(row[1] as String) \(row[2] as Int64)")
            }
            for row in try Row.fetchAll(db, sql: "SELECT object_id, permission, principal FROM access_control_entries ORDER BY 1, 2, 3") {
                lines.append("ace \(row[0] as String) \(row[1] as String) \(row[2] as String)")
            }
            for row in try Row.fetchAll(db, sql: "SELECT parent_id, resource_name, horizon FROM tombstone_horizons ORDER BY 1, 2") {
                lines.append("horizon \(row[0] as String) \(row[1] as String) \(row[2] as Int64)")
            }
            return lines
        }
    }
}
