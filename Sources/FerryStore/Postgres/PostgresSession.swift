import FerryCore
import FerryPostgres
import Foundation
import Logging
import NIOCore
import PostgresNIO

/// A transaction on a PostgreSQL connection. Each method waits for its statement's answer
/// (sessions run on the storage's own threads, never on an event loop).
struct PostgresSession: ObjectRows {
    let link: PostgresLink
    let logger: Logger
    /// NOTIFY payloads this transaction still has to send (nil: none). A write's first upsert
    /// outside a savepoint sends them (``upsert(_:)``); whatever is left goes just before COMMIT.
    var unannounced: Unannounced? = nil
    /// The request's time: once it is up, no further statement is sent (``StorageDeadline``).
    var deadline: StorageDeadline? = nil
    /// A write's: where it allocates timestamps (nil in a read, which allocates none).
    var clock: TimestampClock? = nil
    /// A write's: the timestamps it holds on the clock until it ends.
    var claims: Claims? = nil
    /// A read: its lists, counts and content hashes stop below the oldest timestamp a write still
    /// holds, as its timestamps do (see ``TimestampClock``).
    var listsBelowClaims = false
    /// Whether a feed page may run as its prepared statement (``FeedBounds``); false: always the
    /// general statement (tests compare the two).
    var feedPrepared = true

    /// What a write claimed on the clock: its transaction id (once it allocated), and the
    /// timestamps it holds, released in the statement before its COMMIT or after its ROLLBACK.
    final class Claims: @unchecked Sendable {
        var xid: String?
        var held: [TimestampClock.Claim] = []
        /// How many of `held` a statement of the transaction released already (``upsert(_:)``).
        var released = 0
        /// Savepoints open: a release inside one would be undone with it, so none is folded there.
        var savepoints = 0
        /// Whether an upsert folded a release already (later ones leave it to ``beforeCommit()``).
        var folded = false
        /// Whether the write's `statement_timeout` (the request's time left) is still to be set and
        /// its transaction id asked for: by its first statement when that is the object read
        /// (``ReadObjectBeside``: a PUT saves a round trip), else by ``settle()`` before it.
        var unsettled = false
        /// The answer to the write's `BEGIN`, sent without waiting for it: the write's first
        /// statement goes right behind it, and its answer is waited for with that statement's
        /// (``pipelined(_:)``), a round trip fewer a write.
        var beginning: EventLoopFuture<PostgresQueryResult>?
        /// The answer to the write's first upsert outside a savepoint, sent without waiting for it
        /// (``upsert(_:)``): the write's `COMMIT` goes right behind it (``commit()``), a round trip
        /// fewer a PUT. Any other statement of the write, on its connection or on the clock, waits
        /// for it first (``caughtUp()``).
        var pending: EventLoopFuture<[Void]>?
    }

    final class Unannounced: @unchecked Sendable {
        var payloads: [String]
        /// Whether other processes listen (nil: announce everything).
        let listeners: OtherListeners?
        /// Changed collections held back because no other process listened (``OtherListeners``).
        var withheld: [String] = []

        init(_ payloads: [String], listeners: OtherListeners? = nil) {
            self.payloads = payloads
            self.listeners = listeners
        }

        /// The payloads, once: later calls get none. While no other process listens, changed
        /// collections are held back (``withheld``).
        func take() -> [String] {
            defer { payloads = [] }
            guard let listeners, !listeners.listening else { return payloads }
            var sent: [String] = []
            for payload in payloads {
                if OtherListeners.isCollection(payload) { withheld.append(payload) } else { sent.append(payload) }
            }
            return sent
        }

        /// What is left to send just before COMMIT: the rest, and what was held back if another
        /// process listens by now, or if the answer has aged (a long transaction: no statement is
        /// added to it to look again, whose failure would undo the write).
        func takeLast() -> [String] {
            var last = take()
            guard !withheld.isEmpty, let listeners else { return last }
            if listeners.isStale || listeners.listening { last += withheld }
            withheld = []
            return last
        }
    }

    /// The statement before COMMIT: the transaction's announcements queued (NOTIFY is sent at
    /// COMMIT) and its claims released (the release is seen exactly when its writes are).
    /// Nothing when a statement of the transaction already did it (``upsert(_:)``)
    /// and no timestamp was allocated since.
    func beforeCommit() throws {
        let payloads = unannounced?.takeLast() ?? []
        let claimed = (claims?.held.count ?? 0) > (claims?.released ?? 0)
        guard !payloads.isEmpty || claimed else { return }
        _ = try rows("WITH " + Self.release("$1", channel: "$2", payloads: "$3"), Self.binds([claimed, PostgresStorage.channel, payloads]))
    }

    /// Looks up whether other processes listen (``OtherListeners``), on this connection, outside
    /// a transaction.
    func lookUpOtherListeners(_ listeners: OtherListeners) {
        listeners.refresh { sql, binds in
            try rows(sql, Self.binds(binds)).first?.decode(Bool.self)
        }
    }

    /// The end of a statement that releases the transaction's claims when `claimed` (a boolean)
    /// and queues NOTIFYs of the `payloads` (a text array) on `channel`; its one row counts them.
    /// Every claim of the transaction, not only those it knows of: one left behind by a
    /// transaction that committed would hold readers back for good.
    static func release(_ claimed: String, channel: String, payloads: String) -> String {
        """
        released AS (DELETE FROM timestamp_claims WHERE \(claimed) AND xid = pg_current_xact_id())
        SELECT count(pg_notify(\(channel), p)) FROM unnest(\(payloads)::text[]) AS p
        """
    }

    /// After a ROLLBACK: the timestamps its transaction allocated are undone (``TimestampClock/undo(_:)``).
    /// Best effort: readers already ignore the claims of a transaction that aborted, so a failure
    /// here only leaves the kinds' timestamps moved on.
    func undoClaimsAfterRollback() {
        guard let clock, let held = claims?.held, !held.isEmpty else { return }
        try? clock.undo(held[...])
    }

    /// A write's `statement_timeout` and transaction id (``Claims/unsettled``), in a statement of
    /// their own: before any statement of the write that does not carry them.
    func settle() throws {
        try caughtUp()
        guard let claims, claims.unsettled else { return try begun() }
        claims.unsettled = false
        try checkDeadline()
        let sql = "SELECT pg_current_xact_id()::text FROM (SELECT set_config('statement_timeout', $1, true)) AS timeout"
        let answer = link.connection.query(PostgresQuery(unsafeSQL: sql, binds: Self.binds([settlingTimeout])), logger: logger)
        claims.xid = try pipelined(answer).rows.first?.decode(String.self)
    }

    /// Sends the write's `BEGIN` without waiting for its answer (``Claims/beginning``).
    func begin() {
        claims?.beginning = link.connection.query(PostgresQuery(unsafeSQL: "BEGIN"), logger: logger)
    }

    /// Waits for the answer to an upsert still to come (``Claims/pending``), if any: before the
    /// write sends anything else. Its claims' release must be done before the clock allocates
    /// again (a release that ran after a later allocation committed would delete that claim too).
    func caughtUp() throws {
        guard let pending = claims?.pending else { return }
        claims?.pending = nil
        _ = try link.wait(lost: lost, pending)
    }

