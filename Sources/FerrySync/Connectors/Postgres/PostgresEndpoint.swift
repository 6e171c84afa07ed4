import FerryCore
import Foundation
import PostgresNIO

/// `postgres://USER:PASSWORD@HOST[:PORT]/DATABASE[?SETTINGS]#[SCHEMA.]TABLE`: a PostgreSQL table.
///
/// It works as the SQLite connector does. As a target, a missing table is created with the
/// key as its primary key and one column per field (`bigint`, `double precision`, `boolean`,
/// `text`, or `jsonb` for objects, arrays and fields of mixed types), and a table Ferry made
/// grows a column when a new field arrives. An existing table is used as it is: its key
/// column must be the primary key or under a unique index, and a field without a column is
/// refused (dead-lettered). Each batch and the job's checkpoint commit in one transaction
/// (table `_ferry_checkpoints` in the table's schema), so a crash never separates them.
/// Batches go in with `COPY` into a temporary table and one `MERGE` from it (`INSERT … ON
/// CONFLICT` before PostgreSQL 15, or when the key's unique index has another collation than the key).
///
/// As a source, rows are read with `row_to_json`, so every type reads as the server writes
/// it in JSON (numbers, booleans, `jsonb` as nested values, times in ISO 8601, UTC); NULL
/// columns are left out of the record. An incremental run needs `--cursor-field` and reads
/// in (cursor field, key) order after the saved pair.
public final class PostgresEndpoint: Endpoint {
    let location: PostgresLocation
    let options: EndpointOptions
    var session: PostgresEndpointSession?
    /// The table's columns in table order; empty while the table does not exist.
    var columns: [PostgresColumn] = []
    /// The batch the writer is committing in the background (see ``PostgresWriter``).
    var inFlight: Task<ApplyOutcome, any Error>? = nil
    /// What batches did that a read waited for, until the writer collects it.
    var settled: [Result<ApplyOutcome, any Error>] = []

    public var displayName: String { location.displayName }

    /// Each batch costs about a millisecond of fixed work on the server (a transaction, a COPY
    /// and an upsert statement), so batches of 1,000 would cap a load near half of `\copy`'s
    /// speed; 10,000 reach about 70 % (bench/postgres.sh).
    public var preferredBatchSize: Int? { 10_000 }

    init(location: PostgresLocation, options: EndpointOptions) {
        self.location = location
        self.options = options
    }

    static func quote(_ name: String) -> String { "\"" + name.replacingOccurrences(of: "\"", with: "\"\"") + "\"" }

    /// `"schema"."table"`, or `"table"` in the current schema.
    var quotedTable: String { location.schema.map { Self.quote($0) + "." } .map { $0 + Self.quote(location.table) } ?? Self.quote(location.table) }

    /// Text parameters, `$1`, `$2`, … (nil is NULL).
    static func binds(_ values: String?...) -> PostgresBindings {
        var binds = PostgresBindings(capacity: values.count)
        for value in values { binds.append(value) }
        return binds
    }

    /// The schema and the table as `$1` and `$2`: a NULL schema picks `current_schema()`.
    var schemaBinds: PostgresBindings { Self.binds(location.schema, location.table) }

    public func open(forWriting: Bool) async throws {
        let session = try await PostgresEndpointSession.connect(location)
        self.session = session
        do {
            try await inspect(forWriting: forWriting)
        } catch {
            await close()
            throw error
        }
    }

