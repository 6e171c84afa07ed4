import FerryCore
import GRDB
import GRDBSQLite

/// Applies batches to a SQLite table, one transaction per batch with the job's checkpoint.
final class SQLiteWriter: TargetWriter {
    let endpoint: SQLiteEndpoint
    let queue: DatabaseQueue
    let job: String
    /// Ferry's own tables in the database (checkpoints, tables Ferry made, their version).
    let tables: FerryTables
    /// Whether Ferry created the table (and may add columns to it).
    private var ownsTable = false
    /// A two-way run's conditions (``expect(key:exists:version:hash:)``): key → the hash the row
    /// must still have (nil: the row must still be absent), checked in the batch's transaction.
    var expected: [String: String?] = [:]
    /// How the two-way run hashes a record (``hashRecords(with:)``).
    var recordHash: (([String: JSON]) -> String?)? = nil
    /// The job's checkpoint as this writer last read or committed it (nil: not known).
    var committedCursor: Cursor? = nil

    init(endpoint: SQLiteEndpoint, queue: DatabaseQueue, job: String) {
        self.endpoint = endpoint
        self.queue = queue
        self.job = job
        tables = FerryTables(dialect: .sqlite, place: endpoint.displayName)
    }

    var commitsEachBatch: Bool { true }
    var keepsCheckpoint: Bool { true }

    func storedCursor() async throws -> Cursor? { try storedCursorNow() }

    private func storedCursorNow() throws -> Cursor? {
        let text = try queue.read { db -> String? in
            guard let query = try self.tables.readCheckpoint(job: self.job, layout: db.layout(of: self.tables)) else { return nil }
            return try db.text(query)
        }
        committedCursor = try tables.cursor(text, job: job)
        return committedCursor
    }

    func resetCheckpoint() async throws { try reset() }

    /// Forgets the job's checkpoint (`--reset`).
    func reset() throws {
        try queue.write { db in
            if let clear = try self.tables.clearCheckpoint(job: self.job, layout: db.layout(of: self.tables)) {
                try db.run(clear)
            }
        }
        committedCursor = nil
    }

    func apply(_ changes: [Change], cursor: Cursor?) async throws -> ApplyOutcome {
        try applyNow(changes, cursor: cursor)
    }

    private func applyNow(_ changes: [Change], cursor: Cursor?) throws -> ApplyOutcome {
        let outcome = try transaction { db in
            var outcome = ApplyOutcome()
            // Two-way runs: a row changed since the run read it is left for the next run.
            let changedMeanwhile = try self.changedMeanwhile(changes, in: db)
            outcome.changedMeanwhile = changes.filter { changedMeanwhile.contains($0.key.text) }.map(\.key)
            try self.apply(changedMeanwhile.isEmpty ? changes : changes.filter { !changedMeanwhile.contains($0.key.text) },
                           in: db, outcome: &outcome)
            if let cursor {
                try db.run(self.tables.saveCheckpoint(job: self.job, cursor: cursor))
            }
            return outcome
        }
        if let cursor { committedCursor = cursor }
        return outcome
    }

    /// Runs `body` in one transaction, after Ferry's own tables exist at their current version
    /// (migrated in that transaction; a newer version is refused). A failed transaction is
    /// rolled back whole and becomes a ``SyncError`` of kind `.target`.
    func transaction<T>(_ body: (Database) throws -> T) throws -> T {
        do {
            return try queue.write { db in
                if !self.setupDone {
                    for statement in try self.tables.migration(from: db.layout(of: self.tables)) {
                        try db.run(statement)
                    }
                    self.setupDone = true
                }
                return try body(db)
            }
        } catch let error as DatabaseError {
            setupDone = false  // the rollback may have undone the set-up too
            statements = nil
            if let columns = try? queue.read({ db in try SQLiteEndpoint.columns(of: self.endpoint.table, in: db) }) {
                endpoint.columns = columns
            }
            throw SyncError(.target, "\(endpoint.displayName): the batch failed and was rolled back: \(error.message ?? "\(error)")")
        }
    }