    /// The transaction's `COMMIT`: in a write, right behind its upsert when that one's answer is
    /// still to come (``Claims/pending``), then both answers waited for.
    ///
    /// PostgreSQL answers the `COMMIT` of a transaction that an error aborted as a `ROLLBACK`,
    /// without an error of its own. A write's upsert that failed throws its error here; a write
    /// answered so otherwise (a failure swallowed in between) throws too: it committed nothing.
    func commit() throws {
        guard let claims else { return try execute("COMMIT") }
        try checkDeadline()
        let answer: PostgresQueryResult
        if let pending = claims.pending {
            claims.pending = nil
            let committed = link.connection.query(PostgresQuery(unsafeSQL: "COMMIT"), logger: logger)
            do {
                _ = try link.wait(lost: lost, pending)
            } catch {
                // Its answer, to leave the connection with nothing still to come.
                _ = try? link.wait(lost: lost, committed)
                // The commit was claimed before the upsert answered. In a write with a deadline the
                // `statement_timeout` in force is the request's time left (``settle()``): an upsert
                // cancelled (57014) ran out of it, and the write, which committed nothing, timed out.
                if let deadline, let failure = error as? PSQLError, failure.serverInfo?[.sqlState] == "57014" { throw deadline.error }
                throw error
            }
            answer = try link.wait(lost: lost, committed)
        } else {
            try settle()
            answer = try link.wait(lost: lost, link.connection.query(PostgresQuery(unsafeSQL: "COMMIT"), logger: logger))
        }
        guard answer.metadata.command == "COMMIT" else {
            throw StorageError.backend("PostgreSQL answered the write's COMMIT with \(answer.metadata.command): a statement of it failed, and it changed nothing")
        }
    }

    /// Waits for the answer to a `BEGIN` still to come (``Claims/beginning``), if any.
    func begun() throws {
        guard let begin = claims?.beginning else { return }
        claims?.beginning = nil
        _ = try link.wait(lost: lost, begin)
    }

    /// The answer of a statement sent right behind the write's `BEGIN`, whose answer comes first:
    /// a statement that ran because the `BEGIN` failed ran outside the transaction, so only
    /// statements that change nothing (reads, `set_config` of the transaction) are sent so.
    func pipelined<T: Sendable>(_ answer: EventLoopFuture<T>) throws -> T {
        do {
            try begun()
        } catch {
            // Its answer, to leave the connection with nothing still to come.
            _ = try? link.wait(lost: lost, answer)
            throw error
        }
        return try link.wait(lost: lost, answer)
    }

    /// The `statement_timeout` a write settles (milliseconds, as text): the request's time left.
    var settlingTimeout: String {
        String(max(1, Int((deadline?.remaining ?? 0) * 1000)))
    }

    func execute(_ sql: String, checkingDeadline: Bool = true) throws {
        if checkingDeadline {
            try checkDeadline()
            try settle()
        }
        _ = try link.wait(lost: lost, link.connection.query(PostgresQuery(unsafeSQL: sql), logger: logger))
    }

    /// Throws once the request's time is up: its transaction must stop and roll back.
    func checkDeadline() throws {
        if let deadline, deadline.isExpired { throw deadline.error }
    }

    func rows(_ sql: String, _ binds: PostgresBindings = PostgresBindings()) throws -> [PostgresRow] {
        try checkDeadline()
        try settle()
        return try link.wait(lost: lost, link.connection.query(PostgresQuery(unsafeSQL: sql, binds: binds), logger: logger)).rows
    }

    /// What a statement fails with when the connection closes before it is answered.
    var lost: StorageError {
        .backend("PostgreSQL: lost the connection (the server closed it)")
    }

    static func binds(_ values: [any PostgresNonThrowingEncodable & Sendable]) -> PostgresBindings {
        var binds = PostgresBindings(capacity: values.count)
        for value in values { binds.append(value) }
        return binds
    }

    // MARK: Schema

    /// Versioned migrations, applied once under an advisory lock (several processes may start together).
    static let migrations: [(String, String)] = [
        ("v1", """
            CREATE TABLE objects (
                parent_id TEXT COLLATE "C" NOT NULL,
                resource_name TEXT COLLATE "C" NOT NULL,
                id TEXT COLLATE "C" NOT NULL,
                last_modified BIGINT NOT NULL,
                deleted BOOLEAN NOT NULL DEFAULT false,
                data TEXT NOT NULL,
                doc JSONB GENERATED ALWAYS AS (data::jsonb) STORED,
                PRIMARY KEY (parent_id, resource_name, id)
            );
            CREATE INDEX objects_modified ON objects (parent_id, resource_name, last_modified);
            CREATE INDEX objects_groups ON objects (parent_id, id) WHERE resource_name = 'group' AND NOT deleted;
            CREATE TABLE timestamps (
                parent_id TEXT COLLATE "C" NOT NULL,
                resource_name TEXT COLLATE "C" NOT NULL,
                last_modified BIGINT NOT NULL,
                PRIMARY KEY (parent_id, resource_name)
            );
            CREATE TABLE access_control_entries (
                object_id TEXT COLLATE "C" NOT NULL,
                permission TEXT COLLATE "C" NOT NULL,
                principal TEXT COLLATE "C" NOT NULL,
                PRIMARY KEY (object_id, permission, principal)
            );
            CREATE INDEX access_control_entries_principal ON access_control_entries (principal, permission);
            """),
        // jsonb refuses the escape \u0000 (a NUL character), which JSON and SQLite allow. The
        // record's JSON stays exactly as sent in `data`; for filters and sorting, `doc` reads
        // every NUL as U+FFFD (the query builder binds values the same way). Escaped backslashes
        // (`\\`) are set aside first, so a backslash followed by the text u0000 stays as it is;
        // a raw U+0001 never occurs in JSON text, so it can hold them meanwhile.
        ("v2", """
            ALTER TABLE objects DROP COLUMN doc;
            ALTER TABLE objects ADD COLUMN doc JSONB GENERATED ALWAYS AS ((CASE WHEN strpos(data, '\\u0000') = 0 THEN data
                ELSE replace(replace(replace(data, '\\\\', E'\\x01'), '\\u0000', '\\ufffd'), E'\\x01', '\\\\') END)::jsonb) STORED
            """),
        // Settings every process shares (the server secret).
        ("v3", """
            CREATE TABLE ferry_settings (name TEXT PRIMARY KEY, value TEXT NOT NULL)
            """),
        // Where retention purged a kind's tombstones up to (see TombstoneRetention).
        ("v4", """
            CREATE TABLE tombstone_horizons (
                parent_id TEXT COLLATE "C" NOT NULL,
                resource_name TEXT COLLATE "C" NOT NULL,
                horizon BIGINT NOT NULL,
                PRIMARY KEY (parent_id, resource_name)
            )
            """),
        // Each live record's content hash (ContentHash), so reconciliation parses no JSON;
        // existing rows are filled in by ``migrate()`` (``backfillContentHashes(batch:)``).
        ("v5", """
            ALTER TABLE objects ADD COLUMN content_hash BYTEA
            """),
        // The timestamps writes hold until they end (``TimestampClock``): readers stop below the
        // oldest of a kind's, so the writers need not hold the kind's row lock until COMMIT.
        ("v6", """
            CREATE TABLE timestamp_claims (
                parent_id TEXT COLLATE "C" NOT NULL,
                resource_name TEXT COLLATE "C" NOT NULL,
                last_modified BIGINT NOT NULL,
                xid XID8 NOT NULL,
                PRIMARY KEY (parent_id, resource_name, last_modified)
            );
            CREATE INDEX timestamp_claims_xid ON timestamp_claims (xid)
            """),
    ]