    private func inspect(forWriting: Bool) async throws {
        guard let session else { return }
        if let schema = location.schema {
            if try await session.rows("SELECT 1 FROM pg_namespace WHERE nspname = $1", Self.binds(schema)).isEmpty {
                throw SyncError(.notFound, "\(displayName): no schema \"\(schema)\" in database \(location.database)")
            }
        }
        let found = try await session.rows("""
            SELECT c.relkind::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE n.nspname = coalesce($1, current_schema()) AND c.relname = $2
            """, schemaBinds)
        guard let relkind = found.first?.text(0) else {
            columns = []
            if forWriting { return }
            let tables = try await session.rows("""
                SELECT c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                WHERE n.nspname = coalesce($1, current_schema()) AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
                  AND c.relname NOT LIKE '\\_ferry%'
                ORDER BY 1 LIMIT 21
                """, Self.binds(location.schema)).compactMap { $0.text(0) }
            let list = tables.isEmpty ? "none" : tables.prefix(20).joined(separator: ", ") + (tables.count > 20 ? ", …" : "")
            throw SyncError(.notFound, "\(displayName): no table \"\(location.table)\" in database \(location.database) (tables: \(list))")
        }
        if forWriting && relkind != "r" && relkind != "p" {
            throw SyncError.badInput("\(displayName): \"\(location.table)\" is not a table (a view or another kind of relation) and cannot be written")
        }
        columns = try await readColumns(session)
        let keyField = options.keyField
        guard columns.contains(where: { $0.name == keyField }) else {
            throw SyncError.badInput("\(displayName): the table has no column \"\(keyField)\" for the key (columns: \(columns.map(\.name).joined(separator: ", "))); name the key with --key")
        }
        if forWriting {
            let binds = Self.binds(location.schema, location.table, keyField)
            let unique = try await session.rows("""
                SELECT 1 FROM pg_index i
                JOIN pg_class c ON c.oid = i.indrelid JOIN pg_namespace n ON n.oid = c.relnamespace
                JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = i.indkey[0]
                WHERE n.nspname = coalesce($1, current_schema()) AND c.relname = $2 AND a.attname = $3
                  AND i.indisunique AND i.indimmediate AND i.indnkeyatts = 1 AND i.indpred IS NULL AND i.indexprs IS NULL
                """, binds)
            guard !unique.isEmpty else {
                throw SyncError.badInput("\(displayName): column \"\(keyField)\" is neither the primary key nor under a unique index, so records cannot be matched; add one (CREATE UNIQUE INDEX …)")
            }
        }
    }

    /// The table's columns from the catalog (within the caller's transaction, when there is one).
    func readColumns(_ session: PostgresEndpointSession) async throws -> [PostgresColumn] {
        try await session.rows("""
            SELECT a.attname::text, format_type(a.atttypid, a.atttypmod), format_type(a.atttypid, NULL), t.typname::text,
                   t.typcategory::text, (a.attgenerated <> '')::text
            FROM pg_attribute a
            JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
            JOIN pg_type t ON t.oid = a.atttypid
            WHERE n.nspname = coalesce($1, current_schema()) AND c.relname = $2 AND a.attnum > 0 AND NOT a.attisdropped
            ORDER BY a.attnum
            """, schemaBinds).map { row in
            PostgresColumn(name: row.text(0) ?? "", type: row.text(1) ?? "text", baseType: row.text(2) ?? "text",
                           typeName: row.text(3) ?? "", category: row.text(4) ?? "", generated: row.text(5) == "true")
        }
    }

    /// Waits for the batch in flight, so reads see it and queries do not interleave with it.
    func waitForWrites() async {
        guard let task = inFlight else { return }
        inFlight = nil
        settled.append(await task.result)
    }

    public func estimatedCount() async throws -> Int? {
        await waitForWrites()
        guard let session, !columns.isEmpty else { return 0 }
        return try await session.rows("SELECT count(*) FROM \(quotedTable)").first?.integer(0)
    }

    public func readAll(batchSize: Int) throws -> SourceBatches {
        SourceBatches { AllReader(endpoint: self, batchSize: batchSize) }
    }

    /// Every row in key order, from one statement read as the batches are asked for.
    final class AllReader: BatchReader {
        let endpoint: PostgresEndpoint
        let batchSize: Int
        var rows: PostgresEndpointSession.RowStream? = nil
        var done = false

