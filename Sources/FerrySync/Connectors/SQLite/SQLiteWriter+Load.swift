import FerryCore
import GRDB
import GRDBSQLite

extension SQLiteWriter {
    /// A full run from a JSON Lines or CSV file with no transform: each line is parsed straight into
    /// the table's statements (``DirectUpsert``), with no record dictionary, no `String` for ASCII
    /// text and no hashing (measured: those were most of a load through ``apply(_:cursor:)``).
    ///
    /// The result is the same as the engine's batch path: one transaction per batch, the same
    /// counts, the same rejections. A line the direct path cannot take as it is (the table does not
    /// exist yet, a field without a column, a key that is missing or not a string or an integer, a
    /// statement the table refuses) goes through ``Run/prepare(_:incremental:)`` and
    /// ``apply(_:in:outcome:)`` in its place, in the same transaction.
    ///
    /// `validation` checks the whole file on another thread meanwhile: until it has passed, batches
    /// join one transaction, committed only once it has (a malformed line anywhere rolls it back, so
    /// the file changes nothing); then each batch commits on its own again.
    /// - Returns: true when it stopped early at a batch boundary because `stop` closed.
    func load(_ file: FileEndpoint, validation: BackgroundValidation?, run: inout Run,
              progress: ((Int, Int?) -> Void)?, total: Int?, stop: WakeSignal?) throws -> Bool {
        let opened = try FileEndpoint.OpenFile(file)
        defer { file.bytesRead = opened.reader.bytesRead }
        let batchSize = run.job.effectiveBatchSize
        let name = file.displayName
        func commitBatches(read: () throws -> Bool, load: (Database, inout Run, inout ApplyOutcome) throws -> Void) throws -> Bool {
            try self.commitBatches(validation: validation, run: &run, progress: progress, total: total, stop: stop, read: read, load: load)
        }
        switch file.format {
        case .jsonl:
            var batch = LineBatch()
            func record(_ index: Int) throws -> [String: JSON] {
                try batch.withLine(index) { try RecordReader.object($0, number: batch.numbers[index], name: name) }
            }
            return try commitBatches {
                batch.removeAll()
                while batch.count < batchSize, try opened.reader.nextJSONLine(into: &batch) {}
                return batch.count > 0
            } load: { db, run, outcome in
                try self.load(count: batch.count, in: db, run: &run, outcome: &outcome, item: { .record(try record($0)) }) { direct, index, outcome in
                    try batch.withLine(index) { try direct.upsert(line: $0, outcome: &outcome) }
                }
            }
        case .csv:
            var batch = CSV.Row()  // the batch's cells, row after row, `header.count` to a row
            var rows = 0
            var header: [String] = []
            return try commitBatches {
                batch.removeAll()
                rows = 0
                while rows < batchSize, try opened.reader.nextCSVRow(into: &batch) != nil { rows += 1 }
                if rows > 0 { header = opened.reader.header! }
                return rows > 0
            } load: { db, run, outcome in
                let width = header.count
                func record(_ index: Int) -> [String: JSON] {
                    RecordReader.fields(header: header, cells: batch.cells(index * width..<(index + 1) * width))
                }
                try self.load(count: rows, in: db, run: &run, outcome: &outcome, item: { .record(record($0)) }) { direct, index, outcome in
                    try direct.upsert(header: header, row: batch, first: index * width, outcome: &outcome)
                }
            }
        }
    }

    /// Loads batches (`read` fills the next one, false at the end of the file; `load` writes it
    /// in a transaction) and commits them: each on its own once `validation` has passed (or with
    /// none); before that, together, and only once it has passed.
    /// - Returns: true when it stopped early at a batch boundary because `stop` closed.
    private func commitBatches(validation: BackgroundValidation?, run: inout Run, progress: ((Int, Int?) -> Void)?,
                               total: Int?, stop: WakeSignal?, read: () throws -> Bool,
                               load: (Database, inout Run, inout ApplyOutcome) throws -> Void) throws -> Bool {
        var more = try read()
        while more {
            var stopped = false
            let outcome = try transaction { db in
                var outcome = ApplyOutcome()
                while true {
                    try load(db, &run, &outcome)
                    progress?(run.report.read, total)
                    if stop?.isClosed == true {
                        stopped = true
                        break
                    }
                    // While the validation runs, the next batch joins this transaction.
                    guard let validation, try !validation.passed() else { break }
                    more = try read()
                    if !more { break }
                }
                try validation?.wait()  // a malformed file: nothing of this transaction is committed
                return outcome
            }
            try run.absorb(outcome)
            if stopped { return true }
            if more { more = try read() }
        }
        return false
    }

