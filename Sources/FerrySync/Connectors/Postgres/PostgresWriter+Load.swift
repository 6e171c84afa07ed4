import FerryCore
import Foundation
import NIOCore

extension PostgresWriter {
    /// A full run from a JSON Lines file with no transform: each batch of lines becomes COPY text
    /// straight from their bytes (``DirectCopyText``), with no record dictionary, no `String` for
    /// ASCII text and no ``Run/prepare(_:incremental:)``; measured, those were most of Ferry's CPU
    /// in a load through ``apply(_:cursor:)``.
    ///
    /// The result is the batch path's: the same COPY lines, the same ways into the table, one
    /// transaction per batch, the same counts. A batch the direct text cannot take as it is (no
    /// table yet, a field without a column, a key missing, not a string or an integer, or twice
    /// in the batch, a value its column refuses) goes through ``Run/prepare(_:incremental:)`` and
    /// ``apply(_:cursor:)`` whole, as does a batch the server refuses.
    ///
    /// The engine has checked the file before (a malformed line changes nothing).
    /// - Returns: true when it stopped early at a batch boundary because `stop` closed.
    func load(_ file: FileEndpoint, run: inout Run, progress: ((Int, Int?) -> Void)?, total: Int?, stop: WakeSignal?) async throws -> Bool {
        let opened = try FileEndpoint.OpenFile(file)
        defer { file.bytesRead = opened.reader.bytesRead }
        let name = file.displayName
        let keyField = endpoint.options.keyField
        let batchSize = run.job.effectiveBatchSize
        var direct = DirectCopyText(keyField: keyField)
        while true {
            var batch = LineBatch()
            while batch.count < batchSize, try opened.reader.nextJSONLine(into: &batch) {}
            guard batch.count > 0 else { return false }
            let columns = knownColumns
            if let text = direct.encode(batch, columns: columns) {
                run.report.read += batch.count
                run.report.loadedDirectly += batch.count
                let lines = batch
                let outcome = try await apply(direct: DirectBatch(text: text, count: batch.count, columns: columns) {
                    try (0..<lines.count).map { index in
                        let fields = try lines.withLine(index) { try RecordReader.object($0, number: lines.numbers[index], name: name) }
                        // Every line had a usable key to be encoded.
                        return Change.upsert(Record(key: RecordKey(fields[keyField] ?? .null)!, fields: fields))
                    }
                })
                try run.absorb(outcome)
            } else {
                let items = try (0..<batch.count).map { index in
                    SourceItem.record(try batch.withLine(index) { try RecordReader.object($0, number: batch.numbers[index], name: name) })
                }
                let changes = try run.prepare(items, incremental: false)
                try await run.commit(changes, cursor: nil)
            }
            progress?(run.report.read, total)
            if stop?.isClosed == true { return true }
        }
    }
}

/// COPY's text format straight from JSON Lines bytes: for each line, the line
/// ``PostgresWriter/encode(_:columns:keyField:to:)`` writes for the record it parses into, or nil
/// where that function would not write one (or the batch path would write another: a key twice).
///
/// Values go through ``PostgresColumn/append(_:copy:to:)`` as that function's do, except ASCII text
/// without escapes into a text-like column, which is escaped from its bytes as the same function
/// escapes a `String`'s.
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
    /// Where each column's value of the current line is in `scratch` (`nullCell`: null; nil: none yet).
    private var cells: [Range<Int>?] = []
    private var scratch: [UInt8] = []
    /// Hashes of the batch's keys (as the key column's text): a repeat, or a collision, sends the batch the batch path's way.
    private var keys: Set<Int> = []
    private static let nullCell = -1 ..< -1

    init(keyField: String) {
        self.keyField = keyField
    }

    /// The batch's COPY lines against the table's `columns`; nil when the batch path must take it.
    mutating func encode(_ batch: LineBatch, columns tableColumns: [PostgresColumn]) -> ByteBuffer? {
        guard !tableColumns.isEmpty else { return nil }  // no table yet: its columns come from the records
        if tableColumns != self.tableColumns {
            self.tableColumns = tableColumns
            columns = tableColumns.filter { !$0.generated }
            names = columns.map { Array($0.name.utf8) }
            keyIndex = columns.firstIndex { $0.name == keyField }
            guesses = []
            cells = Array(repeating: nil, count: columns.count)
        }
        guard keyIndex != nil else { return nil }
        keys.removeAll(keepingCapacity: true)
        var text = ByteBufferAllocator().buffer(capacity: batch.bytes.count + batch.count * (columns.count * 2 + 1))
        for index in 0..<batch.count {
            guard batch.withLine(index, { encode(line: $0, to: &text) }) else { return nil }
        }
        return text
    }

    private mutating func encode(line: UnsafeRawBufferPointer, to text: inout ByteBuffer) -> Bool {
        scratch.removeAll(keepingCapacity: true)
        for index in cells.indices { cells[index] = nil }
        let keyIndex = keyIndex!
        var hasKey = false
        var position = 0
        do {
            let complete = try JSON.forEachMember(ofObject: line) { name, value in
                defer { position += 1 }
                guard let column = column(named: name, position: position) else {
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
            guard complete && hasKey else { return false }
        } catch {
            return false  // the batch path reports it with the line's number
        }
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