        init(endpoint: PostgresEndpoint, batchSize: Int) {
            self.endpoint = endpoint
            self.batchSize = batchSize
        }

        func next() async throws -> SourceBatch? {
            guard !done else { return nil }
            if rows == nil {
                await endpoint.waitForWrites()
                guard let session = endpoint.session, !endpoint.columns.isEmpty else {
                    done = true
                    return nil
                }
                let key = PostgresEndpoint.quote(endpoint.options.keyField)
                rows = try await session.stream("SELECT row_to_json(r.*)::text FROM \(endpoint.quotedTable) r ORDER BY \(key)")
            }
            var batch: [SourceItem] = []
            batch.reserveCapacity(batchSize)
            while batch.count < batchSize {
                guard let row = try await rows!.next() else {
                    done = true
                    rows = nil
                    break
                }
                batch.append(.record(try endpoint.fields(row)))
            }
            return batch.isEmpty ? nil : SourceBatch(batch)
        }
    }

    public func readChanges(after cursor: Cursor?, batchSize: Int) throws -> SourceBatches {
        guard let cursorField = options.cursorField else {
            throw SyncError.badInput("an incremental run from \(displayName) needs --cursor-field (an updated_at-like column); or use --mode diff, which needs none")
        }
        return SourceBatches { ChangeReader(endpoint: self, cursorField: cursorField, after: cursor, batchSize: batchSize) }
    }

    /// The rows after the checkpoint in (cursor field, key) order, from one statement read as
    /// the batches are asked for.
    final class ChangeReader: BatchReader {
        let endpoint: PostgresEndpoint
        let cursorField: String
        let cursor: Cursor?
        let batchSize: Int
        var checkpoint: ValueCheckpoint
        var rows: PostgresEndpointSession.RowStream? = nil
        var columns: (field: PostgresColumn, key: PostgresColumn)? = nil
        var rowsDone = false
        var done = false

        init(endpoint: PostgresEndpoint, cursorField: String, after cursor: Cursor?, batchSize: Int) {
            self.endpoint = endpoint
            self.cursorField = cursorField
            self.cursor = cursor
            self.batchSize = batchSize
            checkpoint = ValueCheckpoint(after: cursor, keyField: endpoint.options.keyField, sorted: true)
        }

        func next() async throws -> SourceBatch? {
            if !rowsDone {
                do {
                    if let batch = try await page() { return batch }
                } catch let error as SyncError where cursor != nil && error.message.contains("SQLSTATE 22") {
                    throw SyncError.badInput("\(endpoint.displayName): the saved checkpoint (\(cursor!)) does not fit columns \(cursorField) and \(endpoint.options.keyField): \(error.message); rerun with --reset")
                }
                rowsDone = true
                rows = nil
            }
            guard !done else { return nil }
            done = true
            return checkpoint.end.map { SourceBatch([], cursor: $0) }
        }

