public import FerryCore

/// CSV (RFC 4180) as Ferry reads and writes it.
///
/// Reading: the first row names the fields. An unquoted cell is typed by its text:
/// empty → missing, `true`/`false` → boolean, a canonical integer (`42`, not `042`) →
/// integer, a number in shortest form (`1.5`, not `1.50`) → double, `{…}`/`[…]` that
/// parse → JSON; anything else, and every quoted cell, is a string. Writing quotes every
/// string that would otherwise read back as another type, so a file Ferry writes reads
/// back to the same records.
public enum CSV {
    /// A cell: its text and whether it was quoted.
    struct Cell {
        var text: String
        var quoted: Bool
    }

    /// Cells in one buffer (their unquoted bytes back to back): one row, or a batch of rows of
    /// the same width, with no `String` and no allocation per cell.
    struct Row {
        private(set) var bytes: [UInt8] = []
        /// Where each cell ends in `bytes` (it starts where the one before ends).
        private(set) var ends: [Int] = []
        private(set) var quoted: [Bool] = []

        var count: Int { ends.count }

        func start(_ cell: Int) -> Int { cell == 0 ? 0 : ends[cell - 1] }

        /// Cell `cell`'s bytes (valid UTF-8: the parser checked them).
        func withCell<R>(_ cell: Int, _ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
            let start = start(cell), end = ends[cell]
            return try bytes.withUnsafeBytes { try body(UnsafeRawBufferPointer(rebasing: $0[start..<end])) }
        }

        func text(_ cell: Int) -> String {
            String(decoding: bytes[start(cell)..<ends[cell]], as: UTF8.self)
        }

        func cell(_ index: Int) -> Cell { Cell(text: text(index), quoted: quoted[index]) }

        func cells(_ range: Range<Int>) -> [Cell] { range.map(cell) }

        fileprivate mutating func append(_ slice: ArraySlice<UInt8>) { bytes.append(contentsOf: slice) }
        fileprivate mutating func append(_ byte: UInt8) { bytes.append(byte) }

        /// Ends the cell that began at byte `start`, which must be valid UTF-8 (`ascii`: the
        /// parser saw no byte above 0x7F in it, so there is nothing to check).
        fileprivate mutating func endCell(from start: Int, quoted: Bool, ascii: Bool) throws(SyncError) {
            let valid = ascii || bytes.withUnsafeBytes { raw in
                String.utf8(UnsafeRawBufferPointer(rebasing: raw[start...]), ascii: false) != nil
            }
            guard valid else { throw .badInput("invalid UTF-8") }
            ends.append(bytes.count)
            self.quoted.append(quoted)
        }

        /// Keeps the first `count` cells.
        mutating func removeCells(from count: Int) {
            bytes.removeSubrange(start(count)...)
            ends.removeSubrange(count...)
            quoted.removeSubrange(count...)
        }

        mutating func removeAll() {
            bytes.removeAll(keepingCapacity: true)
            ends.removeAll(keepingCapacity: true)
            quoted.removeAll(keepingCapacity: true)
        }
    }

    /// Splits records out of lines: a quoted cell may span lines.
    struct Parser {
        private var inQuotes = false
        private var cellQuoted = false
        private var afterQuote = false
        /// Whether a row has begun (a quoted cell went on to the next line).
        private var inRow = false
        /// Where the current cell begins in the row's bytes.
        private var cellStart = 0
        /// The current cell's bytes OR-ed together: below 0x80 when it is ASCII.
        private var cellBits: UInt8 = 0
        /// The row ``feed(_:)`` parses into.
        private var scratch = Row()