    /// The migration after which existing records get their content hashes.
    static let contentHashMigration = "v5"

    func migrate() throws {
        _ = try rows("SELECT pg_advisory_xact_lock(7284015)")
        try execute("CREATE TABLE IF NOT EXISTS ferry_migrations (version TEXT PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())")
        let applied = Set(try rows("SELECT version FROM ferry_migrations").map { try $0.decode(String.self) })
        for (version, sql) in Self.migrations where !applied.contains(version) {
            // One statement at a time (the extended protocol takes no more); none holds a `;` of its own.
            for statement in sql.split(separator: ";") where !statement.allSatisfy(\.isWhitespace) {
                try execute(String(statement))
            }
            if version == Self.contentHashMigration { try backfillContentHashes() }
            _ = try rows("INSERT INTO ferry_migrations (version) VALUES ($1)", Self.binds([version]))
        }
        // Claims of transactions that ended without releasing them (a process that died mid-write).
        try execute("DELETE FROM timestamp_claims WHERE pg_xact_status(xid) IS NULL OR pg_xact_status(xid) = 'aborted'")
    }

    // MARK: Objects

    /// Below the oldest timestamp of the kind (placeholders `parent`, `resource`) that another
    /// transaction still holds: one that has not committed, or committed after this statement's
    /// snapshot (its claim is still seen, its writes are not). NULL when none is held. A claim of
    /// a transaction that aborted is ignored.
    static func belowClaims(_ parent: String, _ resource: String) -> String {
        """
        (SELECT min(c.last_modified) - 1 FROM timestamp_claims c WHERE c.parent_id = \(parent) AND c.resource_name = \(resource) \
        AND c.xid IS DISTINCT FROM pg_current_xact_id_if_assigned() AND pg_xact_status(c.xid) IN ('in progress', 'committed'))
        """
    }

    /// The kind's timestamp as far as it is complete: below every timestamp still held, so a
    /// client that reads `_since` it later can miss nothing (invariant 2).
    struct KindTimestamp: PostgresPreparedStatement {
        static let sql = "SELECT least(last_modified, \(PostgresSession.belowClaims("$1", "$2"))) FROM timestamps WHERE parent_id = $1 AND resource_name = $2"
        typealias Row = Int64
        let key: ResourceKey
        func makeBindings() throws -> PostgresBindings { PostgresSession.binds([key.parentID, key.resourceName]) }
        func decodeRow(_ row: PostgresRow) throws -> Row { try row.decode(Int64.self) }
    }

    /// A savepoint rolled back also undoes the timestamps allocated in it.
    func savepoint<T>(_ body: () throws -> T) throws -> T {
        try execute("SAVEPOINT ferry_savepoint")
        let mark = claims?.held.count ?? 0
        claims?.savepoints += 1
        defer { claims?.savepoints -= 1 }
        do {
            let result = try body()
            try execute("RELEASE SAVEPOINT ferry_savepoint")
            return result
        } catch {
            try execute("ROLLBACK TO SAVEPOINT ferry_savepoint")
            // Best effort, as after a ROLLBACK: the claims go with the COMMIT in any case.
            if let clock, let claims, claims.held.count > mark, (try? clock.undo(claims.held[mark...])) != nil {
                claims.held.removeSubrange(mark...)
            }
            throw error
        }
    }

    func timestamp(_ key: ResourceKey) throws -> Int64 {
        try prepared(KindTimestamp(key: key)).first ?? 0
    }

    func raiseTimestamp(_ key: ResourceKey, to value: Int64) throws {
        let (clock, claims) = try writing()
        if let raised = try clock.raise(key, to: value, xid: try xid(claims)) { claims.held.append(raised) }
    }

    /// The kind's next timestamp, allocated on the clock (its own short transaction) and held by
    /// this one until it ends.
    func allocateTimestamp(_ key: ResourceKey, requested: Int64?) throws -> Int64 {
        let (clock, claims) = try writing()
        let allocated = try clock.allocate(key, now: Timestamp.now(), requested: requested ?? 0, xid: try xid(claims))
        claims.held.append(allocated)
        return allocated.timestamp
    }

    private func writing() throws -> (TimestampClock, Claims) {
        guard let clock, let claims else { throw StorageError.backend("PostgreSQL: a timestamp allocated outside a write") }
        try caughtUp()
        return (clock, claims)
    }

    /// This transaction's id, asked for once (it is what its claims are known by).
    private func xid(_ claims: Claims) throws -> String {
        if let xid = claims.xid { return xid }
        let xid = try transactionID()
        claims.xid = xid
        return xid
    }

    /// The id of the transaction this session is in (one is assigned if it had none).
    func transactionID() throws -> String {
        guard let xid = try rows("SELECT pg_current_xact_id()::text").first?.decode(String.self) else {
            throw StorageError.backend("PostgreSQL gave no transaction id")
        }
        return xid
    }

    static func object(_ row: PostgresRow) throws -> StoredObject {
        let (id, lastModified, deleted, json) = try row.decode((String, Int64, Bool, String).self)
        return StoredObject(id: id, lastModified: lastModified, deleted: deleted, json: json)
    }

    struct GetObject: PostgresPreparedStatement {
        static let sql = "SELECT id, last_modified, deleted, data FROM objects WHERE parent_id = $1 AND resource_name = $2 AND id = $3"
        typealias Row = StoredObject
        let key: ResourceKey
        let id: String
        func makeBindings() throws -> PostgresBindings { PostgresSession.binds([key.parentID, key.resourceName, id]) }
        func decodeRow(_ row: PostgresRow) throws -> Row { try PostgresSession.object(row) }
    }

    func get(_ key: ResourceKey, id: String, includeDeleted: Bool) throws -> StoredObject? {
        guard let object = try prepared(GetObject(key: key, id: id)).first else { return nil }
        return object.deleted && !includeDeleted ? nil : object
    }

    /// The object's row; the permissions of a new object (``addPermissions(of:_:)``: nothing
    /// removed), and, in a write's first upsert outside a savepoint, what ``beforeCommit()``
    /// does (a PUT's last statement before its COMMIT is then its upsert).
    struct PutObject: PostgresPreparedStatement {
        static let sql = """
            WITH upserted AS (INSERT INTO objects (parent_id, resource_name, id, last_modified, deleted, data, content_hash)
                VALUES ($1, $2, $3, $4, false, $5, $6)
                ON CONFLICT (parent_id, resource_name, id) DO UPDATE SET last_modified = EXCLUDED.last_modified, deleted = false, data = EXCLUDED.data,
                    content_hash = EXCLUDED.content_hash),
            granted AS (INSERT INTO access_control_entries (object_id, permission, principal)
                SELECT $7, p.permission, p.principal FROM unnest($8::text[], $9::text[]) AS p(permission, principal)
                ON CONFLICT (object_id, permission, principal) DO NOTHING),
            \(PostgresSession.release("$10", channel: "$11", payloads: "$12"))
            """
        typealias Row = Void
        let key: ResourceKey
        let id: String
        let lastModified: Int64
        let json: String
        let hash: [UInt8]?
        /// The object's URI and its permissions' pairs.
        var uri = ""
        var pairs: [(permission: String, principal: String)] = []
        var release = false
        var payloads: [String] = []

