import FerryPostgres
import FerryCore
import Foundation
import NIOCore
import PostgresNIO

/// Applies batches to a PostgreSQL table, each batch atomically with the job's checkpoint.
///
/// Upserts replace every column (a field the record lacks becomes NULL), as the SQLite
/// connector does; a key that appears twice in one batch is written once, with its last
/// version. A batch goes in one of three ways, the first that the table and the batch allow:
///
/// 1. **COPY straight into the table**, while the table was new or empty when the run began and
///    no key met since was already there. A batch with no checkpoint, no delete and no new
///    column is then a single `COPY` statement, atomic on its own.
/// 2. **COPY into a temporary table** shaped like the target (`c0`, `c1`, …, emptied at each
///    commit), then one `MERGE` from it into the table (PostgreSQL 15 and later;
///    ``mergeSQL(table:columns:keyField:stage:)``), or else one `INSERT … SELECT … ON CONFLICT (key)
///    DO UPDATE`, counting what it created.
/// 3. **Record by record**, each under a savepoint, when the server refused the batch for a
///    record's sake (a value its type cannot read, a constraint): refused records are
///    dead-lettered, the others arrive.
///
/// A refused batch is rolled back whole and tried again the next way. A full load from a file
/// (PostgresWriter+Load.swift) holds its batches in one transaction instead, each under a
/// savepoint (rolled back to it when refused), committed at the end of the file. Commits do not wait for
/// the disk (`synchronous_commit = off`): a server crash may lose the last batches, but always
/// with their checkpoint, so a rerun redoes them; ``finish(cursor:)`` waits for the disk once,
/// before the run reports success.
///
/// Batches are committed in the background: ``apply(_:cursor:)`` waits for the batch before,
/// starts this one and returns the outcome of the one before, so the engine reads the next
/// batch while the server writes this one (a failure surfaces at the next call, or at
/// ``finish(cursor:)``, which waits for everything). After a batch with rejected records, the
/// next one waits for the call after it, so `--strict` stops before it is written.
final class PostgresWriter: TargetWriter {
    let endpoint: PostgresEndpoint
    let session: PostgresEndpointSession
    let job: String
    /// Ferry's own tables in the table's schema (checkpoints, tables Ferry made, their version).
    let tables: FerryTables
    /// Whether Ferry created the table (and may add columns to it).
    private var ownsTable = false
    /// Ferry's tables are at their current version and the session is set up (committed).
    private var setupDone = false
    /// The temporary table for the current columns, once a commit made it.
    private var stage: (name: String, columns: [PostgresColumn])? = nil
    private var stageCount = 0
    /// Whether the stage's rows go in with `MERGE` rather than `INSERT … ON CONFLICT` (nil: not known yet; ``mergesFromStage()``).
    private var merges: Bool? = nil
    /// Whether upserts may go straight into the table with COPY (nil: not known yet).
    private var copiesDirectly: Bool? = nil
    /// Batches committed without waiting for the disk since the last synchronous commit.
    private var unflushed = false
    /// A direct load's transaction (PostgresWriter+Load.swift), open across its batches, each
    /// batch under a savepoint: the table's columns from before it; nil while none is open.
    private var loadColumns: [PostgresColumn]? = nil
    /// A batch held back because the one before had rejected records.
    private var held: (changes: [Change], cursor: Cursor?)? = nil
    /// A two-way run's conditions (``expect(key:exists:version:hash:)``) for the coming batch, and
    /// those of the batches being committed, which check them in their transaction.
    var expected: [String: String?] = [:]
    var conditions: [String: String?] = [:]
    /// How the two-way run hashes a record (``hashRecords(with:)``).
    var recordHash: (([String: JSON]) -> String?)? = nil

    init(endpoint: PostgresEndpoint, session: PostgresEndpointSession, job: String) {
        self.endpoint = endpoint
        self.session = session
        self.job = job
        tables = FerryTables(dialect: .postgres(schema: endpoint.location.schema), place: endpoint.displayName)
    }

    var commitsEachBatch: Bool { true }
    var keepsCheckpoint: Bool { true }

    private var name: String { endpoint.displayName }
    private var keyField: String { endpoint.options.keyField }

    func storedCursor() async throws -> Cursor? {
        let text: String?
        do {
            guard let query = try tables.readCheckpoint(job: job, layout: await session.layout(of: tables)) else { return nil }
            text = try await session.text(query)
        } catch {
            throw PostgresErrors.translate(error, location: endpoint.location, connecting: false, kind: .protocolError)
        }
        return try tables.cursor(text, job: job)
    }

    func resetCheckpoint() async throws {
        let clear: FerryTables.Statement?
        do {
            clear = try tables.clearCheckpoint(job: job, layout: await session.layout(of: tables))
        } catch {
            throw PostgresErrors.translate(error, location: endpoint.location, connecting: false, kind: .protocolError)
        }
        guard let clear else { return }
        try await session.rows(clear.sql, clear.binds, kind: .target)
    }