        /// Feeds one line (without its newline) and appends its cells to `row`. Returns true when
        /// the row is finished, false when a quoted cell goes on to the next line (feed that one
        /// with the same `row`, unchanged meanwhile).
        mutating func feed(_ line: ArraySlice<UInt8>, into row: inout Row) throws(SyncError) -> Bool {
            // Runs of plain bytes are copied at once (byte by byte, the appends were a tenth of a
            // CSV load); quotes and commas are taken one at a time.
            let quote = UInt8(ascii: "\""), comma = UInt8(ascii: ",")
            if !inRow {
                inRow = true
                cellStart = row.bytes.count
            }
            var index = line.startIndex
            let end = line.endIndex
            while index < end {
                if inQuotes {
                    let stop = Self.firstIndex(in: line, from: index, of: quote, or: quote, bits: &cellBits)
                    row.append(line[index..<stop])
                    if stop < end {
                        inQuotes = false
                        afterQuote = true
                        index = stop + 1
                    } else {
                        index = stop
                    }
                    continue
                }
                switch line[index] {
                case quote:
                    if afterQuote {  // "" inside a quoted cell
                        row.append(quote)
                        inQuotes = true
                        afterQuote = false
                    } else if row.bytes.count == cellStart && !cellQuoted {
                        inQuotes = true
                        cellQuoted = true
                    } else {
                        throw .badInput("a quote inside an unquoted cell (quote the whole cell and double the quote)")
                    }
                    index += 1
                case comma:
                    try endCell(&row)
                    index += 1
                default:
                    if afterQuote { throw .badInput("text after a closing quote") }
                    cellBits |= line[index]
                    let stop = Self.firstIndex(in: line, from: index + 1, of: quote, or: comma, bits: &cellBits)
                    row.append(line[index..<stop])
                    index = stop
                }
            }
            if inQuotes {
                row.append(UInt8(ascii: "\n"))
                return false
            }
            try endCell(&row)
            inRow = false
            return true
        }

        /// ``feed(_:into:)`` with the row's cells as `String`s (nil: the row goes on).
        mutating func feed(_ line: ArraySlice<UInt8>) throws(SyncError) -> [Cell]? {
            var row = Row()
            swap(&row, &scratch)
            defer { swap(&row, &scratch) }
            guard try feed(line, into: &row) else { return nil }
            defer { row.removeAll() }
            return row.cells(0..<row.count)
        }

        var isInsideQuotes: Bool { inQuotes }

        /// The index of the first `a` or `b` in `line` from `from` on (`line.endIndex` if none),
        /// scanned without the slice's bounds check on every byte; the bytes before it are OR-ed
        /// into `bits` (so a cell's UTF-8 is checked only when it holds a byte above 0x7F).
        private static func firstIndex(in line: ArraySlice<UInt8>, from: Int, of a: UInt8, or b: UInt8, bits: inout UInt8) -> Int {
            line.withUnsafeBufferPointer { bytes in
                var index = from - line.startIndex
                var seen: UInt8 = 0
                while index < bytes.count && bytes[index] != a && bytes[index] != b {
                    seen |= bytes[index]
                    index += 1
                }
                bits |= seen
                return index + line.startIndex
            }
        }

        private mutating func endCell(_ row: inout Row) throws(SyncError) {
            try row.endCell(from: cellStart, quoted: cellQuoted, ascii: cellBits < 0x80)
            cellStart = row.bytes.count
            cellBits = 0
            cellQuoted = false
            afterQuote = false
        }
    }

    /// The JSON value of an unquoted cell (see the type rules above); nil for an empty one.
    static func infer(_ text: String) -> JSON? {
        if text.isEmpty { return nil }
        if text == "true" { return .bool(true) }
        if text == "false" { return .bool(false) }
        guard let first = text.utf8.first else { return .string(text) }
        if first == UInt8(ascii: "-") || (first >= UInt8(ascii: "0") && first <= UInt8(ascii: "9")) {
            var digits = text
            if let i = digits.withUTF8({ integer(UnsafeRawBufferPointer($0)) }) { return .int(i) }
            if let d = Double(text), d.isFinite, JSON.format(d) == text || String(d) == text, text.contains(".") || text.contains("e") {
                return .double(d)
            }
            return .string(text)
        }
        if first == UInt8(ascii: "{") || first == UInt8(ascii: "["), let value = try? JSON.parse(text) {
            return value
        }
        return .string(text)
    }