        func makeBindings() throws -> PostgresBindings {
            var binds = PostgresSession.binds([key.parentID, key.resourceName, id, lastModified, json])
            binds.append(hash.map { ByteBuffer(bytes: $0) })
            binds.append(uri)
            binds.append(pairs.map(\.permission))
            binds.append(pairs.map(\.principal))
            binds.append(release)
            binds.append(PostgresStorage.channel)
            binds.append(payloads)
            return binds
        }

        func decodeRow(_ row: PostgresRow) throws -> Row {}
    }

    func upsertRow(_ key: ResourceKey, id: String, lastModified: Int64, json: String, hash: [UInt8]?) throws {
        try upsert(PutObject(key: key, id: id, lastModified: lastModified, json: json, hash: hash))
    }

    /// The upsert, releasing the claims and sending the announcements in the same statement when
    /// it may: the write's first upsert outside any savepoint (in a savepoint rolled back, the
    /// release would be undone while the transaction went on to commit). What the transaction
    /// allocates later is released by ``beforeCommit()``, as always.
    ///
    /// That upsert is sent without waiting for its answer (``Claims/pending``) once the statement
    /// is prepared on the connection (``PostgresLink/isPrepared(_:)``; else a `COMMIT` sent behind it
    /// would reach the server first): a PUT's `COMMIT` follows it at once.
    private func upsert(_ statement: PutObject) throws {
        var statement = statement
        let folding = claims.map { !$0.folded && $0.savepoints == 0 } ?? false
        if folding, let claims {
            statement.release = !claims.held.isEmpty
            statement.payloads = unannounced?.take() ?? []
        }
        if folding, let claims, link.isPrepared(PutObject.name) {
            try checkDeadline()
            try settle()
            claims.pending = start(statement)
        } else {
            _ = try prepared(statement)
        }
        if folding, let claims {
            claims.folded = true
            claims.released = claims.held.count
        }
    }

    func put(_ key: ResourceKey, id: String, text: RecordText, requestedTimestamp: Int64?,
             adding permissions: Permissions, on uri: String) throws -> StoredObject {
        let ts = try allocateTimestamp(key, requested: requestedTimestamp)
        let json = text.text(id: id, lastModified: ts)
        var statement = PutObject(key: key, id: id, lastModified: ts, json: json, hash: ContentHash.of(key, id: id, text: text))
        statement.uri = uri
        statement.pairs = permissions.flatMap { permission, principals in principals.sorted().map { (permission: permission, principal: $0) } }
        try upsert(statement)
        return StoredObject(id: id, lastModified: ts, deleted: false, json: json)
    }

    /// One round trip for all of them (`= ANY`), through the objects' key index.
    func objects(_ key: ResourceKey, ids: [String]) throws -> [String: StoredObject] {
        guard !ids.isEmpty else { return [:] }
        var found: [String: StoredObject] = [:]
        for row in try rows("SELECT id, last_modified, deleted, data FROM objects WHERE parent_id = $1 AND resource_name = $2 AND id = ANY($3) AND NOT deleted",
                            Self.binds([key.parentID, key.resourceName, ids])) {
            let object = try Self.object(row)
            found[object.id] = object
        }
        return found
    }

    func tombstoneRow(_ key: ResourceKey, id: String, lastModified: Int64, json: String) throws {
        _ = try rows("UPDATE objects SET last_modified = $1, deleted = true, data = $2, content_hash = NULL WHERE parent_id = $3 AND resource_name = $4 AND id = $5",
                     Self.binds([lastModified, json, key.parentID, key.resourceName, id]))
    }

    /// A page's WHERE, ORDER BY and LIMIT, and the builder holding its parameters; in a read,
    /// only what is below every timestamp still held (as its timestamp is).
    func page(_ key: ResourceKey, query: ListQuery) -> (builder: PostgresQueryBuilder, order: String, limit: String) {
        var sql = PostgresQueryBuilder(key: key, filters: query.filters, includeDeleted: query.includeDeleted, ids: query.ids)
        if listsBelowClaims { sql.addBelowClaims() }
        if let after = query.after { sql.addPageAfter(after, sort: query.sort) }
        var order = ""
        if !query.sort.isEmpty {
            // SQLite's order: a missing field (NULL) sorts before every value.
            // id and last_modified are NOT NULL columns: plain ASC/DESC, the order their indexes give
            // (DESC NULLS LAST on last_modified made every `_since` page a full scan and a sort).
            order = " ORDER BY " + query.sort.map { sort in
                let direction = sort.descending ? " DESC" : " ASC"
                return PostgresQueryBuilder.expression(sort.field) + direction
                    + (PostgresQueryBuilder.isColumn(sort.field) ? "" : sort.descending ? " NULLS LAST" : " NULLS FIRST")
            }.joined(separator: ", ")
        }
        return (sql, order, query.limit.map { " LIMIT \($0)" } ?? "")
    }

    func list(_ key: ResourceKey, query: ListQuery, _ each: (StoredObject) throws -> Bool) throws {
        let (sql, order, limit) = page(key, query: query)
        for row in try rows("SELECT id, last_modified, deleted, data FROM objects WHERE " + sql.whereClause + order + limit, sql.binds) {
            if try !each(Self.object(row)) { break }
        }
    }

    func listContentHashes(_ key: ResourceKey, ids: [String]?, _ each: (StoredContentHash) throws -> Void) throws {
        var sql = PostgresQueryBuilder(key: key, filters: [], includeDeleted: false, ids: ids)
        if listsBelowClaims { sql.addBelowClaims() }
        // `id` is COLLATE "C": the order of the ids' UTF-8 bytes.
        for row in try rows("SELECT id, content_hash, CASE WHEN content_hash IS NULL THEN data END FROM objects WHERE "
                             + sql.whereClause + " ORDER BY id", sql.binds) {
            let (id, hash, json) = try row.decode((String, ByteBuffer?, String?).self)
            try each(StoredContentHash(id: id, bytes: hash.map { Array($0.readableBytesView) }, json: json))
        }
    }

    func recordsWithoutContentHash(after: (key: ResourceKey, id: String)?, limit: Int) throws -> [(key: ResourceKey, object: StoredObject)] {
        try rows("""
            SELECT parent_id, resource_name, id, last_modified, deleted, data FROM objects
            WHERE (parent_id, resource_name, id) > ($1, $2, $3) AND resource_name = $4 AND NOT deleted AND content_hash IS NULL
            ORDER BY parent_id, resource_name, id LIMIT $5
            """, Self.binds([after?.key.parentID ?? "", after?.key.resourceName ?? "", after?.id ?? "", ContentHash.resourceName, Int64(limit)])).map { row in
            let (parent, resource, id, lastModified, deleted, json) = try row.decode((String, String, String, Int64, Bool, String).self)
            return (ResourceKey(parentID: parent, resourceName: resource), StoredObject(id: id, lastModified: lastModified, deleted: deleted, json: json))
        }
    }