    func apply(_ changes: [Change], cursor: Cursor?) async throws -> ApplyOutcome {
        // Encode this batch while the one before is being written, against the columns the
        // table had then (used only if that batch changed none).
        var early: Encoded? = nil
        let columns = knownColumns
        if !changes.isEmpty && !columns.isEmpty && held == nil {
            nextBuffer = 1 - nextBuffer
            early = encode(changes, unknown: [], columns: columns, scratch: &earlyScratch, into: &earlyBuffers[nextBuffer])
        }
        var outcome = try await settle()
        knownColumns = endpoint.columns  // nothing is in flight: safe to read
        conditions.merge(expected) { $1 }
        expected = [:]
        if columns != knownColumns { early = nil }
        if let (changes, cursor) = held {
            held = nil
            outcome.add(try await commit(changes, cursor: cursor))
        }
        guard !changes.isEmpty || cursor != nil else { return outcome }
        if !outcome.rejected.isEmpty {
            held = (changes, cursor)
            return outcome
        }
        let writer = Unchecked(self)
        let encoded = early
        endpoint.inFlight = Task { try await writer.value.commit(changes, cursor: cursor, encoded: encoded) }
        return outcome
    }

    /// A file's lines encoded as COPY text straight from their bytes (PostgresWriter+Load.swift).
    struct DirectBatch: Sendable {
        /// The COPY lines, one per record, no key twice.
        var text: ByteBuffer
        var count: Int
        /// The table's columns it was encoded against.
        var columns: [PostgresColumn]
        /// The batch as changes, for what the direct text cannot do: a batch the server refused
        /// (record by record), the table's columns changed meanwhile, a batch held back.
        var changes: @Sendable () throws -> [Change]
    }

    /// ``apply(_:cursor:)`` of a batch encoded from a file's bytes (with no checkpoint: a full run's).
    func apply(direct batch: DirectBatch) async throws -> ApplyOutcome {
        var outcome = try await settle()
        knownColumns = endpoint.columns
        conditions.merge(expected) { $1 }
        expected = [:]
        if !outcome.rejected.isEmpty || held != nil || batch.columns != knownColumns {
            let changes = try batch.changes()
            if held == nil && !outcome.rejected.isEmpty {
                held = (changes, nil)
                return outcome
            }
            outcome.add(try await apply(changes, cursor: nil))
            return outcome
        }
        let writer = Unchecked(self)
        endpoint.inFlight = Task { try await writer.value.commit(direct: batch) }
        return outcome
    }

    /// The table's columns as the engine's side last saw them (while no batch was in flight).
    private(set) lazy var knownColumns = endpoint.columns
    /// Where ``apply(_:cursor:)`` encodes: two buffers, one for the batch in flight, one for the next.
    private var earlyBuffers = [ByteBuffer(), ByteBuffer()]
    private var nextBuffer = 0
    private var earlyScratch: [UInt8] = []

    func finish(cursor: Cursor?) async throws -> ApplyOutcome {
        var outcome = try await settle()
        if let (changes, cursor) = held {
            held = nil
            outcome.add(try await commit(changes, cursor: cursor))
        }
        // Everything is committed batch by batch; a run with nothing to apply still records where it got to.
        if let cursor { outcome.add(try await commit([], cursor: cursor)) }
        // One synchronous commit (of a transaction with an id, so it writes a commit record)
        // puts every batch before it on disk.
        if unflushed {
            do {
                try await execute("BEGIN")
                try await execute("SET LOCAL synchronous_commit = on")
                try await execute("SELECT txid_current()")
                try await execute("COMMIT")
                unflushed = false
            } catch {
                throw await failed(error, inTransaction: true, columns: endpoint.columns)
            }
        }
        return outcome
    }

    /// Waits for the batch in flight: what it (and any batch a read waited for) did, or its failure.
    private func settle() async throws -> ApplyOutcome {
        await endpoint.waitForWrites()
        let results = endpoint.settled
        endpoint.settled = []
        var outcome = ApplyOutcome()
        for result in results { outcome.add(try result.get()) }
        return outcome
    }

    // MARK: one batch

    private enum Way: Comparable { case copyIntoTable, copyThroughStage, oneByOne }

    /// The server refused a batch for a record's sake: it was rolled back, try the next way.
    private struct TryAgain: Error { let way: Way }

    /// One batch and its checkpoint, atomically.
    /// - Parameter encoded: the batch already encoded against the table's current columns.
    private func commit(_ changes: [Change], cursor: Cursor?, encoded: Encoded? = nil) async throws -> ApplyOutcome {
        guard !changes.isEmpty || cursor != nil else { return ApplyOutcome() }
        var way: Way = copiesDirectly == false ? .copyThroughStage : .copyIntoTable
        var encoded = encoded
        while true {
            do {
                return try await attempt(changes, cursor: cursor, way: way, encoded: encoded)
            } catch let again as TryAgain {
                way = again.way
                encoded = nil
            }
        }
    }

    /// A direct batch: straight into the table or through the stage, as the batch path's first
    /// two ways; a batch the server refuses for a record's sake goes the batch path's way, as records.
    private func commit(direct batch: DirectBatch) async throws -> ApplyOutcome {
        var encoded = Encoded()
        encoded.text = batch.text
        encoded.count = batch.count
        var way: Way = copiesDirectly == false ? .copyThroughStage : .copyIntoTable
        while true {
            do {
                return try await attempt([], cursor: nil, way: way, encoded: encoded)
            } catch let again as TryAgain where again.way == .copyThroughStage {
                way = again.way
            } catch is TryAgain {
                return try await commit(batch.changes(), cursor: nil)
            }
        }
    }