    /// One batch of `count` records: each through `direct`, or through the engine's path (`item`)
    /// when `direct` returns false (or for every record while the table does not exist: the
    /// first batch decides its columns and their types, as in ``apply(_:cursor:)``).
    func load(count: Int, incremental: Bool = false, in db: Database, run: inout Run, outcome: inout ApplyOutcome,
              item: (Int) throws -> SourceItem,
              direct upsert: (inout DirectUpsert, Int, inout ApplyOutcome) throws -> Bool) throws {
        if endpoint.columns.isEmpty {
            let items = try (0..<count).map(item)
            try apply(run.prepare(items, incremental: incremental), in: db, outcome: &outcome)
            return
        }
        var direct = try DirectUpsert(db, writer: self)
        for index in 0..<count {
            if try upsert(&direct, index, &outcome) {
                run.report.read += 1
                run.report.loadedDirectly += 1
                continue
            }
            try apply(run.prepare([try item(index)], incremental: incremental), in: db, outcome: &outcome)
            if endpoint.columns.count != direct.columnCount { direct = try DirectUpsert(db, writer: self) }
        }
    }
}

/// The insert-or-update of ``SQLiteWriter``'s `upsert` on SQLite's C API, with each value bound
/// as it is parsed. Its SQL and its counts are the writer's own; it only declines (returns false)
/// where that path would do something else (create a column, reject the record, report an error).
struct DirectUpsert {
    let db: Database
    private let insert: SQLiteStatement
    private let update: SQLiteStatement?
    private let sql: SQLiteWriter.Statements
    /// The table's column names as bytes, in table order.
    private let names: [[UInt8]]
    private var keyIndex: Int { sql.keyIndex }
    var columnCount: Int { sql.columnCount }
    /// The column the member at each position of the last record had: the guess for the next one.
    private var guesses: [Int] = []
    /// The column of each CSV header column (nil: the table has none), worked out on the first row.
    private var headerColumns: [Int?]? = nil

    init(_ db: Database, writer: SQLiteWriter) throws {
        let sql = writer.currentStatements()
        self.db = db
        self.sql = sql
        insert = try db.cachedStatement(sql: sql.insert).sqliteStatement
        update = sql.update.isEmpty ? nil : try db.cachedStatement(sql: sql.update).sqliteStatement
        names = writer.endpoint.columns.map { Array($0.name.utf8) }
    }

    /// Writes one JSON Lines line (a JSON object; the member named `ignoring` is not data);
    /// false when the engine's path must take it.
    mutating func upsert(line: UnsafeRawBufferPointer, ignoring: [UInt8]? = nil, outcome: inout ApplyOutcome) throws -> Bool {
        try upsert(outcome: &outcome) { this, statement, keyLast in this.bind(line: line, ignoring: ignoring, to: statement, keyLast: keyLast) }
    }

    /// Writes one CSV row (header column `i`'s cell is `row`'s cell `first + i`); false when the
    /// engine's path must take it.
    mutating func upsert(header: [String], row: CSV.Row, first: Int, outcome: inout ApplyOutcome) throws -> Bool {
        try upsert(outcome: &outcome) { this, statement, keyLast in
            this.bind(header: header, row: row, first: first, to: statement, keyLast: keyLast)
        }
    }

    /// The insert, then the update when the key was there, each bound by `bind` (statement,
    /// whether the key goes last).
    private mutating func upsert(outcome: inout ApplyOutcome, bind: (inout Self, SQLiteStatement, Bool) -> Bool) throws -> Bool {
        guard bind(&self, insert, false) else { return false }
        guard let created = try step(insert) else { return false }
        if created {
            outcome.created += 1
            return true
        }
        guard let update else {
            outcome.updated += 1
            return true
        }
        guard bind(&self, update, true), try step(update) == true else { return false }
        outcome.updated += 1
        return true
    }

    /// Runs a bound statement: whether it changed a row; nil when the table refused it
    /// (a constraint, a type mismatch), which the engine's path then reports.
    func step(_ statement: SQLiteStatement) throws -> Bool? {
        let code = sqlite3_step(statement)
        sqlite3_reset(statement)
        switch code & 0xFF {  // the primary code (GRDB turns extended codes on)
        case SQLITE_DONE: return sqlite3_changes(db.sqliteConnection) > 0
        case SQLITE_CONSTRAINT, SQLITE_MISMATCH: return nil
        default:
            throw DatabaseError(resultCode: ResultCode(rawValue: code), message: String(cString: sqlite3_errmsg(db.sqliteConnection)))
        }
    }

    private func parameter(_ column: Int, keyLast: Bool) -> Int32 { sql.parameter(column, keyLast: keyLast) }