    func setContentHashes(_ hashes: [(key: ResourceKey, id: String, hash: [UInt8])]) throws {
        guard !hashes.isEmpty else { return }
        var binds = Self.binds([hashes.map(\.key.parentID), hashes.map(\.key.resourceName), hashes.map(\.id)])
        binds.append(hashes.map { ByteBuffer(bytes: $0.hash) })
        _ = try rows("""
            UPDATE objects o SET content_hash = h.hash
            FROM unnest($1::text[], $2::text[], $3::text[], $4::bytea[]) AS h (parent, resource, id, hash)
            WHERE o.parent_id = h.parent AND o.resource_name = h.resource AND o.id = h.id
            """, binds)
    }

    /// One statement: the timestamp row, and the page numbered in its order beside it (a page of
    /// none is one row of NULLs).
    func timestampAndList(_ key: ResourceKey, query: ListQuery, _ each: (StoredObject) throws -> Bool) throws -> Int64 {
        try timestampAndList(key, query: query, horizon: false, each).timestamp
    }

    func timestampHorizonAndList(_ key: ResourceKey, query: ListQuery,
                                 _ each: (StoredObject) throws -> Bool) throws -> (timestamp: Int64, horizon: Int64)? {
        try timestampAndList(key, query: query, horizon: true, each)
    }

    /// - Parameter horizon: read the kind's tombstone horizon too (else 0).
    private func timestampAndList(_ key: ResourceKey, query: ListQuery, horizon: Bool,
                                  _ each: (StoredObject) throws -> Bool) throws -> (timestamp: Int64, horizon: Int64) {
        if listsBelowClaims, feedPrepared, let bounds = FeedBounds(key, query: query, horizon: horizon) {
            let rows = try bounds.descending ? prepared(FeedPageNewestFirst(bounds: bounds)) : prepared(FeedPageOldestFirst(bounds: bounds))
            return try Self.readFeed(rows, each)
        }
        let (sql, order, limit) = page(key, query: query)
        let horizonSQL = horizon ? "coalesce((SELECT horizon FROM tombstone_horizons WHERE parent_id = $1 AND resource_name = $2), 0)" : "0::bigint"
        // The page's builder bound the kind first ($1, $2).
        let text = """
            SELECT t.current, t.horizon, p.id, p.last_modified, p.deleted, p.data
            FROM (SELECT coalesce((SELECT least(last_modified, \(Self.belowClaims("$1", "$2"))) FROM timestamps WHERE parent_id = $1 AND resource_name = $2), 0) AS current,
                         \(horizonSQL) AS horizon) AS t
            LEFT JOIN LATERAL (SELECT row_number() OVER (\(order)) AS n, id, last_modified, deleted, data
                               FROM objects WHERE \(sql.whereClause)\(order)\(limit)) AS p ON true
            ORDER BY p.n
            """
        return try Self.readFeed(rows(text, sql.binds).map { try $0.decode(FeedRow.self) }, each)
    }

    /// A row of a page with its timestamp beside it: the timestamp, the horizon, and an object
    /// (all nil in the one row of an empty page).
    typealias FeedRow = (Int64, Int64, String?, Int64?, Bool?, String?)

    static func readFeed(_ rows: [FeedRow], _ each: (StoredObject) throws -> Bool) throws -> (timestamp: Int64, horizon: Int64) {
        var current: Int64 = 0
        var purged: Int64 = 0
        var reading = true
        for (timestamp, horizon, id, lastModified, deleted, data) in rows {
            current = timestamp
            purged = horizon
            guard reading, let id, let lastModified, let deleted, let data else { continue }
            reading = try each(StoredObject(id: id, lastModified: lastModified, deleted: deleted, json: data))
        }
        return (current, purged)
    }

    /// A read's page of a kind in `last_modified` order, bounded only on `last_modified` (the
    /// change feed: `_since`, `_before`, `gt_`/`lt_`/`min_`/`max_last_modified`, the next page of
    /// the feed), as the parameters of one prepared statement (``FeedPageNewestFirst``). Sent as
    /// a statement of its own text every time, PostgreSQL spent more of the page's CPU parsing and
    /// planning it than running it (`perf`: planning 23 % of all the samples of the page line,
    /// the execution 11 %). nil: any other page (the general statement of ``page(_:query:)``).
    struct FeedBounds: Sendable {
        let key: ResourceKey
        let horizon: Bool
        let includeDeleted: Bool
        let descending: Bool
        /// Inclusive bounds on `last_modified`.
        var lowest = Int64.min
        var highest = Int64.max
        let limit: Int64?

        init?(_ key: ResourceKey, query: ListQuery, horizon: Bool) {
            guard query.ids == nil, query.sort.count == 1, query.sort[0].field == "last_modified" else { return nil }
            self.key = key
            self.horizon = horizon
            includeDeleted = query.includeDeleted
            descending = query.sort[0].descending
            limit = query.limit.map(Int64.init)
            for filter in query.filters {
                guard filter.field == "last_modified", case .int(let value) = filter.value else { return nil }
                switch filter.comparison {
                case .gt where value < Int64.max: lowest = max(lowest, value + 1)
                case .min: lowest = max(lowest, value)
                case .lt where value > Int64.min: highest = min(highest, value - 1)
                case .max: highest = min(highest, value)
                default: return nil
                }
            }
            if let after = query.after {
                // After the last object of the page before, in the page's order (PageAfter).
                guard after.lastValues.count == 1, case .int(let last)? = after.lastValues["last_modified"] else { return nil }
                if descending {
                    guard last > Int64.min else { return nil }
                    highest = min(highest, last - 1)
                } else {
                    guard last < Int64.max else { return nil }
                    lowest = max(lowest, last + 1)
                }
            }
        }

        func makeBindings() -> PostgresBindings {
            var binds = PostgresSession.binds([key.parentID, key.resourceName, horizon, includeDeleted, lowest, highest])
            binds.append(limit)
            return binds
        }

        static func sql(descending: Bool) -> String {
            let order = "ORDER BY last_modified" + (descending ? " DESC" : " ASC")
            return """
                SELECT t.current, t.horizon, p.id, p.last_modified, p.deleted, p.data
                FROM (SELECT coalesce((SELECT least(last_modified, \(PostgresSession.belowClaims("$1", "$2"))) FROM timestamps WHERE parent_id = $1 AND resource_name = $2), 0) AS current,
                             CASE WHEN $3 THEN coalesce((SELECT horizon FROM tombstone_horizons WHERE parent_id = $1 AND resource_name = $2), 0) ELSE 0 END AS horizon) AS t
                LEFT JOIN LATERAL (SELECT row_number() OVER (\(order)) AS n, id, last_modified, deleted, data
                                   FROM objects WHERE parent_id = $1 AND resource_name = $2 AND ($4 OR NOT deleted)
                                   AND last_modified >= $5 AND last_modified <= $6
                                   AND last_modified <= coalesce(\(PostgresSession.belowClaims("$1", "$2")), \(Int64.max))
                                   \(order) LIMIT $7) AS p ON true
                ORDER BY p.n
                """
        }
    }