    /// A batch checked and encoded against the table's current columns.
    private struct Encoded: Sendable {
        /// The COPY lines (text format) of ``rows``, or of a direct batch's `count` records.
        var text = ByteBuffer()
        /// The upserts to write, each key once (its last version); none for a direct batch.
        var rows: [Record] = []
        /// How many lines `text` has.
        var count = 0
        /// The keys to delete.
        var keys: [RecordKey] = []
        /// Rejected records, and the changes a later one with the same key replaced.
        var outcome = ApplyOutcome()
        /// Upserts with a field the table has no column for (not encoded).
        var extra: [Record] = []
    }

    /// Checks and encodes a batch (COPY's text format), keeping the last change per key.
    /// - Parameters:
    ///   - unknown: fields that will have no column: their records are refused.
    ///   - columns: the table's columns.
    ///   - scratch: where lines are encoded first (kept between batches).
    ///   - buffer: where the lines to write go (kept between batches; the result holds it too).
    private func encode(_ changes: [Change], unknown: Set<String>, columns tableColumns: [PostgresColumn],
                        scratch: inout [UInt8], into buffer: inout ByteBuffer) -> Encoded {
        var encoded = Encoded()
        let columns = tableColumns.filter { !$0.generated }
        let hasTable = !tableColumns.isEmpty
        scratch.removeAll(keepingCapacity: true)
        /// Each change kept so far: its record and where its line sits in `scratch`, or a delete.
        var entries: [(change: Change, lines: Range<Int>)] = []
        entries.reserveCapacity(changes.count)
        var lastEntry: [RecordKey: Int] = [:]
        lastEntry.reserveCapacity(changes.count)
        var superseded = IndexSet()
        for change in changes {
            switch change {
            case .upsert(let record):
                guard hasTable else {
                    encoded.extra.append(record)
                    continue
                }
                if !unknown.isEmpty, let field = record.fields.first(where: { unknown.contains($0.key) && $0.value != .null })?.key {
                    encoded.outcome.rejected.append((change, refusal(field: field)))
                    continue
                }
                let start = scratch.count
                switch Self.encode(record, columns: columns, keyField: keyField, to: &scratch) {
                case .encoded:
                    entries.append((change, start..<scratch.count))
                case .extraFields:
                    scratch.removeSubrange(start...)
                    encoded.extra.append(record)
                    continue
                case .refused(let reason):
                    scratch.removeSubrange(start...)
                    encoded.outcome.rejected.append((change, "\(name) refused it: \(reason)"))
                    continue
                }
            case .delete:
                guard hasTable else {
                    encoded.outcome.alreadyGone += 1  // no table yet: nothing to delete
                    continue
                }
                entries.append((change, 0..<0))
            }
            if let earlier = lastEntry.updateValue(entries.count - 1, forKey: change.key) {
                superseded.insert(earlier)
                if case .upsert = entries[earlier].change { encoded.outcome.updated += 1 } else { encoded.outcome.deleted += 1 }
            }
        }
        buffer.clear()
        if superseded.isEmpty { buffer.writeBytes(scratch) }
        for (index, entry) in entries.enumerated() where !superseded.contains(index) {
            switch entry.change {
            case .upsert(let record):
                encoded.rows.append(record)
                if !superseded.isEmpty { buffer.writeBytes(scratch[entry.lines]) }
            case .delete(let key):
                encoded.keys.append(key)
            }
        }
        encoded.text = buffer
        encoded.count = encoded.rows.count
        return encoded
    }

    /// Where a batch is encoded when it was not already (kept between batches).
    private var copyText = ByteBuffer()
    private var scratch: [UInt8] = []

