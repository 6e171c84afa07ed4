import FerryCore
import Foundation
import NIOCore

extension PostgresWriter {
    /// A full run from a JSON Lines or CSV file with no transform: each batch of lines (or rows)
    /// becomes COPY text straight from their bytes (``DirectCopyText``), with no record
    /// dictionary, no `String` for ASCII text and no ``Run/prepare(_:incremental:)``; measured,
    /// those were most of Ferry's CPU in a load through ``apply(_:cursor:)``.
    ///
    /// The result is the batch path's: the same COPY lines, the same ways into the table, the same
    /// counts. A new table is made from the first batch's records as the batch path makes it
    /// (``createTable(for:)``), then that batch goes in directly too. A
    /// batch the direct text cannot take as it is (a field without a column, a key missing, not a
    /// string or an integer, or twice in the batch, a value its column refuses) goes through
    /// ``Run/prepare(_:incremental:)`` and ``apply(_:cursor:)`` whole, as does a batch the server
    /// refuses.
    ///
    /// The file is checked as it loads, with no pass of its own before: every line is walked whole
    /// by the direct text (``JSON/forEachMember(ofObject:maxDepth:_:)``, the parser's rules) or
    /// parsed by the record path, every CSV row read by the reader's checks. So the batches go in
    /// one transaction (``beginLoad()``, each under a savepoint), committed at the end of the file:
    /// a malformed line anywhere rolls it back and the file changes nothing, as when it was checked
    /// first (measured: that pass was 17 % of Ferry's CPU, before the first COPY). A load that ends
    /// early (`stop`, `--strict`, `--max-errors`) checks the rest of the file, then commits.
    /// - Returns: true when it stopped early at a batch boundary because `stop` closed.
    func load(_ file: FileEndpoint, run: inout Run, progress: ((Int, Int?) -> Void)?, total: Int?, stop: WakeSignal?) async throws -> Bool {
        let opened = try FileEndpoint.OpenFile(file)
        defer { file.bytesRead = opened.reader.bytesRead }
        /// The rest of the file, checked as the engine checks a file (``FileEndpoint/validateNow()``).
        func checkRest() throws {
            if file.format == .jsonl {
                try opened.reader.validateJSONLines()
            } else {
                var row = CSV.Row()
                while try opened.reader.nextCSVRow(into: &row) != nil { row.removeAll() }
            }
        }
        try await beginLoad()
        do {
            let stopped = try await loadBatches(file, opened: opened, run: &run, progress: progress, total: total, stop: stop)
            if stopped {
                do { try checkRest() } catch { throw MalformedFile(error: error) }
            }
            try run.absorb(await commitLoad())
            return stopped
        } catch let malformed as MalformedFile {
            await rollbackLoad()
            throw malformed.error
        } catch {
            // Ended early (a rejection under --strict, the server's failure: then nothing is open).
            guard loading else { throw error }
            do {
                try checkRest()
            } catch let malformed {
                await rollbackLoad()
                throw malformed
            }
            _ = try await commitLoad()
            throw error
        }
    }

    /// A failure of the file (a malformed line or row), found while loading it.
    private struct MalformedFile: Error { let error: any Error }

    private func loadBatches(_ file: FileEndpoint, opened: FileEndpoint.OpenFile, run: inout Run, progress: ((Int, Int?) -> Void)?,
                             total: Int?, stop: WakeSignal?) async throws -> Bool {
        let name = file.displayName
        let batchSize = run.job.effectiveBatchSize
        var checked = false
        /// The whole file, checked once, as the engine checks a file before other loads.
        func check() throws {
            guard !checked else { return }
            try file.validateNow()
            checked = true
        }
        switch file.format {
        case .jsonl:
            var batch = LineBatch()
            return try await load(run: &run, progress: progress, total: total, stop: stop, check: check) {
                batch = LineBatch()  // (the batch before may still be held by its fallback)
                while batch.count < batchSize, try opened.reader.nextJSONLine(into: &batch) {}
                return batch.count
            } encode: { direct, columns in
                direct.encode(batch, columns: columns)
            } records: {
                let lines = batch
                return {
                    try (0..<lines.count).map { index in
                        try lines.withLine(index) { try RecordReader.object($0, number: lines.numbers[index], name: name) }
                    }
                }
            }
        case .csv:
            var batch = CSV.Row()  // the batch's cells, row after row, `header.count` to a row
            var rows = 0
            var header: [String] = []
            return try await load(run: &run, progress: progress, total: total, stop: stop, check: check) {
                batch = CSV.Row()
                rows = 0
                while rows < batchSize, try opened.reader.nextCSVRow(into: &batch) != nil { rows += 1 }
                if rows > 0 { header = opened.reader.header! }
                return rows
            } encode: { direct, columns in
                direct.encode(batch, rows: rows, header: header, columns: columns)
            } records: {
                let (cells, rows, header) = (batch, rows, header)
                return {
                    (0..<rows).map { row in
                        RecordReader.fields(header: header, cells: cells.cells(row * header.count..<(row + 1) * header.count))
                    }
                }
            }
        }
    }