    struct FeedPageNewestFirst: PostgresPreparedStatement {
        static let sql = FeedBounds.sql(descending: true)
        typealias Row = FeedRow
        let bounds: FeedBounds
        func makeBindings() throws -> PostgresBindings { bounds.makeBindings() }
        func decodeRow(_ row: PostgresRow) throws -> Row { try row.decode(Row.self) }
    }

    struct FeedPageOldestFirst: PostgresPreparedStatement {
        static let sql = FeedBounds.sql(descending: false)
        typealias Row = FeedRow
        let bounds: FeedBounds
        func makeBindings() throws -> PostgresBindings { bounds.makeBindings() }
        func decodeRow(_ row: PostgresRow) throws -> Row { try row.decode(Row.self) }
    }

    struct FirstMissing: PostgresPreparedStatement {
        static let sql = """
            SELECT min(w.i) FROM unnest($1::text[], $2::text[], $3::text[]) WITH ORDINALITY AS w(parent, resource, id, i)
            WHERE NOT EXISTS (SELECT 1 FROM objects o WHERE o.parent_id = w.parent AND o.resource_name = w.resource AND o.id = w.id AND NOT o.deleted)
            """
        typealias Row = Int64?
        let objects: [(key: ResourceKey, id: String)]
        func makeBindings() throws -> PostgresBindings {
            PostgresSession.binds([objects.map(\.key.parentID), objects.map(\.key.resourceName), objects.map(\.id)])
        }
        func decodeRow(_ row: PostgresRow) throws -> Row { try row.decode(Int64?.self) }
    }

    func firstMissing(_ objects: [(key: ResourceKey, id: String)]) throws -> Int? {
        guard !objects.isEmpty else { return nil }
        return try prepared(FirstMissing(objects: objects)).first?.map { Int($0) - 1 }
    }

    func count(_ key: ResourceKey, filters: [Filter], includeDeleted: Bool, ids: [String]?) throws -> Int {
        var sql = PostgresQueryBuilder(key: key, filters: filters, includeDeleted: includeDeleted, ids: ids)
        if listsBelowClaims { sql.addBelowClaims() }
        return Int(try rows("SELECT COUNT(*) FROM objects WHERE " + sql.whereClause, sql.binds).first?.decode(Int64.self) ?? 0)
    }

    func deleteObjectRows(parentIn range: DescendantRange) throws {
        _ = try rows("DELETE FROM objects WHERE parent_id = $1 OR (parent_id >= $2 AND parent_id < $3)", Self.binds([range.uri, range.lower, range.upper]))
    }

    func deletePermissionRows(objectIn range: DescendantRange) throws {
        _ = try rows("DELETE FROM access_control_entries WHERE object_id >= $1 AND object_id < $2", Self.binds([range.lower, range.upper]))
    }

    func tombstoneHorizon(_ key: ResourceKey) throws -> Int64 {
        try rows("SELECT horizon FROM tombstone_horizons WHERE parent_id = $1 AND resource_name = $2",
                 Self.binds([key.parentID, key.resourceName])).first?.decode(Int64.self) ?? 0
    }

    func tombstoneTimestamp(_ key: ResourceKey, offset: Int, newestFirst: Bool, atMost: Int64?) throws -> Int64? {
        try rows("""
            SELECT last_modified FROM objects WHERE parent_id = $1 AND resource_name = $2 AND deleted AND last_modified <= $3
            ORDER BY last_modified \(newestFirst ? "DESC" : "ASC") LIMIT 1 OFFSET $4
            """, Self.binds([key.parentID, key.resourceName, atMost ?? Int64.max, Int64(offset)])).first?.decode(Int64.self)
    }

    /// One statement: the tombstones deleted, and the horizon raised to the newest of them.
    func dropTombstones(_ key: ResourceKey, through: Int64) throws -> Int {
        let row = try rows("""
            WITH gone AS (DELETE FROM objects WHERE parent_id = $1 AND resource_name = $2 AND deleted AND last_modified <= $3
                          RETURNING last_modified),
            summary AS (SELECT count(*) AS n, max(last_modified) AS newest FROM gone),
            raised AS (INSERT INTO tombstone_horizons (parent_id, resource_name, horizon)
                       SELECT $1, $2, newest FROM summary WHERE n > 0
                       ON CONFLICT (parent_id, resource_name) DO UPDATE SET horizon = GREATEST(tombstone_horizons.horizon, EXCLUDED.horizon))
            SELECT n FROM summary
            """, Self.binds([key.parentID, key.resourceName, through])).first
        return Int(try row?.decode(Int64.self) ?? 0)
    }

    /// `DELETE`, not `TRUNCATE`: readers of other transactions keep their snapshot instead of
    /// waiting for the exclusive lock `TRUNCATE` takes.
    func flush() throws {
        for table in ["objects", "timestamps", "access_control_entries", "tombstone_horizons"] {
            _ = try rows("DELETE FROM \(table)")
        }
    }

    // MARK: Permissions

    struct ObjectPermissions: PostgresPreparedStatement {
        static let sql = "SELECT permission, principal FROM access_control_entries WHERE object_id = $1"
        typealias Row = (String, String)
        let uri: String
        func makeBindings() throws -> PostgresBindings { PostgresSession.binds([uri]) }
        func decodeRow(_ row: PostgresRow) throws -> Row { try row.decode((String, String).self) }
    }

    func permissions(of uri: String) throws -> Permissions {
        var result: Permissions = [:]
        for (permission, principal) in try prepared(ObjectPermissions(uri: uri)) {
            result[permission, default: []].insert(principal)
        }
        return result
    }

    /// One statement: the named permissions' entries replaced by the given principals. (The
    /// delete spares the entries that stay: the insert does not see it, so it would skip those
    /// as already there while the delete removed them.)
    func setPermissions(of uri: String, _ permissions: Permissions) throws {
        guard !permissions.isEmpty else { return }
        let pairs = permissions.flatMap { permission, principals in principals.sorted().map { (permission, $0) } }
        var binds = Self.binds([uri, Array(permissions.keys)])
        binds.append(pairs.map(\.0))
        binds.append(pairs.map(\.1))
        _ = try rows("""
            WITH wanted AS (SELECT * FROM unnest($3::text[], $4::text[]) AS p(permission, principal)),
            gone AS (DELETE FROM access_control_entries a WHERE a.object_id = $1 AND a.permission = ANY($2::text[])
                     AND NOT EXISTS (SELECT 1 FROM wanted w WHERE w.permission = a.permission AND w.principal = a.principal))
            INSERT INTO access_control_entries (object_id, permission, principal)
            SELECT $1, w.permission, w.principal FROM wanted w
            ON CONFLICT (object_id, permission, principal) DO NOTHING
            """, binds)
    }

    /// One statement for every object and pair.
    func addPermissions(ofEach uris: [String], _ permissions: Permissions) throws {
        let pairs = permissions.flatMap { permission, principals in principals.sorted().map { (permission, $0) } }
        guard !uris.isEmpty, !pairs.isEmpty else { return }
        var binds = Self.binds([uris])
        binds.append(pairs.map(\.0))
        binds.append(pairs.map(\.1))
        _ = try rows("""
            INSERT INTO access_control_entries (object_id, permission, principal)
            SELECT o.uri, p.permission, p.principal FROM unnest($1::text[]) AS o(uri) CROSS JOIN unnest($2::text[], $3::text[]) AS p(permission, principal)
            ON CONFLICT (object_id, permission, principal) DO NOTHING
            """, binds)
    }