    private func attempt(_ changes: [Change], cursor: Cursor?, way: Way, encoded early: Encoded?) async throws -> ApplyOutcome {
        let committedColumns = endpoint.columns
        var encoded = early ?? encode(changes, unknown: [], columns: endpoint.columns, scratch: &scratch, into: &copyText)
        // The values of fields without a column (of every field while there is no table).
        let newFields = Self.newFields(of: encoded.extra, known: Set(endpoint.columns.map(\.name)))
        let needsTable = endpoint.columns.isEmpty && !encoded.extra.isEmpty
        if copiesDirectly == nil && !endpoint.columns.isEmpty {
            // Known once per writer: afterwards only a key already there turns it off.
            copiesDirectly = try await query("SELECT (NOT EXISTS (SELECT 1 FROM \(endpoint.quotedTable)))::text").first?.text(0) == "true"
        }
        // A lone COPY is a transaction of its own; anything more needs one around it.
        let inLoad = loadColumns != nil  // a batch of a load's transaction: under a savepoint
        let lone = !inLoad && way == .copyIntoTable && copiesDirectly == true && cursor == nil && encoded.keys.isEmpty
            && setupDone && encoded.extra.isEmpty && conditions.isEmpty
        try await checkLayout(columns: committedColumns)
        do {
            if !setupDone {
                try await execute("SET synchronous_commit = off")
            }
            if !lone {
                try await execute(inLoad ? "SAVEPOINT _ferry_batch" : "BEGIN")
            }
            // Two-way: rows changed since the run read them are locked and left as they are.
            let changedMeanwhile = try await lockChangedMeanwhile(changes)
            var changes = changes
            if !changedMeanwhile.isEmpty {
                let skipped = Set(changedMeanwhile.map(\.text))
                changes.removeAll { skipped.contains($0.key.text) }
                encoded = encode(changes, unknown: [], columns: endpoint.columns, scratch: &scratch, into: &copyText)
            }
            try await migrate()
            if !encoded.extra.isEmpty {
                // New columns (or a new table), then everything again against them; fields still
                // without a column refuse their records.
                let unknown = try await prepareColumns(newFields: newFields, creating: needsTable, upserts: encoded.extra)
                let columnNames = Set(endpoint.columns.map(\.name))
                encoded = encode(changes, unknown: unknown.union(newFields.keys.filter { !columnNames.contains($0) }),
                                 columns: endpoint.columns, scratch: &scratch, into: &copyText)
                for record in encoded.extra {
                    let field = record.fields.first { !columnNames.contains($0.key) && $0.value != .null }?.key ?? "?"
                    encoded.outcome.rejected.append((.upsert(record), refusal(field: field)))
                }
            }
            var outcome = encoded.outcome
            outcome.changedMeanwhile = changedMeanwhile
            let count = encoded.count
            let columns = endpoint.columns.filter { !$0.generated }
            if count > 0 {
                switch way {
                case .copyIntoTable where copiesDirectly == true && columns.count == endpoint.columns.count:
                    // Every column in table order, so COPY names none (postgres-nio would not escape them),
                    // and the table's name goes in as "schema"."table": both parts are plain identifiers.
                    let table = endpoint.location.schema.map { $0 + "\".\"" + endpoint.location.table } ?? endpoint.location.table
                    try await session.copy(encoded.text, into: table)
                    outcome.created += count
                case .copyIntoTable, .copyThroughStage:
                    let stage = try await makeStage(columns)
                    try await session.copy(encoded.text, into: stage)
                    let created: Int
                    if try await mergesFromStage() {
                        created = try await merge(from: stage, columns: columns)
                    } else {
                        let select = "SELECT " + (0..<columns.count).map { "c\($0)" }.joined(separator: ", ") + " FROM pg_temp.\(stage)"
                        created = try await query(upsertSQL(columns: columns, from: select)).first?.integer(0) ?? 0
                    }
                    outcome.created += created
                    outcome.updated += count - created
                    // No commit empties the stage between a load's batches.
                    if inLoad { try await execute("TRUNCATE pg_temp.\(stage)") }
                case .oneByOne:
                    try await upsertOneByOne(encoded.rows, columns: columns, outcome: &outcome)
                }
            }
            if !encoded.keys.isEmpty {
                try await delete(encoded.keys, outcome: &outcome)
            }
            if let cursor {
                try await session.run(tables.saveCheckpoint(job: job, cursor: cursor))
            }
            if !lone {
                try await execute(inLoad ? "RELEASE SAVEPOINT _ferry_batch" : "COMMIT")
            }
            setupDone = true
            unflushed = true
            return outcome
        } catch where way != .oneByOne && Self.isAboutARecord(error) {
            // Back to before the batch, then the next way (a key already there: no more direct COPY).
            if inLoad {
                _ = try? await query("ROLLBACK TO SAVEPOINT _ferry_batch")
            } else if !lone {
                _ = try? await query("ROLLBACK")
            }
            forgetUncommitted(columns: committedColumns)
            if way == .copyIntoTable {
                if PostgresFailure.sqlState(error) == "23505" { copiesDirectly = false }
                throw TryAgain(way: .copyThroughStage)
            }
            throw TryAgain(way: .oneByOne)
        } catch {
            throw await failed(error, inTransaction: !lone, columns: committedColumns)
        }
    }

    /// Before the first transaction: a version of Ferry's tables this Ferry does not know is
    /// refused before anything begins.
    private func checkLayout(columns: [PostgresColumn]) async throws {
        guard !setupDone else { return }
        let layout: FerryTables.Layout
        do {
            layout = try await session.layout(of: tables)
        } catch {
            throw await failed(error, inTransaction: false, columns: columns)
        }
        try tables.check(layout)
    }

    /// In the first transaction: Ferry's tables at their current version, migrated with it.
    private func migrate() async throws {
        guard !setupDone else { return }
        for statement in try tables.migration(from: await session.layout(of: tables)) {
            try await session.run(statement)
        }
    }

    /// Opens a direct load's transaction (PostgresWriter+Load.swift): until ``commitLoad()``,
    /// each batch goes in under a savepoint of it (a batch the server refuses is rolled back to
    /// it and tried the next way), and a table the load creates is created in it.
    func beginLoad() async throws {
        _ = try await settle()  // nothing is in flight before the first batch
        let columns = endpoint.columns
        try await checkLayout(columns: columns)
        do {
            if !setupDone {
                try await execute("SET synchronous_commit = off")
            }
            try await execute("BEGIN")
        } catch {
            throw await failed(error, inTransaction: true, columns: columns)
        }
        loadColumns = columns
    }

    /// Waits for the load's batches and commits its transaction; the outcome of the batch that
    /// was in flight.
    func commitLoad() async throws -> ApplyOutcome {
        let outcome = try await settle()
        guard let before = loadColumns else { return outcome }
        do {
            try await execute("COMMIT")
        } catch {
            throw await failed(error, inTransaction: true, columns: before)
        }
        loadColumns = nil
        unflushed = true
        return outcome
    }

    /// Waits for the load's batches and rolls its transaction back (a malformed file: the load changes nothing).
    func rollbackLoad() async {
        _ = try? await settle()
        guard let before = loadColumns else { return }
        _ = try? await query("ROLLBACK")
        loadColumns = nil
        forgetUncommitted(columns: before)
        knownColumns = endpoint.columns
    }

    /// Whether a load's transaction is open (a failure of the server's rolls it back and closes it).
    var loading: Bool { loadColumns != nil }