    /// Loads batches: `read` fills the next one (returns its size, 0 at the end of the file),
    /// `encode` makes its COPY text against the table's columns (nil: the batch path's), `records`
    /// gives the batch's records, parsed when they are needed. `check` checks the whole file,
    /// before anything is dead-lettered: a record is rejected only from a well-formed file.
    private func load(run: inout Run, progress: ((Int, Int?) -> Void)?, total: Int?, stop: WakeSignal?,
                      check: () throws -> Void,
                      read: () throws -> Int,
                      encode: (inout DirectCopyText, [PostgresColumn]) -> ByteBuffer?,
                      records: () -> @Sendable () throws -> [[String: JSON]]) async throws -> Bool {
        let keyField = endpoint.options.keyField
        var direct = DirectCopyText(keyField: keyField)
        /// What reads or parses the file: its failure is the file's.
        func file<T>(_ body: () throws -> T) throws -> T {
            do { return try body() } catch { throw MalformedFile(error: error) }
        }
        while true {
            let count = try file(read)
            guard count > 0 else { return false }
            let fields = records()
            if knownColumns.isEmpty {
                // No table yet: made from this batch's upserts (the records with a usable key, as
                // ``Run/prepare(_:incremental:)`` keeps them with no transform).
                let upserts = try file {
                    try fields().compactMap { fields in
                        fields[keyField].flatMap(RecordKey.init).map { Record(key: $0, fields: fields) }
                    }
                }
                try await createTable(for: upserts)
            }
            let columns = knownColumns
            if let text = encode(&direct, columns) {
                run.report.read += count
                run.report.loadedDirectly += count
                let outcome = try await apply(direct: DirectBatch(text: text, count: count, columns: columns) {
                    // Every record had a usable key to be encoded.
                    try fields().map { Change.upsert(Record(key: RecordKey($0[keyField] ?? .null)!, fields: $0)) }
                })
                if !outcome.rejected.isEmpty { try file(check) }
                try run.absorb(outcome)
            } else {
                // A line the direct text stopped at is parsed here: a malformed one throws. (The
                // batch path may reject records: only once the whole file is known well formed.)
                let items = try file { try fields().map(SourceItem.record) }
                try file(check)
                let changes = try run.prepare(items, incremental: false)
                try await run.commit(changes, cursor: nil)
            }
            progress?(run.report.read, total)
            if stop?.isClosed == true { return true }
        }
    }
}

/// COPY's text format straight from JSON Lines bytes or CSV cells: for each line or row, the
/// line ``PostgresWriter/encode(_:columns:keyField:to:)`` writes for the record it parses into,
/// or nil where that function would not write one (or the batch path would write another: a key
/// twice).
///
/// Values go through ``PostgresColumn/append(_:copy:to:)`` as that function's do, except text
/// handed out as bytes (ASCII from JSON, any cell from CSV) into a text-like column, which is
/// escaped from its bytes as the same function escapes a `String`'s.
struct DirectCopyText {
    let keyField: String
    /// The table's columns this was set up for, those COPY writes (not generated), their names as
    /// bytes and the key's among them.
    private var tableColumns: [PostgresColumn] = []
    private var columns: [PostgresColumn] = []
    private var names: [[UInt8]] = []
    private var keyIndex: Int? = nil
    /// The column the member at each position of the last line had: the guess for the next one.
    private var guesses: [Int] = []
    /// A CSV header and the column of each of its names (nil: none) against `columns`.
    private var header: [String]? = nil
    private var headerColumns: [Int?] = []
    /// Where each column's value of the current line is in `scratch` (`nullCell`: null; nil: none yet).
    private var cells: [Range<Int>?] = []
    private var scratch: [UInt8] = []
    /// Whether the current line has its key.
    private var hasKey = false
    /// Hashes of the batch's keys (as the key column's text): a repeat, or a collision, sends the batch the batch path's way.
    private var keys: Set<Int> = []
    private static let nullCell = -1 ..< -1

    init(keyField: String) {
        self.keyField = keyField
    }

    /// The batch's COPY lines against the table's `columns`; nil when the batch path must take it.
    mutating func encode(_ batch: LineBatch, columns tableColumns: [PostgresColumn]) -> ByteBuffer? {
        guard var text = begin(tableColumns, capacity: batch.bytes.count + batch.count * (tableColumns.count * 2 + 1)) else { return nil }
        for index in 0..<batch.count {
            guard batch.withLine(index, { encode(line: $0, to: &text) }) else { return nil }
        }
        return text
    }

    /// A CSV batch's COPY lines (`rows` rows of `header.count` cells) against the table's
    /// `columns`, each cell typed as ``CSV/withValue(of:_:_:)`` types it; nil when the batch path must take it.
    mutating func encode(_ batch: CSV.Row, rows: Int, header: [String], columns tableColumns: [PostgresColumn]) -> ByteBuffer? {
        guard var text = begin(tableColumns, capacity: batch.bytes.count + rows * (tableColumns.count * 2 + 1)) else { return nil }
        if header != self.header {
            let names = names
            headerColumns = header.map { name in names.firstIndex { name.utf8.elementsEqual($0) } }
            self.header = header
        }
        for row in 0..<rows {
            guard encode(row: batch, first: row * header.count, to: &text) else { return nil }
        }
        return text
    }