    /// The integer of a cell written as Swift writes one (`String(i) == text`): an optional `-`,
    /// digits, no leading zero, not `-0`; nil for anything else or out of range. Read from the
    /// bytes, without writing `i` out again.
    private static func integer(_ bytes: UnsafeRawBufferPointer) -> Int64? {
        let negative = bytes.first == UInt8(ascii: "-")
        var index = negative ? 1 : 0
        guard index < bytes.count else { return nil }
        if bytes[index] == UInt8(ascii: "0") { return bytes.count == 1 ? 0 : nil }  // "0", not "00" or "-0"
        var value: Int64 = 0
        while index < bytes.count {
            let digit = bytes[index] &- UInt8(ascii: "0")
            guard digit < 10 else { return nil }
            let (times10, over) = value.multipliedReportingOverflow(by: 10)
            // Negative values are summed as negatives, so Int64.min fits.
            let (next, overAgain) = negative ? times10.subtractingReportingOverflow(Int64(digit))
                                             : times10.addingReportingOverflow(Int64(digit))
            guard !over && !overAgain else { return nil }
            value = next
            index += 1
        }
        return value
    }

    /// The JSON value of a cell; nil for an empty unquoted one.
    static func value(of cell: Cell) -> JSON? {
        guard cell.quoted else { return infer(cell.text) }
        if let first = cell.text.utf8.first, first == UInt8(ascii: "{") || first == UInt8(ascii: "["),
           let value = try? JSON.parse(cell.text) {
            return value
        }
        return .string(cell.text)
    }

    /// Calls `body` with cell `cell`'s value as ``value(of:)`` makes it (nil for a missing one),
    /// building no `String` or `JSON` for the common cells: a canonical integer, a boolean, and
    /// text, handed out as its bytes (``JSONScannedText/ascii(_:)`` carries them: valid UTF-8,
    /// bound as they are). Other numbers, JSON-looking cells and text with a NUL go through
    /// ``value(of:)``'s own path.
    static func withValue<R>(of row: Row, _ cell: Int, _ body: (JSONScannedValue?) throws -> R) rethrows -> R {
        let quoted = row.quoted[cell]
        return try row.withCell(cell) { bytes in
            let first = bytes.first
            let json = first == UInt8(ascii: "{") || first == UInt8(ascii: "[")
            if !quoted, let first {
                if first == UInt8(ascii: "-") || (first >= UInt8(ascii: "0") && first <= UInt8(ascii: "9")) {
                    if let i = integer(bytes) { return try body(.int(i)) }
                } else if !json {
                    if bytes.elementsEqual("true".utf8) { return try body(.bool(true)) }
                    if bytes.elementsEqual("false".utf8) { return try body(.bool(false)) }
                    if !bytes.contains(0) { return try body(.text(.ascii(bytes))) }
                }
            } else if !quoted {
                return try body(nil)  // empty
            } else if !json && !bytes.contains(0) {
                return try body(.text(.ascii(bytes)))
            }
            let value = CSV.value(of: Cell(text: String(decoding: bytes, as: UTF8.self), quoted: quoted))
            return try body(value.map(JSONScannedValue.init))
        }
    }

    /// One cell's text for a value (nil/null → empty).
    static func cellText(_ value: JSON?) -> [UInt8] {
        guard let value, value != .null else { return [] }
        let text: String
        let mustQuote: Bool
        switch value {
        case .string(let s):
            text = s
            // Quote what would read back as another type, or needs quoting anyway.
            mustQuote = infer(s) != .string(s) || s.utf8.contains(where: { $0 == 0x2C || $0 == 0x22 || $0 == 0x0A || $0 == 0x0D })
        case .array, .object:
            text = value.serialized()
            mustQuote = true
        case .double(let d) where infer(value.serialized()) != value:
            // A large double serializes without `.` or `e` (93223720368547760000), which reads
            // back as a string: Swift's shortest form (9.322372036854776e+19) reads back as it.
            text = String(d)
            mustQuote = false
        default:
            text = value.serialized()
            mustQuote = false
        }
        guard mustQuote else { return Array(text.utf8) }
        var out: [UInt8] = [UInt8(ascii: "\"")]
        for byte in text.utf8 {
            if byte == UInt8(ascii: "\"") { out.append(byte) }
            out.append(byte)
        }
        out.append(UInt8(ascii: "\""))
        return out
    }

    /// A header or data row with its line end.
    static func row(_ cells: [[UInt8]]) -> [UInt8] {
        var out: [UInt8] = []
        for (i, cell) in cells.enumerated() {
            if i > 0 { out.append(UInt8(ascii: ",")) }
            out.append(contentsOf: cell)
        }
        out.append(UInt8(ascii: "\n"))
        return out
    }
}