    /// Creates the table for a direct load's first batch (PostgresWriter+Load.swift), as the
    /// batch path creates it from the same upserts (``prepareColumns(newFields:creating:upserts:)``),
    /// so that the batch itself can then go in as COPY text: in the load's transaction when one is
    /// open (a load that fails leaves no table), else in a transaction of its own (a run that fails
    /// before its first batch commits leaves the table there, empty: a rerun loads it as a table it
    /// finds empty, the same rows).
    func createTable(for upserts: [Record]) async throws {
        _ = try await settle()  // nothing is in flight before the first batch
        let committedColumns = endpoint.columns
        guard committedColumns.isEmpty, !upserts.isEmpty else { return }
        try await checkLayout(columns: committedColumns)
        do {
            if !setupDone {
                try await execute("SET synchronous_commit = off")
            }
            let inLoad = loadColumns != nil  // then the table is the load's, committed with it
            if !inLoad { try await execute("BEGIN") }
            try await migrate()
            _ = try await prepareColumns(newFields: Self.newFields(of: upserts, known: []), creating: true, upserts: upserts)
            if !inLoad { try await execute("COMMIT") }
            setupDone = true
            unflushed = true
        } catch {
            throw await failed(error, inTransaction: true, columns: committedColumns)
        }
        knownColumns = endpoint.columns
    }

    /// The values of the records' (non-null) fields that have no column among `known`.
    private static func newFields(of records: [Record], known: Set<String>) -> [String: [JSON]] {
        var newFields: [String: [JSON]] = [:]
        for record in records {
            for (field, value) in record.fields where value != .null && !known.contains(field) {
                newFields[field, default: []].append(value)
            }
        }
        return newFields
    }

    /// Rolls back and says what failed (the batch as a whole: nothing of it was written; in a
    /// load's transaction, nothing of the load).
    private func failed(_ error: any Error, inTransaction: Bool, columns: [PostgresColumn]) async -> SyncError {
        let failure = PostgresErrors.translate(error, location: endpoint.location, connecting: false, kind: .target)
        if inTransaction && !PostgresFailure.isConnectionLost(error) && failure.kind != .unreachable {
            _ = try? await query("ROLLBACK")
        }
        var columns = columns
        if inTransaction, let before = loadColumns {
            columns = before
            loadColumns = nil
        }
        forgetUncommitted(columns: columns)
        var message = failure.message
        if message.hasPrefix(name + ": ") { message.removeFirst(name.count + 2) }
        return SyncError(failure.kind, "\(name): the batch failed and was rolled back: \(message)")
    }

    /// A rollback may have undone the set-up, the temporary table, a table Ferry made or a column it added.
    /// - Parameter columns: the table's columns before the batch.
    private func forgetUncommitted(columns: [PostgresColumn]) {
        setupDone = false
        stage = nil
        ownsTable = false
        if copiesDirectly == true { copiesDirectly = nil }
        endpoint.columns = columns
    }

    /// Why a record with a field the table has no column for is refused.
    private func refusal(field: String) -> String {
        if !Self.isColumnName(field) {
            return "\(name) cannot have a column named \"\(field)\" (PostgreSQL names are 1 to 63 bytes, without NUL); rename the field with --rename or drop it with --drop"
        }
        return "\(name) has no column \"\(field)\" (drop the field with --drop \(field), or add the column)"
    }

    static func isColumnName(_ name: String) -> Bool {
        !name.isEmpty && name.utf8.count <= 63 && !name.utf8.contains(0)
    }

    enum Encoding: Equatable {
        case encoded
        /// The record has a (non-null) field no column takes.
        case extraFields
        case refused(String)
    }

    /// Appends a record's COPY line (text format), or says why it cannot have one.
    static func encode(_ record: Record, columns: [PostgresColumn], keyField: String, to out: inout [UInt8]) -> Encoding {
        var stored = 0
        for (i, column) in columns.enumerated() {
            if i > 0 { out.append(UInt8(ascii: "\t")) }
            let value: JSON
            if column.name == keyField {
                value = record.key.value
                if let field = record.fields[keyField], field != .null { stored += 1 }
            } else {
                value = record.fields[column.name] ?? .null
                if value != .null { stored += 1 }
            }
            if case .null = value {
                out.append(UInt8(ascii: "\\"))
                out.append(UInt8(ascii: "N"))
                continue
            }
            if let reason = column.append(value, copy: true, to: &out) { return .refused(reason) }
        }
        out.append(UInt8(ascii: "\n"))
        // Every field found a column, unless the record has more (non-null) fields than were stored.
        if record.fields.count > stored {
            var fields = 0
            for value in record.fields.values { if case .null = value {} else { fields += 1 } }
            if fields > stored { return .extraFields }
        }
        return .encoded
    }

    /// Data errors and constraint violations (SQLSTATE classes 22 and 23, and 54: a value too large for an index).
    static func isAboutARecord(_ error: any Error) -> Bool {
        guard let state = PostgresFailure.sqlState(error) else { return false }
        return state.hasPrefix("22") || state.hasPrefix("23") || state.hasPrefix("54")
    }

    // MARK: upserts

