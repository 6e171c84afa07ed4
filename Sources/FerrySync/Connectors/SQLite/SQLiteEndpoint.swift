public import FerryCore
import Foundation
import GRDB
import GRDBSQLite

/// `sqlite:PATH#TABLE`: a table in a SQLite file.
///
/// As a target, a missing table is created with the key as its primary key and one column
/// per field (`INTEGER`, `REAL`, `TEXT`, `BOOLEAN`, or `JSON` text for nested values), and
/// grows a column when a new field arrives. An existing table is used as it is: its key
/// column must be the primary key or have a unique index, and a field without a column is
/// refused (dead-lettered) rather than dropped. Each batch and the job's checkpoint commit
/// in one transaction (table `_ferry_checkpoints`), so a crash never separates them.
public final class SQLiteEndpoint: Endpoint, KeyOrderedReading {
    public let path: String
    public let table: String
    let options: EndpointOptions
    var queue: DatabaseQueue?
    /// Column name → declared type, in table order; empty while the table does not exist.
    var columns: [(name: String, type: String)] = []

    public var displayName: String { "sqlite:\(path)#\(table)" }

    public init(path: String, table: String, options: EndpointOptions) {
        self.path = path
        self.table = table
        self.options = options
    }

    var quotedTable: String { Self.quote(table) }
    static func quote(_ name: String) -> String { "\"" + name.replacingOccurrences(of: "\"", with: "\"\"") + "\"" }

    public func open(forWriting: Bool) async throws {
        try openNow(forWriting: forWriting)
    }

    // GRDB's synchronous API, which the async methods call: one task at a time uses an endpoint.
    private func openNow(forWriting: Bool) throws {
        let exists = FileSystem.exists(path)
        if !forWriting && !exists {
            throw SyncError(.notFound, "\(displayName): no such file \(path)")
        }
        var config = Configuration()
        config.readonly = !forWriting
        config.busyMode = .timeout(10)
        let queue: DatabaseQueue
        do {
            queue = try DatabaseQueue(path: path, configuration: config)
            // SQLite opens a file it may not write read-only, and only a write would then fail.
            if forWriting, queue.inDatabase({ sqlite3_db_readonly($0.sqliteConnection, "main") == 1 }) {
                let why = WritableFolder.problem(for: path) ?? "the file or its file system is read-only"
                throw SyncError(.io, "\(displayName): cannot open the database for writing: SQLite could only open it read-only (\(why))")
            }
            if forWriting && !exists { try queue.writeWithoutTransaction { try $0.execute(sql: "PRAGMA journal_mode = WAL") } }
            columns = try queue.read { db in try Self.columns(of: self.table, in: db) }
        } catch let error as DatabaseError {
            var reason = error.message ?? "\(error)"
            // SQLite says "unable to open database file" for a folder it cannot write in.
            if forWriting, let problem = WritableFolder.problem(for: path) { reason += " (\(problem))" }
            throw SyncError(.io, "\(displayName): cannot open the database: \(reason)")
        }
        self.queue = queue
        if columns.isEmpty {
            if !forWriting {
                let tables = try queue.read { db in
                    try String.fetchAll(db, sql: "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE '\\_ferry%' ESCAPE '\\' ORDER BY name")
                }
                throw SyncError(.notFound, "\(displayName): no table \"\(table)\" in \(path) (tables: \(tables.isEmpty ? "none" : tables.joined(separator: ", ")))")
            }
            return
        }
        guard columns.contains(where: { $0.name == options.keyField }) else {
            throw SyncError.badInput("\(displayName): the table has no column \"\(options.keyField)\" for the key (columns: \(columns.map(\.name).joined(separator: ", "))); name the key with --key")
        }
        if forWriting {
            let unique = try queue.read { db in try Self.isUnique(column: self.options.keyField, table: self.table, in: db) }
            guard unique else {
                throw SyncError.badInput("\(displayName): column \"\(options.keyField)\" is neither the primary key nor under a unique index, so records cannot be matched; add one (CREATE UNIQUE INDEX …)")
            }
        }
    }

    static func columns(of table: String, in db: Database) throws -> [(name: String, type: String)] {
        try Row.fetchAll(db, sql: "PRAGMA table_info(\(quote(table)))").map { row in
            (row["name"] as String, (row["type"] as String?)?.uppercased() ?? "")
        }
    }

    static func isUnique(column: String, table: String, in db: Database) throws -> Bool {
        let primary = try Row.fetchAll(db, sql: "PRAGMA table_info(\(quote(table)))").filter { ($0["pk"] as Int) > 0 }
        if primary.count == 1, primary[0]["name"] as String == column { return true }
        for index in try Row.fetchAll(db, sql: "PRAGMA index_list(\(quote(table)))") where (index["unique"] as Int) == 1 {
            let names = try String.fetchAll(db, sql: "SELECT name FROM pragma_index_info(?)", arguments: [index["name"] as String])
            if names == [column] { return true }
        }
        return false
    }

    public func estimatedCount() async throws -> Int? {
        try countNow()
    }