    /// Applies changes inside a transaction; a change the table refuses is added to `outcome.rejected`.
    func apply(_ changes: [Change], in db: Database, outcome: inout ApplyOutcome) throws {
        try prepareColumns(for: changes, in: db)
        for change in changes {
            do {
                switch change {
                case .upsert(let record):
                    try upsert(record, in: db, outcome: &outcome)
                case .delete(let key):
                    let statement = try db.cachedStatement(sql: deleteSQL)
                    try statement.execute(arguments: [SQLiteEndpoint.databaseValue(key.value, type: "")])
                    if db.changesCount > 0 { outcome.deleted += 1 } else { outcome.alreadyGone += 1 }
                }
            } catch let error as RecordRejection {
                outcome.rejected.append((change, error.reason))
            } catch let error as DatabaseError where error.resultCode == .SQLITE_CONSTRAINT || error.resultCode == .SQLITE_MISMATCH {
                // The statement alone is rolled back; the batch goes on.
                outcome.rejected.append((change, "\(endpoint.displayName) refused it: \(error.message ?? "\(error)")"))
            }
        }
    }

    func finish(cursor: Cursor?) async throws -> ApplyOutcome {
        // Everything is committed batch by batch; a run with nothing to apply still records where it
        // got to (unless the checkpoint is that already: a commit, and its fsync, for nothing).
        if let cursor, cursor != committedCursor { return try applyNow([], cursor: cursor) }
        return ApplyOutcome()
    }

    struct RecordRejection: Error { let reason: String }

    /// Creates the table on the first batch, and adds columns for new fields to a table Ferry made.
    private func prepareColumns(for changes: [Change], in db: Database) throws {
        if !endpoint.columns.isEmpty {
            // Most batches bring no new field: one lookup per field tells (the types below cost several).
            let columns = currentStatements().columns
            let hasNewField = changes.contains { change in
                guard case .upsert(let record) = change else { return false }
                return record.fields.contains { columns[$0.key] == nil && $0.value != .null }
            }
            guard hasNewField else { return }
        }
        var types: [String: String] = [:]
        var order: [String] = []
        for case .upsert(let record) in changes {
            for (name, value) in record.fields where value != .null {
                if types[name] == nil { order.append(name) }
                if types[name] == nil || types[name] == "TEXT" && !(value.stringValue != nil) {
                    types[name] = SQLiteEndpoint.declaredType(for: value)
                }
            }
        }
        let keyField = endpoint.options.keyField
        if endpoint.columns.isEmpty {
            guard case .upsert(let first)? = changes.first(where: { if case .upsert = $0 { true } else { false } }) else { return }
            let keyType = first.key.value.intValue != nil && first.key.value.stringValue == nil ? "INTEGER" : "TEXT"
            var definitions = ["\(SQLiteEndpoint.quote(keyField)) \(keyType) PRIMARY KEY NOT NULL"]
            for name in order.sorted() where name != keyField {
                definitions.append("\(SQLiteEndpoint.quote(name)) \(types[name]!)")
            }
            try db.execute(sql: "CREATE TABLE \(endpoint.quotedTable) (\(definitions.joined(separator: ", ")))")
            try db.run(tables.recordOwned(endpoint.table))
            endpoint.columns = try SQLiteEndpoint.columns(of: endpoint.table, in: db)
            ownsTable = true
            return
        }
        let known = Set(endpoint.columns.map(\.name))
        let missing = order.filter { !known.contains($0) }
        guard !missing.isEmpty else { return }
        if !ownsTable {
            ownsTable = try db.text(tables.findOwned(endpoint.table)) != nil
        }
        guard ownsTable else { return }  // records with those fields are rejected one by one
        for name in missing.sorted() {
            try db.execute(sql: "ALTER TABLE \(endpoint.quotedTable) ADD COLUMN \(SQLiteEndpoint.quote(name)) \(types[name]!)")
        }
        endpoint.columns = try SQLiteEndpoint.columns(of: endpoint.table, in: db)
    }

    /// The statements for the table's current columns, built once per column set.
    struct Statements {
        var columnCount: Int
        /// Column name → its position in table order.
        var columns: [String: Int]
        var keyIndex: Int
        var insert: String
        var update: String

        /// The parameter of `column`: table order for the insert, the key last for the update.
        func parameter(_ column: Int, keyLast: Bool) -> Int32 {
            guard keyLast else { return Int32(column + 1) }
            if column == keyIndex { return Int32(columnCount) }
            return Int32(column < keyIndex ? column + 1 : column)
        }
    }
    private var statements: Statements? = nil
    lazy var deleteSQL = "DELETE FROM \(endpoint.quotedTable) WHERE \(SQLiteEndpoint.quote(endpoint.options.keyField)) = ?"
    private var setupDone = false