    private mutating func column(named name: JSONScannedText, position: Int) -> Int? {
        if position < guesses.count, name.equals(names[guesses[position]]) { return guesses[position] }
        guard let column = names.firstIndex(where: { name.equals($0) }) else { return nil }
        if position < guesses.count { guesses[position] = column } else if position == guesses.count { guesses.append(column) }
        return column
    }

    private mutating func bind(line: UnsafeRawBufferPointer, ignoring: [UInt8]?, to statement: SQLiteStatement, keyLast: Bool) -> Bool {
        sqlite3_reset(statement)  // GRDB may have left it stepped: binding would then fail
        sqlite3_clear_bindings(statement)
        var hasKey = false
        var position = 0
        do {
            let complete = try JSON.forEachMember(ofObject: line) { name, value in
                defer { position += 1 }
                if let ignoring, name.equals(ignoring) { return true }
                guard let column = column(named: name, position: position) else {
                    if case .null = value { return true }
                    return false  // a field without a column
                }
                if column == keyIndex {
                    guard Self.isKey(value) else { return false }
                    hasKey = true
                }
                return Self.bind(value, to: statement, at: parameter(column, keyLast: keyLast)) == SQLITE_OK
            }
            return complete && hasKey
        } catch {
            return false  // the engine's path reports it with the line's number
        }
    }

    /// Binds a CSV row's cells from their bytes (``CSV/withValue(of:_:_:)``: the types the
    /// engine's path gives them, with no `String` or `JSON` per cell).
    private mutating func bind(header: [String], row: CSV.Row, first: Int, to statement: SQLiteStatement, keyLast: Bool) -> Bool {
        sqlite3_reset(statement)  // GRDB may have left it stepped: binding would then fail
        sqlite3_clear_bindings(statement)
        let names = names
        let columns = headerColumns ?? header.map { name in names.firstIndex { name.utf8.elementsEqual($0) } }
        headerColumns = columns
        let keyIndex = keyIndex
        var hasKey = false
        for position in columns.indices {
            let index = columns[position].map { parameter($0, keyLast: keyLast) }
            let bound = CSV.withValue(of: row, first + position) { value -> Bool in
                guard let value else { return true }
                if case .null = value { return true }
                guard let column = columns[position], let index else { return false }  // a field without a column
                if column == keyIndex {
                    guard Self.isKey(value) else { return false }
                    hasKey = true
                }
                return Self.bind(value, to: statement, at: index) == SQLITE_OK
            }
            guard bound else { return false }
        }
        return hasKey
    }

    /// Whether the value makes a ``RecordKey`` the direct path can bind as it is.
    static func isKey(_ value: JSONScannedValue) -> Bool {
        switch value {
        case .int: true
        case .text(.ascii(let raw)): raw.count > 0
        case .text(.string(let s)): !s.isEmpty
        default: false  // a double with an integral value is a key too: the engine's path converts it
        }
    }

    /// Binds a value as ``SQLiteEndpoint/databaseValue(_:type:)`` stores it: booleans as 0/1,
    /// nested values as canonical JSON text.
    static func bind(_ value: JSONScannedValue, to statement: SQLiteStatement, at index: Int32) -> Int32 {
        switch value {
        case .null:
            return sqlite3_bind_null(statement, index)
        case .bool(let b):
            return sqlite3_bind_int64(statement, index, b ? 1 : 0)
        case .int(let i):
            return sqlite3_bind_int64(statement, index, i)
        case .double(let d):
            return sqlite3_bind_double(statement, index, d)
        case .text(.ascii(let raw)):
            guard let base = raw.baseAddress, raw.count > 0 else { return sqlite3_bind_text(statement, index, "", 0, transient) }
            return sqlite3_bind_text(statement, index, base.assumingMemoryBound(to: CChar.self), Int32(raw.count), transient)
        case .text(.string(let s)):
            // Up to the first NUL, as GRDB binds a String on the engine's path.
            return s.withCString { sqlite3_bind_text(statement, index, $0, -1, transient) }
        case .nested(let json):
            return json.serialized().withCString { sqlite3_bind_text(statement, index, $0, -1, transient) }
        }
    }

    /// SQLite copies a bound value before the call returns.
    private static let transient = unsafeBitCast(-1, to: sqlite3_destructor_type.self)
}

extension JSONScannedValue {
    /// A parsed value as the scanner would have handed it out (strings as `String`s).
    init(_ value: JSON) {
        self = switch value {
        case .null: .null
        case .bool(let b): .bool(b)
        case .int(let i): .int(i)
        case .double(let d): .double(d)
        case .string(let s): .text(.string(s))
        case .array, .object: .nested(value)
        }
    }
}