    private func countNow() throws -> Int? {
        guard let queue, !columns.isEmpty else { return 0 }
        return try queue.read { db in try Int.fetchOne(db, sql: "SELECT count(*) FROM \(self.quotedTable)") }
    }

    public func readAll(batchSize: Int) throws -> SourceBatches {
        guard let queue, !columns.isEmpty else { return .empty }
        return SourceBatches { AllReader(endpoint: self, queue: queue, batchSize: batchSize) }
    }

    /// A full read in key order, a page per batch (each its own read transaction): between two
    /// batches it holds the last key, no statement.
    final class AllReader: BatchReader {
        let endpoint: SQLiteEndpoint
        let queue: DatabaseQueue
        let sql: (first: String, after: String)
        let batchSize: Int
        var last: DatabaseValue? = nil
        var done = false

        init(endpoint: SQLiteEndpoint, queue: DatabaseQueue, batchSize: Int) {
            self.endpoint = endpoint
            self.queue = queue
            self.batchSize = batchSize
            let key = SQLiteEndpoint.quote(endpoint.options.keyField)
            let table = endpoint.quotedTable
            sql = ("SELECT * FROM \(table) ORDER BY \(key) LIMIT \(batchSize)",
                   "SELECT * FROM \(table) WHERE \(key) > ? ORDER BY \(key) LIMIT \(batchSize)")
        }

        func next() async throws -> SourceBatch? {
            guard !done else { return nil }
            let rows = if let last {
                try endpoint.fetch(queue, sql.after, [last])
            } else {
                try endpoint.fetch(queue, sql.first, [])
            }
            guard let lastRow = rows.last else {
                done = true
                return nil
            }
            last = lastRow.key
            if rows.count < batchSize { done = true }
            return SourceBatch(rows.map { .record($0.fields) })
        }
    }

    public func readChanges(after cursor: Cursor?, batchSize: Int) throws -> SourceBatches {
        guard let cursorField = options.cursorField else {
            throw SyncError.badInput("an incremental run from \(displayName) needs --cursor-field (an updated_at-like column); or use --mode diff, which needs none")
        }
        guard let queue, !columns.isEmpty else { return .empty }
        guard columns.contains(where: { $0.name == cursorField }) else {
            throw SyncError.badInput("\(displayName): no column \"\(cursorField)\" for --cursor-field (columns: \(columns.map(\.name).joined(separator: ", ")))")
        }
        return SourceBatches { ChangeReader(endpoint: self, queue: queue, cursorField: cursorField, after: cursor, batchSize: batchSize) }
    }

    /// A read of changes in (cursor field, key) order, a page per batch: between two batches
    /// it holds the last (value, key) and the checkpoint being built, no statement.
    final class ChangeReader: BatchReader {
        let endpoint: SQLiteEndpoint
        let queue: DatabaseQueue
        let cursorField: String
        let batchSize: Int
        let key: String
        let field: String
        var checkpoint: ValueCheckpoint
        /// A checkpoint with hashes: every row from its value on (the read drops those it covers).
        var floor: DatabaseValue? = nil
        var position: (DatabaseValue, DatabaseValue)? = nil
        var rowsDone = false
        var done = false

        init(endpoint: SQLiteEndpoint, queue: DatabaseQueue, cursorField: String, after cursor: Cursor?, batchSize: Int) {
            self.endpoint = endpoint
            self.queue = queue
            self.cursorField = cursorField
            self.batchSize = batchSize
            key = SQLiteEndpoint.quote(endpoint.options.keyField)
            field = SQLiteEndpoint.quote(cursorField)
            checkpoint = ValueCheckpoint(after: cursor, keyField: endpoint.options.keyField, sorted: true)
            if case .compound(let value, let k)? = cursor {
                if checkpoint.coversRecords {
                    floor = SQLiteEndpoint.databaseValue(value, type: "")
                } else {
                    position = (SQLiteEndpoint.databaseValue(value, type: ""), SQLiteEndpoint.databaseValue(k, type: ""))
                }
            }
        }

        func next() async throws -> SourceBatch? {
            if !rowsDone, let batch = try page() { return batch }
            rowsDone = true
            guard !done else { return nil }
            done = true
            // The end: the newest value with the hashes of its records, when the last page left one.
            return checkpoint.end.map { SourceBatch([], cursor: $0) }
        }