    /// `INSERT INTO t (cols) SELECT … ON CONFLICT (key) DO UPDATE SET every other column`, counting created rows.
    ///
    /// A row that already holds exactly the record's values is left as it is (the `WHERE` of
    /// `DO UPDATE`), and still counts as updated: rewriting it would cost a new row version and a
    /// new index entry for nothing, and a full run of an export that barely changed is mostly such
    /// rows (EXPLAIN ANALYZE of a batch of 10,000 unchanged rows: 306 ms rewriting them, 130 ms
    /// leaving them).
    /// The rows are compared by the bytes that are stored: `1.0` and `1.00` differ, as do two
    /// strings that a case-insensitive collation would call equal. Integers, booleans, and `text`
    /// and `varchar` under the `C` collation (bytewise) are compared as they are, since for them
    /// equal means the same bytes; every other column by its text form (`ROW(…)::text`, which
    /// every type has). Measured with psql, 200,000 rows every one changed in batches of 10,000:
    /// the text form of every column cost about a fifth of the upsert's time.
    static func upsertSQL(table: String, columns: [PostgresColumn], keyField: String, from source: String) -> String {
        let names = columns.map { PostgresEndpoint.quote($0.name) }
        let key = PostgresEndpoint.quote(keyField)
        let others = columns.filter { $0.name != keyField }
        let conflict: String
        if let differs = Self.differs(others, row: "_ferry_row", new: { "EXCLUDED." + PostgresEndpoint.quote($0.name) }) {
            conflict = "DO UPDATE SET " + others.map { "\(PostgresEndpoint.quote($0.name)) = EXCLUDED.\(PostgresEndpoint.quote($0.name))" }.joined(separator: ", ")
                + " WHERE " + differs
        } else {
            conflict = "DO NOTHING"
        }
        return """
            WITH written AS (INSERT INTO \(table) AS _ferry_row (\(names.joined(separator: ", "))) \(source) \
            ON CONFLICT (\(key)) \(conflict) RETURNING (xmax = 0) AS created) \
            SELECT count(*) FILTER (WHERE created), count(*) FROM written
            """
    }

    /// The condition under which a stored row (`row`) differs from the record's values (`new`
    /// gives a column's new value): nil when there are no columns to compare. Integers, booleans,
    /// and `text` and `varchar` under the `C` collation are compared as they are, the others by
    /// their text form (see ``upsertSQL(table:columns:keyField:from:)``).
    static func differs(_ columns: [PostgresColumn], row: String, new: (PostgresColumn) -> String) -> String? {
        guard !columns.isEmpty else { return nil }
        var exact: [(String, String)] = [], asText: [(String, String)] = []
        for column in columns {
            let stored = row + "." + PostgresEndpoint.quote(column.name)
            switch column.kind {
            case .integer, .boolean: exact.append((stored, new(column)))
            case .text where column.baseType == "text" || column.baseType == "character varying":
                exact.append(("\(stored) COLLATE \"C\"", "\(new(column)) COLLATE \"C\""))
            default: asText.append((stored, new(column)))
            }
        }
        var differs: [String] = []
        if !exact.isEmpty {
            differs.append("(" + exact.map(\.0).joined(separator: ", ") + ") IS DISTINCT FROM (" + exact.map(\.1).joined(separator: ", ") + ")")
        }
        if !asText.isEmpty {
            differs.append("ROW(" + asText.map(\.0).joined(separator: ", ") + ")::text IS DISTINCT FROM ROW("
                           + asText.map(\.1).joined(separator: ", ") + ")::text")
        }
        return differs.joined(separator: " OR ")
    }

    /// `MERGE INTO t USING pg_temp.stage ON key WHEN MATCHED AND the row differs THEN UPDATE …
    /// WHEN NOT MATCHED THEN INSERT …`: what ``upsertSQL(table:columns:keyField:from:)`` does,
    /// from the stage (column `c<i>` holds `columns[i]`), for less of the server's work.
    ///
    /// `INSERT … ON CONFLICT DO UPDATE` locks every row it meets before it updates it (or, when
    /// nothing changed, instead): a WAL record for the lock and one for the update. `MERGE` with the
    /// stage as the outer side of a nested loop over the key's index only updates (EXPLAIN ANALYZE,
    /// 200,000 users at fillfactor 50, a 10,000-row batch every row changed: 10,000 WAL records
    /// against 20,000, 71–137 ms against 85–200 ms, paired; unchanged rows are neither locked nor
    /// written). It has no `RETURNING` before PostgreSQL 17, so ``merge(from:columns:)`` counts the
    /// rows it inserted from the transaction's statistics; and it does not wait for a key another
    /// transaction is inserting as `ON CONFLICT` does, but fails (23505): the batch then goes the
    /// record-by-record way, with `ON CONFLICT`.
    static func mergeSQL(table: String, columns: [PostgresColumn], keyField: String, stage: String) -> String {
        let names = columns.map { PostgresEndpoint.quote($0.name) }
        let new = Dictionary(columns.enumerated().map { ($0.element.name, "_ferry_new.c\($0.offset)") }, uniquingKeysWith: { first, _ in first })
        let others = columns.filter { $0.name != keyField }
        var sql = "MERGE INTO \(table) AS _ferry_row USING pg_temp.\(stage) AS _ferry_new "
            + "ON _ferry_row.\(PostgresEndpoint.quote(keyField)) = \(new[keyField] ?? "NULL") "
        if let differs = Self.differs(others, row: "_ferry_row", new: { new[$0.name] ?? "NULL" }) {
            sql += "WHEN MATCHED AND (\(differs)) THEN UPDATE SET "
                + others.map { "\(PostgresEndpoint.quote($0.name)) = \(new[$0.name] ?? "NULL")" }.joined(separator: ", ") + " "
        }
        return sql + "WHEN NOT MATCHED THEN INSERT (\(names.joined(separator: ", "))) VALUES (\(columns.indices.map { "_ferry_new.c\($0)" }.joined(separator: ", ")))"
    }