    func removePermissions(of uri: String) throws {
        _ = try rows("DELETE FROM access_control_entries WHERE object_id = $1", Self.binds([uri]))
    }

    /// Runs a statement prepared once per connection (PostgreSQL then neither parses nor plans
    /// it again), waiting for its rows like every statement of a session.
    ///
    /// PostgresNIO runs prepared statements only from async code, so a task runs it: on the
    /// connection's event loop, never on Swift's cooperative pool. A transaction may hold its
    /// collection's timestamp lock meanwhile, and blocked callers filling the pool (a loaded test
    /// run did) would hold it with them until other writers hit `statement_timeout`.
    func prepared<Statement: PostgresPreparedStatement>(_ statement: Statement) throws -> [Statement.Row] where Statement.Row: Sendable {
        try checkDeadline()
        try settle()
        return try link.wait(lost: lost, start(statement))
    }

    /// Sends a prepared statement (``prepared(_:)``) without waiting for its rows. Once it has
    /// answered, the connection knows it as prepared (``PostgresLink/isPrepared(_:)``).
    func start<Statement: PostgresPreparedStatement>(_ statement: Statement) -> EventLoopFuture<[Statement.Row]> where Statement.Row: Sendable {
        let connection = link.connection
        let logger = logger
        let link = link
        return link.start {
            var rows: [Statement.Row] = []
            for try await row in try await connection.execute(statement, logger: logger) { rows.append(row) }
            link.markPrepared(Statement.name)
            return rows
        }
    }

    /// The names of the checks passed (a text array): checks `names`, `uris`, `permissions` (text
    /// arrays, one element per grant), `principals` (a text array).
    static func passedChecks(_ principals: String, names: String, uris: String, permissions: String) -> String {
        """
        (SELECT coalesce(array_agg(DISTINCT g.name), '{}') FROM unnest(\(names)::text[], \(uris)::text[], \(permissions)::text[]) AS g(name, uri, permission)
         WHERE EXISTS (SELECT 1 FROM access_control_entries a
                       WHERE a.object_id = g.uri AND a.permission = g.permission AND a.principal = ANY(\(principals)::text[])))
        """
    }

    /// Checks as the statements take them: one element per grant.
    static func flat(_ checks: [String: [(uri: String, permission: String)]]) -> [(name: String, uri: String, permission: String)] {
        checks.flatMap { name, grants in grants.map { (name: name, uri: $0.uri, permission: $0.permission) } }
    }

    static func bind(_ checks: [(name: String, uri: String, permission: String)], to binds: inout PostgresBindings) {
        binds.append(checks.map(\.name))
        binds.append(checks.map(\.uri))
        binds.append(checks.map(\.permission))
    }

    /// The columns of an object, its permissions and the checks passed (`$1` to `$8`).
    static let objectColumns = """
        SELECT o.id, o.last_modified, o.deleted, o.data,
               \(PostgresSession.passedChecks("$5", names: "$6", uris: "$7", permissions: "$8")),
               (SELECT coalesce(array_agg(a.permission || ' ' || a.principal), '{}') FROM access_control_entries a WHERE a.object_id = $4)
        """
    static let objectFrom = objectFrom(one: "SELECT 1")
    /// The object's row joined to `one`, a statement of one row.
    static func objectFrom(one: String) -> String {
        """
        FROM (\(one)) AS one
        LEFT JOIN objects o ON o.parent_id = $1 AND o.resource_name = $2 AND o.id = $3 AND NOT o.deleted
        """
    }

    /// An object, its permissions and the checks passed, in one statement: a GET costs one round trip.
    struct ReadObject: PostgresPreparedStatement {
        static let sql = PostgresSession.objectColumns + "\n" + PostgresSession.objectFrom
        typealias Row = (String?, Int64?, Bool?, String?, [String], [String])
        let key: ResourceKey
        let id: String
        let uri: String
        let principals: [String]
        let checks: [(name: String, uri: String, permission: String)]

        func makeBindings() throws -> PostgresBindings {
            var binds = PostgresSession.binds([key.parentID, key.resourceName, id, uri, principals])
            PostgresSession.bind(checks, to: &binds)
            return binds
        }

        func decodeRow(_ row: PostgresRow) throws -> Row { try row.decode(Row.self) }
    }

    /// The live object of kind `parent`, `resource` and id `id` (placeholders) as `last_modified data`, NULL when
    /// absent or deleted. Scalar placeholders, not arrays: PostgreSQL then plans the prepared
    /// statement once (an array's length changes the estimates, and with them the plan it keeps).
    static func besideObject(_ parent: String, _ resource: String, _ id: String, exists: Bool = false) -> String {
        """
        (SELECT \(exists ? "true" : "b.last_modified::text || ' ' || b.data") FROM objects b
         WHERE b.parent_id = \(parent) AND b.resource_name = \(resource) AND b.id = \(id) AND NOT b.deleted)
        """
    }

    /// The most objects a folded read reads beside (a record's bucket and collection).
    static let besideLimit = 2

    static func bind(beside: [(key: ResourceKey, id: String)], to binds: inout PostgresBindings) {
        for i in 0..<besideLimit {
            // An object that is not asked for: an empty id, which no object has.
            let wanted = i < beside.count ? beside[i] : (key: ResourceKey(parentID: "", resourceName: ""), id: "")
            binds.append(wanted.key.parentID)
            binds.append(wanted.key.resourceName)
            binds.append(wanted.id)
        }
    }

    /// ``ReadObject`` and up to two objects beside it (a write's parents: whether they exist, and
    /// the collection's rules).
    struct ReadObjectBeside: PostgresPreparedStatement {
        static let sql = PostgresSession.objectColumns + """
            ,
                   \(PostgresSession.besideObject("$9", "$10", "$11")), \(PostgresSession.besideObject("$12", "$13", "$14"))
            """ + "\n" + PostgresSession.objectFrom
        typealias Row = (String?, Int64?, Bool?, String?, [String], [String], String?, String?)
        let read: ReadObject
        let beside: [(key: ResourceKey, id: String)]

        func makeBindings() throws -> PostgresBindings {
            var binds = try read.makeBindings()
            PostgresSession.bind(beside: beside, to: &binds)
            return binds
        }

        func decodeRow(_ row: PostgresRow) throws -> Row { try row.decode(Row.self) }
    }

    /// ``ReadObjectBeside`` as a write's first statement: it also sets the write's
    /// `statement_timeout` (from the next statement on) and answers its transaction id
    /// (``Claims/unsettled``), a round trip fewer a PUT.
    struct ReadObjectBesideSettling: PostgresPreparedStatement {
        static let sql = PostgresSession.objectColumns + """
            ,
                   \(PostgresSession.besideObject("$9", "$10", "$11")), \(PostgresSession.besideObject("$12", "$13", "$14")),
                   pg_current_xact_id()::text
            """ + "\n" + PostgresSession.objectFrom(one: "SELECT set_config('statement_timeout', $15, true)")
        typealias Row = (String?, Int64?, Bool?, String?, [String], [String], String?, String?, String)
        let read: ReadObjectBeside
        let timeout: String