        private func page() throws -> SourceBatch? {
            let table = endpoint.quotedTable
            let rows = if let (value, k) = position {
                try endpoint.fetch(queue, "SELECT * FROM \(table) WHERE \(field) > ? OR (\(field) = ? AND \(key) > ?) ORDER BY \(field), \(key) LIMIT \(batchSize)", [value, value, k], cursorField: cursorField)
            } else if let floor {
                try endpoint.fetch(queue, "SELECT * FROM \(table) WHERE \(field) >= ? ORDER BY \(field), \(key) LIMIT \(batchSize)", [floor], cursorField: cursorField)
            } else {
                try endpoint.fetch(queue, "SELECT * FROM \(table) ORDER BY \(field), \(key) LIMIT \(batchSize)", [], cursorField: cursorField)
            }
            guard let lastRow = rows.last else { return nil }
            if rows.count < batchSize { rowsDone = true }
            position = (lastRow.cursorValue, lastRow.key)
            var items: [SourceItem] = []
            items.reserveCapacity(rows.count)
            for row in rows {
                let value = SQLiteEndpoint.json(row.cursorValue, type: "")
                // A row without a usable key is not checkpointed (the engine dead-letters it).
                guard let rowKey = RecordKey(SQLiteEndpoint.json(row.key, type: "")) else {
                    items.append(.record(row.fields))
                    continue
                }
                if checkpoint.take(value: value, key: rowKey, fields: row.fields) { items.append(.record(row.fields)) }
            }
            let next = Cursor.compound(value: SQLiteEndpoint.json(lastRow.cursorValue, type: ""), key: SQLiteEndpoint.json(lastRow.key, type: ""))
            return SourceBatch(items, cursor: next)
        }
    }

    /// Rows come in key order when the key column has text affinity (SQLite compares text
    /// with memcmp under `COLLATE BINARY`, the order of ``RecordKey/text``'s bytes); an integer key
    /// sorts by number, which is not the order of its text.
    public var readsInKeyOrder: Bool {
        guard let type = columns.first(where: { $0.name == options.keyField })?.type else { return true }  // no table: no rows
        return !type.contains("INT") && (type.contains("CHAR") || type.contains("CLOB") || type.contains("TEXT"))
    }

    public func records(after: RecordKey?, limit: Int) async throws -> [[String: JSON]] {
        guard let queue, !columns.isEmpty else { return [] }
        let key = Self.quote(options.keyField) + " COLLATE BINARY"
        let rows = if let after {
            try fetch(queue, "SELECT * FROM \(quotedTable) WHERE \(key) > ? ORDER BY \(key) LIMIT \(limit)", [after.text.databaseValue])
        } else {
            try fetch(queue, "SELECT * FROM \(quotedTable) WHERE \(Self.quote(options.keyField)) IS NOT NULL ORDER BY \(key) LIMIT \(limit)", [])
        }
        return rows.map(\.fields)
    }

    struct FetchedRow {
        var fields: [String: JSON]
        var key: DatabaseValue
        var cursorValue: DatabaseValue
    }

    func fetch(_ queue: DatabaseQueue, _ sql: String, _ arguments: [DatabaseValue], cursorField: String? = nil) throws -> [FetchedRow] {
        try queue.read { db in try fetch(db, sql, arguments, cursorField: cursorField) }
    }

    func fetch(_ db: Database, _ sql: String, _ arguments: [DatabaseValue], cursorField: String? = nil) throws -> [FetchedRow] {
        let types = Dictionary(columns.map { ($0.name, $0.type) }, uniquingKeysWith: { a, _ in a })
        let keyField = options.keyField
        var result: [FetchedRow] = []
        let cursor = try Row.fetchCursor(db, sql: sql, arguments: StatementArguments(arguments))
        while let row = try cursor.next() {
            var fields: [String: JSON] = [:]
            var key = DatabaseValue.null
            var cursorValue = DatabaseValue.null
            for (name, value) in row {
                if name == keyField { key = value }
                if name == cursorField { cursorValue = value }
                let json = Self.json(value, type: types[name] ?? "")
                if json != .null { fields[name] = json }
            }
            result.append(FetchedRow(fields: fields, key: key, cursorValue: cursorValue))
        }
        return result
    }

    /// A stored value as JSON, by the column's declared type where storage alone cannot tell.
    static func json(_ value: DatabaseValue, type: String) -> JSON {
        switch value.storage {
        case .null: return .null
        case .int64(let i): return type.contains("BOOL") ? .bool(i != 0) : .int(i)
        case .double(let d): return .double(d)
        case .string(let s):
            if type == "JSON", let parsed = try? JSON.parse(s) { return parsed }
            return .string(s)
        case .blob(let data): return .string(data.base64EncodedString())
        }
    }

    /// A JSON value to store: nested values as canonical JSON text, booleans as 0/1.
    static func databaseValue(_ value: JSON, type: String) -> DatabaseValue {
        switch value {
        case .null: return .null
        case .bool(let b): return (b ? 1 : 0).databaseValue
        case .int(let i): return i.databaseValue
        case .double(let d): return d.databaseValue
        case .string(let s): return s.databaseValue
        case .array, .object: return value.serialized().databaseValue
        }
    }

    static func declaredType(for value: JSON) -> String {
        switch value {
        case .null, .string: "TEXT"
        case .bool: "BOOLEAN"
        case .int: "INTEGER"
        case .double: "REAL"
        case .array, .object: "JSON"
        }
    }

    public func makeWriter(job: String) async throws -> any TargetWriter {
        guard let queue else { throw SyncError(.io, "\(displayName) is not open") }
        return SQLiteWriter(endpoint: self, queue: queue, job: job)
    }

    public func close() async {
        try? queue?.close()
        queue = nil
    }
}