        /// Starts the statement.
        private func start() async throws -> Bool {
            await endpoint.waitForWrites()
            let columns = endpoint.columns
            guard let session = endpoint.session, !columns.isEmpty else { return false }
            guard let fieldColumn = columns.first(where: { $0.name == cursorField }) else {
                throw SyncError.badInput("\(endpoint.displayName): no column \"\(cursorField)\" for --cursor-field (columns: \(columns.map(\.name).joined(separator: ", ")))")
            }
            let keyColumn = columns.first { $0.name == endpoint.options.keyField }!
            self.columns = (fieldColumn, keyColumn)
            let field = PostgresEndpoint.quote(cursorField)
            let key = PostgresEndpoint.quote(endpoint.options.keyField)
            var sql = "SELECT row_to_json(r.*)::text, \(field)::text, \(key)::text FROM \(endpoint.quotedTable) r"
            var binds = PostgresBindings()
            switch cursor {
            case nil:
                sql += " ORDER BY \(field) NULLS FIRST, \(key)"
            case .compound(.null, let k)?:
                // Rows without a cursor value come first; after them, every row that has one.
                binds = PostgresEndpoint.binds(PostgresEndpoint.text(k))
                sql += " WHERE (\(field) IS NULL AND \(key) > CAST($1 AS \(keyColumn.baseType))) OR \(field) IS NOT NULL ORDER BY \(field) NULLS FIRST, \(key)"
            case .compound(let value, .object)? where value != .null:
                // A checkpoint with hashes: every row from its value on (those it covers are dropped below).
                binds = PostgresEndpoint.binds(PostgresEndpoint.text(value))
                sql += " WHERE \(field) >= CAST($1 AS \(fieldColumn.baseType)) ORDER BY \(field), \(key)"
            case .compound(let value, let k)?:
                binds = PostgresEndpoint.binds(PostgresEndpoint.text(value), PostgresEndpoint.text(k))
                sql += " WHERE (\(field), \(key)) > (CAST($1 AS \(fieldColumn.baseType)), CAST($2 AS \(keyColumn.baseType))) ORDER BY \(field), \(key)"
            case .since?:
                throw SyncError.badInput("\(endpoint.displayName): the saved checkpoint is a server timestamp, not a (\(cursorField), key) pair; rerun with --reset")
            }
            rows = try await session.stream(sql, binds)
            return true
        }

        /// The next `batchSize` rows, with the checkpoint after the last; nil after the last row.
        private func page() async throws -> SourceBatch? {
            if rows == nil {
                guard try await start() else { return nil }
            }
            guard let (fieldColumn, keyColumn) = columns else { return nil }
            var batch: [SourceItem] = []
            batch.reserveCapacity(batchSize)
            var position: Cursor? = nil
            var count = 0
            while count < batchSize, let row = try await rows!.next() {
                let fields = try endpoint.fields(row)
                count += 1
                position = endpoint.cursor(value: row.text(1), key: row.text(2), fieldColumn: fieldColumn, keyColumn: keyColumn)
                if case .compound(let value, let k) = position, let key = RecordKey(k) {
                    if checkpoint.take(value: value, key: key, fields: fields) { batch.append(.record(fields)) }
                } else {
                    batch.append(.record(fields))  // no usable key: the engine dead-letters it
                }
            }
            guard let position else { return nil }
            return SourceBatch(batch, cursor: position)
        }
    }

    /// The checkpoint after a row: integers as numbers, everything else as the server's exact text.
    func cursor(value: String?, key: String?, fieldColumn: PostgresColumn, keyColumn: PostgresColumn) -> Cursor {
        func json(_ text: String?, _ column: PostgresColumn) -> JSON {
            guard let text else { return .null }
            if case .integer = column.kind, let i = Int64(text) { return .int(i) }
            return .string(text)
        }
        return .compound(value: json(value, fieldColumn), key: json(key, keyColumn))
    }

    /// A cursor part as the text a `CAST($n AS type)` reads.
    static func text(_ value: JSON) -> String {
        switch value {
        case .string(let s): s
        case .int(let i): String(i)
        case .double(let d): JSON.format(d)
        case .bool(let b): b ? "true" : "false"
        default: value.serialized()
        }
    }

    /// A row's `row_to_json` as a record, without its NULL columns.
    func fields(_ row: PostgresRow) throws -> [String: JSON] {
        guard let text = row.text(0) else { return [:] }
        guard case .object(var fields) = try JSON.parse(text, maxDepth: 512) else {
            throw SyncError(.protocolError, "\(displayName): a row did not read as a JSON object")
        }
        for (name, value) in fields where value == .null { fields.removeValue(forKey: name) }
        return fields
    }

    public func makeWriter(job: String) async throws -> any TargetWriter {
        guard let session else { throw SyncError(.io, "\(displayName) is not open") }
        return PostgresWriter(endpoint: self, session: session, job: job)
    }

    public func close() async {
        await waitForWrites()
        await session?.close()
        session = nil
    }
}