    func currentStatements() -> Statements {
        let columns = endpoint.columns
        if let statements, statements.columnCount == columns.count { return statements }
        let keyField = endpoint.options.keyField
        let names = columns.map { SQLiteEndpoint.quote($0.name) }
        let keyIndex = columns.firstIndex { $0.name == keyField }!
        let assignments = names.enumerated().filter { $0.offset != keyIndex }.map { "\($0.element) = ?" }
        let built = Statements(
            columnCount: columns.count,
            columns: Dictionary(columns.enumerated().map { ($0.element.name, $0.offset) }, uniquingKeysWith: { first, _ in first }),
            keyIndex: keyIndex,
            insert: "INSERT INTO \(endpoint.quotedTable) (\(names.joined(separator: ", "))) VALUES (\(Array(repeating: "?", count: names.count).joined(separator: ", "))) ON CONFLICT DO NOTHING",
            update: assignments.isEmpty ? "" : "UPDATE \(endpoint.quotedTable) SET \(assignments.joined(separator: ", ")) WHERE \(names[keyIndex]) = ?")
        statements = built
        return built
    }

    /// Inserts, or replaces every column of the existing row (a field the record lacks becomes NULL).
    ///
    /// Values are bound with SQLite's C API, one dictionary lookup per field: GRDB's
    /// `StatementArguments` of `DatabaseValue`s and a lookup per column were a quarter of a
    /// server → SQLite read in perf. The values are stored as ``SQLiteEndpoint/databaseValue(_:type:)``
    /// makes them (``DirectUpsert/bind(_:to:at:)``), and a statement the table refuses throws
    /// GRDB's `DatabaseError`, as `execute` would.
    private func upsert(_ record: Record, in db: Database, outcome: inout ApplyOutcome) throws {
        let sql = currentStatements()
        let insert = try db.cachedStatement(sql: sql.insert).sqliteStatement
        try bind(record, sql: sql, to: insert, keyLast: false, in: db)
        if try Self.step(insert, in: db) {
            outcome.created += 1
            return
        }
        guard !sql.update.isEmpty else {
            outcome.updated += 1
            return
        }
        let update = try db.cachedStatement(sql: sql.update).sqliteStatement
        try bind(record, sql: sql, to: update, keyLast: true, in: db)
        if try Self.step(update, in: db) {
            outcome.updated += 1
        } else {
            // Another unique constraint made the insert do nothing, and no row has this key.
            throw RecordRejection(reason: "\(endpoint.displayName) refused it: a unique constraint other than the key conflicts")
        }
    }

    /// Binds every column of `record` (NULL for the fields it lacks); a non-null field without a
    /// column rejects the record before anything is written.
    private func bind(_ record: Record, sql: Statements, to statement: SQLiteStatement, keyLast: Bool, in db: Database) throws {
        sqlite3_reset(statement)  // GRDB may have left it stepped: binding would then fail
        sqlite3_clear_bindings(statement)
        for (name, value) in record.fields {
            guard let column = sql.columns[name] else {
                if value == .null { continue }
                throw RecordRejection(reason: "\(endpoint.displayName) has no column \"\(name)\" (drop the field with --drop \(name), or add the column)")
            }
            if column == sql.keyIndex { continue }
            try Self.check(DirectUpsert.bind(JSONScannedValue(value), to: statement, at: sql.parameter(column, keyLast: keyLast)), in: db)
        }
        try Self.check(DirectUpsert.bind(JSONScannedValue(record.key.value), to: statement, at: sql.parameter(sql.keyIndex, keyLast: keyLast)), in: db)
    }

    private static func check(_ code: Int32, in db: Database) throws {
        guard code != SQLITE_OK else { return }
        throw DatabaseError(resultCode: ResultCode(rawValue: code), message: String(cString: sqlite3_errmsg(db.sqliteConnection)))
    }

    /// Runs a statement bound by hand: whether it changed a row.
    private static func step(_ statement: SQLiteStatement, in db: Database) throws -> Bool {
        let code = sqlite3_step(statement)
        guard code & 0xFF == SQLITE_DONE else {  // the primary code (GRDB turns extended codes on)
            let message = String(cString: sqlite3_errmsg(db.sqliteConnection))
            sqlite3_reset(statement)
            throw DatabaseError(resultCode: ResultCode(rawValue: code), message: message)
        }
        sqlite3_reset(statement)
        return sqlite3_changes(db.sqliteConnection) > 0
    }
}