    /// Sets up for the table's columns; the buffer for the batch's lines, nil with no table or no key column.
    private mutating func begin(_ tableColumns: [PostgresColumn], capacity: Int) -> ByteBuffer? {
        guard !tableColumns.isEmpty else { return nil }  // no table yet: its columns come from the records
        if tableColumns != self.tableColumns {
            self.tableColumns = tableColumns
            columns = tableColumns.filter { !$0.generated }
            names = columns.map { Array($0.name.utf8) }
            keyIndex = columns.firstIndex { $0.name == keyField }
            guesses = []
            header = nil
            cells = Array(repeating: nil, count: columns.count)
        }
        guard keyIndex != nil else { return nil }
        keys.removeAll(keepingCapacity: true)
        return ByteBufferAllocator().buffer(capacity: capacity)
    }

    private mutating func encode(line: UnsafeRawBufferPointer, to text: inout ByteBuffer) -> Bool {
        startLine()
        var position = 0
        do {
            let complete = try JSON.forEachMember(ofObject: line) { name, value in
                defer { position += 1 }
                return take(value, column: column(named: name, position: position))
            }
            guard complete else { return false }
        } catch {
            return false  // the batch path reports it with the line's number
        }
        return endLine(to: &text)
    }

    private mutating func encode(row: CSV.Row, first: Int, to text: inout ByteBuffer) -> Bool {
        startLine()
        for position in headerColumns.indices {
            let column = headerColumns[position]
            // An empty cell is a missing field.
            guard CSV.withValue(of: row, first + position, { value in value.map { take($0, column: column) } ?? true }) else { return false }
        }
        return endLine(to: &text)
    }

    private mutating func startLine() {
        scratch.removeAll(keepingCapacity: true)
        for index in cells.indices { cells[index] = nil }
        hasKey = false
    }

    /// A field's value for `column` (nil: the table has none); false when the batch path must take it.
    private mutating func take(_ value: JSONScannedValue, column: Int?) -> Bool {
        guard let column else {
            if case .null = value { return true }
            return false  // a field without a column
        }
        guard cells[column] == nil else { return false }  // a member twice
        if case .null = value {
            cells[column] = Self.nullCell
            return true
        }
        let start = scratch.count
        guard Self.append(value, to: columns[column], &scratch) else { return false }
        cells[column] = start..<scratch.count
        if column == keyIndex {
            guard DirectUpsert.isKey(value) else { return false }
            var hasher = Hasher()
            scratch.withUnsafeBytes { hasher.combine(bytes: UnsafeRawBufferPointer(rebasing: $0[start...])) }
            guard keys.insert(hasher.finalize()).inserted else { return false }
            hasKey = true
        }
        return true
    }

    /// Writes the current line's COPY line; false when it has no key.
    private mutating func endLine(to text: inout ByteBuffer) -> Bool {
        guard hasKey else { return false }
        scratch.withUnsafeBytes { bytes in
            for (index, cell) in cells.enumerated() {
                if index > 0 { text.writeInteger(UInt8(ascii: "\t")) }
                if let cell, cell != Self.nullCell {
                    text.writeBytes(UnsafeRawBufferPointer(rebasing: bytes[cell]))
                } else {
                    text.writeInteger(UInt8(ascii: "\\"))
                    text.writeInteger(UInt8(ascii: "N"))
                }
            }
            text.writeInteger(UInt8(ascii: "\n"))
        }
        return true
    }

    private mutating func column(named name: JSONScannedText, position: Int) -> Int? {
        if position < guesses.count, name.equals(names[guesses[position]]) { return guesses[position] }
        guard let column = names.firstIndex(where: { name.equals($0) }) else { return nil }
        if position < guesses.count { guesses[position] = column } else if position == guesses.count { guesses.append(column) }
        return column
    }

    /// Appends a (non-null) value as the column's COPY text; false when the column refuses it.
    static func append(_ value: JSONScannedValue, to column: PostgresColumn, _ out: inout [UInt8]) -> Bool {
        if case .text(.ascii(let raw)) = value, column.kind == .text || column.kind == .other {
            return PostgresColumn.appendText(bytes: raw, copy: true, to: &out)
        }
        return column.append(JSON(value), copy: true, to: &out) == nil
    }
}

extension JSON {
    /// A scanned member value as ``JSON/parse(_:maxDepth:)`` would have built it.
    init(_ value: JSONScannedValue) {
        self = switch value {
        case .null: .null
        case .bool(let b): .bool(b)
        case .int(let i): .int(i)
        case .double(let d): .double(d)
        case .text(let text): .string(text.string)
        case .nested(let json): json
        }
    }
}