        func makeBindings() throws -> PostgresBindings {
            var binds = try read.makeBindings()
            binds.append(timeout)
            return binds
        }

        func decodeRow(_ row: PostgresRow) throws -> Row { try row.decode(Row.self) }
    }

    func readObject(_ key: ResourceKey, id: String, uri: String, checks: [String: [(uri: String, permission: String)]],
                    principals: [String]) throws -> ObjectRead {
        guard let row = try prepared(ReadObject(key: key, id: id, uri: uri, principals: principals, checks: Self.flat(checks))).first else {
            throw StorageError.backend("PostgreSQL answered no row")
        }
        return Self.objectRead(row)
    }

    func readObject(_ key: ResourceKey, id: String, uri: String, checks: [String: [(uri: String, permission: String)]],
                    principals: [String], beside: [(key: ResourceKey, id: String)]) throws -> (read: ObjectRead, beside: [StoredObject?])? {
        guard beside.count <= Self.besideLimit else { return nil }
        let read = ReadObject(key: key, id: id, uri: uri, principals: principals, checks: Self.flat(checks))
        let row: ReadObjectBeside.Row
        if let claims, claims.unsettled {
            claims.unsettled = false
            try checkDeadline()
            let answer = start(ReadObjectBesideSettling(read: ReadObjectBeside(read: read, beside: beside), timeout: settlingTimeout))
            guard let settled = try pipelined(answer).first else {
                throw StorageError.backend("PostgreSQL answered no row")
            }
            claims.xid = settled.8
            row = (settled.0, settled.1, settled.2, settled.3, settled.4, settled.5, settled.6, settled.7)
        } else {
            guard let answered = try prepared(ReadObjectBeside(read: read, beside: beside)).first else {
                throw StorageError.backend("PostgreSQL answered no row")
            }
            row = answered
        }
        let found = try zip(beside, [row.6, row.7]).map { wanted, text -> StoredObject? in
            guard let text else { return nil }
            guard let space = text.firstIndex(of: " "), let stamp = Int64(text[..<space]) else {
                throw StorageError.backend("PostgreSQL answered an object as \"\(text.prefix(40))\"")
            }
            return StoredObject(id: wanted.id, lastModified: stamp, deleted: false, json: String(text[text.index(after: space)...]))
        }
        return (Self.objectRead((row.0, row.1, row.2, row.3, row.4, row.5)), found)
    }

    /// What ``ReadObject`` answered.
    static func objectRead(_ row: ReadObject.Row) -> ObjectRead {
        let (objectID, lastModified, deleted, data, passed, entries) = row
        var object: StoredObject? = nil
        if let objectID, let lastModified, let deleted, let data {
            object = StoredObject(id: objectID, lastModified: lastModified, deleted: deleted, json: data)
        }
        var permissions: Permissions = [:]
        if object != nil {
            for entry in entries {
                let parts = entry.split(separator: " ", maxSplits: 1)
                if parts.count == 2 { permissions[String(parts[0]), default: []].insert(String(parts[1])) }
            }
        }
        return ObjectRead(object: object, permissions: permissions, passed: Set(passed))
    }

    /// The checks passed and the first missing object (``firstMissing(_:)``) in one statement:
    /// what a list checks before its page.
    struct CheckAccess: PostgresPreparedStatement {
        static let sql = """
            SELECT \(PostgresSession.passedChecks("$1", names: "$2", uris: "$3", permissions: "$4")),
                   \(PostgresSession.besideObject("$5", "$6", "$7", exists: true)), \(PostgresSession.besideObject("$8", "$9", "$10", exists: true))
            """
        typealias Row = ([String], Bool?, Bool?)
        let principals: [String]
        let checks: [(name: String, uri: String, permission: String)]
        let objects: [(key: ResourceKey, id: String)]

        func makeBindings() throws -> PostgresBindings {
            var binds = PostgresSession.binds([principals])
            PostgresSession.bind(checks, to: &binds)
            PostgresSession.bind(beside: objects, to: &binds)
            return binds
        }

        func decodeRow(_ row: PostgresRow) throws -> Row { try row.decode(Row.self) }
    }

    func checkAccess(_ checks: [String: [(uri: String, permission: String)]], principals: [String],
                     objects: [(key: ResourceKey, id: String)]) throws -> (passed: Set<String>, firstMissing: Int?)? {
        guard objects.count <= Self.besideLimit else { return nil }
        guard let (passed, first, second) = try prepared(CheckAccess(principals: principals, checks: Self.flat(checks), objects: objects)).first else {
            throw StorageError.backend("PostgreSQL answered no row")
        }
        return (Set(passed), [first, second].prefix(objects.count).firstIndex { $0 == nil })
    }

    struct AnyGranted: PostgresPreparedStatement {
        static let sql = """
            SELECT 1 FROM access_control_entries a JOIN unnest($2::text[], $3::text[]) AS g(uri, permission)
              ON a.object_id = g.uri AND a.permission = g.permission
            WHERE a.principal = ANY($1::text[]) LIMIT 1
            """
        typealias Row = Int32
        let principals: [String]
        let grants: [(uri: String, permission: String)]
        func makeBindings() throws -> PostgresBindings { PostgresSession.binds([principals, grants.map(\.uri), grants.map(\.permission)]) }
        func decodeRow(_ row: PostgresRow) throws -> Row { try row.decode(Int32.self) }
    }

    func anyGranted(_ grants: [(uri: String, permission: String)], principals: [String]) throws -> Bool {
        guard !grants.isEmpty, !principals.isEmpty else { return false }
        return try !prepared(AnyGranted(principals: principals, grants: grants)).isEmpty
    }

    func childIDs(under parentURI: String, childPath: String, permissions: [String], principals: [String]) throws -> [String] {
        guard !permissions.isEmpty, !principals.isEmpty else { return [] }
        let prefix = parentURI + "/" + childPath + "/"
        let upper = parentURI + "/" + childPath + "0"
        let uris = try rows("""
            SELECT DISTINCT object_id FROM access_control_entries
            WHERE object_id >= $1 AND object_id < $2 AND permission = ANY($3::text[]) AND principal = ANY($4::text[])
            """, Self.binds([prefix, upper, permissions, principals])).map { try $0.decode(String.self) }
        return uris.compactMap { uri in
            let id = String(uri.dropFirst(prefix.count))
            return id.contains("/") ? nil : id
        }
    }

    func groups(containing principals: [String]) throws -> [String] {
        guard !principals.isEmpty else { return [] }
        return try rows("""
            SELECT parent_id || '/groups/' || id FROM objects
            WHERE resource_name = 'group' AND NOT deleted AND jsonb_typeof(doc -> 'members') = 'array' AND (doc -> 'members') ?| $1::text[]
            ORDER BY 1
            """, Self.binds([principals])).map { try $0.decode(String.self) }
    }

    func grants(of principals: [String]) throws -> [String: Set<String>] {
        guard !principals.isEmpty else { return [:] }
        var result: [String: Set<String>] = [:]
        for row in try rows("SELECT object_id, permission FROM access_control_entries WHERE principal = ANY($1::text[])", Self.binds([principals])) {
            let (uri, permission) = try row.decode((String, String).self)
            result[uri, default: []].insert(permission)
        }
        return result
    }
}