    /// Whether the stage's rows go in with ``mergeSQL(table:columns:keyField:stage:)``: PostgreSQL
    /// 15 or later (`MERGE`), statistics kept (`track_counts`: they count what was inserted), and a
    /// unique index on the key under the key column's own collation: the join compares keys under
    /// the column's collation, and must find what that index calls the same key (a nondeterministic
    /// collation's equal is not bytewise). Otherwise `INSERT … ON CONFLICT`, whose arbiter is the
    /// index itself. Known once per writer.
    private func mergesFromStage() async throws -> Bool {
        if let merges { return merges }
        let answer = try await query("""
            SELECT (current_setting('server_version_num')::int >= 150000 AND current_setting('track_counts')::bool
                    AND EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indkey[0] = a.attnum AND i.indisunique
                                AND i.indimmediate AND i.indnkeyatts = 1 AND i.indpred IS NULL AND i.indexprs IS NULL
                                AND i.indcollation[0] = a.attcollation))::text
            FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = $2 AND NOT a.attisdropped
            WHERE c.oid = $1::text::regclass
            """, PostgresEndpoint.binds(endpoint.quotedTable, keyField)).first?.text(0) == "true"
        merges = answer
        return answer
    }

    /// The rows this transaction inserted into `table` (an expression of type `regclass`) so far:
    /// a partitioned table's are counted on its leaf partitions (`pg_partition_tree` has no rows
    /// for a table that is not partitioned).
    static func insertedRows(_ table: String) -> String {
        "coalesce((SELECT sum(pg_stat_get_xact_tuples_inserted(p.relid)) FROM pg_partition_tree(\(table)) p WHERE p.isleaf), "
            + "pg_stat_get_xact_tuples_inserted(\(table)))::bigint"
    }

    /// The stage's rows into the table with `MERGE`; returns how many rows it inserted.
    ///
    /// The planner is held to nested loops for the statement (`SET LOCAL`, put back afterwards):
    /// with hash or merge joins allowed it reads the whole table for each batch (a 10,000-row
    /// batch into 200,000 rows: 5.0–6.2 s for 20 batches against 1.2–1.3 s).
    /// Inserted rows are counted by the transaction's statistics of the table, or of its leaf
    /// partitions when it is partitioned (`pg_stat_get_xact_tuples_inserted`), read before and after
    /// in the same transaction (statistics are sent on only between transactions).
    private func merge(from stage: String, columns: [PostgresColumn]) async throws -> Int {
        let before = try await query("""
            SELECT \(Self.insertedRows("s.t")), s.h, s.m, set_config('enable_hashjoin', 'off', true),
                   set_config('enable_mergejoin', 'off', true)
            FROM (SELECT $1::text::regclass AS t, current_setting('enable_hashjoin') AS h, current_setting('enable_mergejoin') AS m OFFSET 0) s
            """, PostgresEndpoint.binds(endpoint.quotedTable)).first
        try await execute(Self.mergeSQL(table: endpoint.quotedTable, columns: columns, keyField: keyField, stage: stage))
        let after = try await query("""
            SELECT \(Self.insertedRows("$1::text::regclass")), set_config('enable_hashjoin', $2, true),
                   set_config('enable_mergejoin', $3, true)
            """, PostgresEndpoint.binds(endpoint.quotedTable, before?.text(1) ?? "on", before?.text(2) ?? "on")).first
        return (after?.integer(0) ?? 0) - (before?.integer(0) ?? 0)
    }

    private func upsertSQL(columns: [PostgresColumn], from source: String) -> String {
        Self.upsertSQL(table: endpoint.quotedTable, columns: columns, keyField: keyField, from: source)
    }

    private func upsertOneByOne(_ rows: [Record], columns: [PostgresColumn], outcome: inout ApplyOutcome) async throws {
        // Cast to the type without its modifier: a cast to varchar(5) would cut a value short where storing it is refused.
        let values = (1...columns.count).map { "CAST($\($0) AS \(columns[$0 - 1].baseType))" }.joined(separator: ", ")
        let sql = upsertSQL(columns: columns, from: "VALUES (\(values))")
        for record in rows {
            var binds = PostgresBindings(capacity: columns.count)
            for column in columns {
                let value = column.name == keyField ? record.key.value : record.fields[column.name] ?? .null
                var text: [UInt8] = []
                if value == .null || column.append(value, copy: false, to: &text) != nil {
                    binds.appendNull()
                } else {
                    binds.append(String(decoding: text, as: UTF8.self))
                }
            }
            try await execute("SAVEPOINT ferry_record")
            do {
                if try await query(sql, binds).first?.integer(0) == 1 { outcome.created += 1 } else { outcome.updated += 1 }
                try await execute("RELEASE SAVEPOINT ferry_record")
            } catch where Self.isAboutARecord(error) {
                try await execute("ROLLBACK TO SAVEPOINT ferry_record")
                let reason = PostgresFailure.serverMessage(error) ?? "\(error)"
                outcome.rejected.append((.upsert(record), "\(name) refused it: \(reason)"))
            }
        }
    }

