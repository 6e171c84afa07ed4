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

    /// Splits records out of lines: a quoted cell may span lines.
    struct Parser {
        private var pending: [UInt8] = []
        private var cells: [Cell] = []
        private var inQuotes = false
        private var cellQuoted = false
        private var afterQuote = false

        /// Feeds one line (without its newline). Returns the finished row, or nil when a
        /// quoted cell goes on to the next line.
        mutating func feed(_ line: ArraySlice<UInt8>) throws(SyncError) -> [Cell]? {
            // Runs of plain bytes are copied at once (byte by byte, the appends were a tenth of a
            // CSV load); quotes and commas are taken one at a time.
            let quote = UInt8(ascii: "\""), comma = UInt8(ascii: ",")
            var index = line.startIndex
            let end = line.endIndex
            while index < end {
                if inQuotes {
                    var stop = index
                    while stop < end && line[stop] != quote { stop += 1 }
                    pending.append(contentsOf: line[index..<stop])
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
                        pending.append(quote)
                        inQuotes = true
                        afterQuote = false
                    } else if pending.isEmpty && !cellQuoted {
                        inQuotes = true
                        cellQuoted = true
                    } else {
                        throw .badInput("a quote inside an unquoted cell (quote the whole cell and double the quote)")
                    }
                    index += 1
                case comma:
                    try endCell()
                    index += 1
                default:
                    if afterQuote { throw .badInput("text after a closing quote") }
                    var stop = index + 1
                    while stop < end && line[stop] != quote && line[stop] != comma { stop += 1 }
                    pending.append(contentsOf: line[index..<stop])
                    index = stop
                }
            }
            if inQuotes {
                pending.append(UInt8(ascii: "\n"))
                return nil
            }
            try endCell()
            defer { cells.removeAll(keepingCapacity: true) }
            return cells
        }

        var isInsideQuotes: Bool { inQuotes }

        private mutating func endCell() throws(SyncError) {
            let ascii = pending.allSatisfy { $0 < 0x80 }
            guard let text = pending.withUnsafeBytes({ String.utf8($0, ascii: ascii) }) else {
                throw .badInput("invalid UTF-8")
            }
            cells.append(Cell(text: text, quoted: cellQuoted))
            pending.removeAll(keepingCapacity: true)
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
            if isCanonicalInteger(text.utf8), let i = Int64(text) { return .int(i) }
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

    /// Whether the text is an integer as Swift writes one (`String(i) == text`): an optional `-`,
    /// digits, no leading zero, not `-0`. Checked on the bytes, without writing `i` out again.
    private static func isCanonicalInteger(_ bytes: String.UTF8View) -> Bool {
        var digits = bytes[...]
        if digits.first == UInt8(ascii: "-") { digits = digits.dropFirst() }
        guard let first = digits.first, digits.allSatisfy({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }) else { return false }
        if first == UInt8(ascii: "0") { return digits.count == 1 && bytes.count == 1 }  // "0", not "00" or "-0"
        return true
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