    /// The temporary table COPY fills: columns `c0`, `c1`, … of the target's types, emptied at each commit.
    private func makeStage(_ columns: [PostgresColumn]) async throws -> String {
        if let stage, stage.columns == columns { return stage.name }
        stageCount += 1
        let stageName = "_ferry_stage_\(stageCount)"
        let definitions = columns.enumerated().map { "c\($0.offset) \($0.element.type)" }.joined(separator: ", ")
        try await execute("CREATE TEMPORARY TABLE IF NOT EXISTS \(stageName) (\(definitions)) ON COMMIT DELETE ROWS")
        // Kept only if this transaction commits (a rollback forgets it).
        stage = (stageName, columns)
        return stageName
    }

    // MARK: deletes

    private func delete(_ keys: [RecordKey], outcome: inout ApplyOutcome) async throws {
        guard let keyColumn = endpoint.columns.first(where: { $0.name == keyField }) else { return }
        var texts: [String] = []
        texts.reserveCapacity(keys.count)
        for key in keys {
            var text: [UInt8] = []
            if keyColumn.append(key.value, copy: false, to: &text) == nil {
                texts.append(String(decoding: text, as: UTF8.self))
            }
            // A key the column cannot hold is not in the table.
        }
        var binds = PostgresBindings()
        binds.append(texts)
        let deleted = try await query("""
            WITH gone AS (DELETE FROM \(endpoint.quotedTable) WHERE \(PostgresEndpoint.quote(keyField)) = ANY(CAST($1::text[] AS \(keyColumn.baseType)[])) RETURNING 1) \
            SELECT count(*) FROM gone
            """, binds).first?.integer(0) ?? 0
        outcome.deleted += deleted
        outcome.alreadyGone += keys.count - deleted
    }

    // MARK: table and columns

    /// How full COPY and inserts fill the pages of a table Ferry creates (PostgreSQL's default is 100).
    ///
    /// Half of each page is left free so that an update finds room for the row's new version on
    /// the row's own page: a HOT update, which adds no index entry. In a table filled to 100 % every
    /// changed row moves to a new page and gets a new primary-key entry (measured with psql on
    /// 200,000 users, every row changed in batches of 10,000 through the stage: 3.2–3.6 s at 100,
    /// 0 % HOT; 2.1–2.3 s at 50, 100 % HOT, and the same again on a second round, since each page
    /// prunes the versions the first round left; 70 gave 42 % HOT). The cost is disk for a table
    /// that is loaded and never updated (twice the pages, 39 MB instead of 19 MB there); a table
    /// whose rows were all updated once is that size at 100 too (39–58 MB), until a VACUUM FULL.
    /// A table Ferry did not create keeps its own setting. A job may set another (`--fill-factor`,
    /// `fill_factor`): 100 for a table that is loaded once and never updated.
    static let fillFactor = 50

    /// Creates the table on the first batch, and adds columns for new fields to a table Ferry made.
    /// - Parameter newFields: the values of the fields without a column.
    /// - Returns: the fields the table still has no column for (their records are refused).
    private func prepareColumns(newFields: [String: [JSON]], creating: Bool, upserts: [Record]) async throws -> Set<String> {
        if creating {
            let keyType = upserts.allSatisfy({ if case .int = $0.key.value { true } else { false } }) ? "bigint" : "text"
            var definitions = ["\(PostgresEndpoint.quote(keyField)) \(keyType) PRIMARY KEY"]
            for field in newFields.keys.sorted() where field != keyField && Self.isColumnName(field) {
                definitions.append("\(PostgresEndpoint.quote(field)) \(PostgresColumn.declaredType(for: newFields[field]!))")
            }
            try await execute("CREATE TABLE \(endpoint.quotedTable) (\(definitions.joined(separator: ", "))) WITH (fillfactor = \(endpoint.options.fillFactor ?? Self.fillFactor))")
            try await session.run(tables.recordOwned(endpoint.location.table))
            endpoint.columns = try await endpoint.readColumns(session)
            ownsTable = true
            copiesDirectly = true
            return Set(newFields.keys.filter { !Self.isColumnName($0) })
        }
        guard !newFields.isEmpty, !endpoint.columns.isEmpty else { return [] }
        if !ownsTable {
            ownsTable = try await session.text(tables.findOwned(endpoint.location.table)) != nil
        }
        guard ownsTable else { return Set(newFields.keys) }
        for field in newFields.keys.sorted() where Self.isColumnName(field) {
            try await execute("ALTER TABLE \(endpoint.quotedTable) ADD COLUMN \(PostgresEndpoint.quote(field)) \(PostgresColumn.declaredType(for: newFields[field]!))")
        }
        endpoint.columns = try await endpoint.readColumns(session)
        return Set(newFields.keys.filter { !Self.isColumnName($0) })
    }

    // MARK: statements (driver errors stay as they are, for the callers to tell apart)

    private func query(_ sql: String, _ binds: PostgresBindings = PostgresBindings()) async throws -> [PostgresRow] {
        try await session.query(sql, binds)
    }

    private func execute(_ sql: String, _ binds: PostgresBindings = PostgresBindings()) async throws {
        _ = try await query(sql, binds)
    }
}

/// A value handed to the task that commits a batch in the background. The writer is used by one
/// task at a time: ``PostgresWriter/apply(_:cursor:)`` and the endpoint wait for that task first.
struct Unchecked<Value>: @unchecked Sendable {
    let value: Value
    init(_ value: Value) { self.value = value }
}

