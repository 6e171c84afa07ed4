import FerryCore

/// A column of a PostgreSQL table as the connector sees it, and how a JSON value becomes its text.
///
/// Values travel as text (COPY's text format, or `CAST($n AS type)` parameters), so the
/// server parses them by the column's own type. Before that, values that cannot fit a common
/// type (`"abc"` for a `bigint`, an object for a `boolean`) are refused here, with the column
/// named, so one bad record does not cost a round trip.
struct PostgresColumn: Sendable, Equatable {
    enum Kind: Sendable, Equatable {
        case integer(min: Int64, max: Int64)
        case float
        case numeric
        case boolean
        case json
        case text
        case array
        /// uuid, dates, times, enums, inet, …: the server's parser decides.
        case other
    }

    var name: String
    /// `format_type()`: the type as SQL spells it (`character varying(20)`, `timestamp with time zone`), safe to put in SQL.
    var type: String
    /// The type without its modifier (`character varying`): what a `CAST` names, since a cast to
    /// `varchar(5)` would cut a longer value short where storing it is refused.
    var baseType: String
    var kind: Kind
    /// `GENERATED ALWAYS AS (…) STORED`: read, never written.
    var generated: Bool

    init(name: String, type: String, baseType: String, typeName: String, category: String, generated: Bool) {
        self.name = name
        self.type = type
        self.baseType = baseType
        self.generated = generated
        switch typeName {
        case "int2": kind = .integer(min: Int64(Int16.min), max: Int64(Int16.max))
        case "int4": kind = .integer(min: Int64(Int32.min), max: Int64(Int32.max))
        case "int8": kind = .integer(min: Int64.min, max: Int64.max)
        case "float4", "float8": kind = .float
        case "numeric": kind = .numeric
        case "bool": kind = .boolean
        case "json", "jsonb": kind = .json
        default:
            switch category {
            case "S": kind = .text
            case "A": kind = .array
            default: kind = .other
            }
        }
    }

    /// The column type Ferry gives new columns for these values: the narrowest that holds them all
    /// (`bigint`, `double precision`, `boolean`, `text`), or `jsonb`, which keeps any JSON value as it is.
    static func declaredType(for values: [JSON]) -> String {
        var ints = 0, doubles = 0, bools = 0, strings = 0, others = 0
        for value in values {
            switch value {
            case .null: break
            case .int: ints += 1
            case .double: doubles += 1
            case .bool: bools += 1
            case .string: strings += 1
            case .array, .object: others += 1
            }
        }
        let kinds = [ints + doubles > 0, bools > 0, strings > 0, others > 0].filter { $0 }.count
        if kinds != 1 { return kinds == 0 ? "text" : "jsonb" }
        if ints + doubles > 0 { return doubles > 0 ? "double precision" : "bigint" }
        if bools > 0 { return "boolean" }
        if strings > 0 { return "text" }
        return "jsonb"
    }

    /// Appends `value` as this column's text; returns why it cannot be stored here, or nil.
    ///
    /// - Parameters:
    ///   - copy: escape for COPY's text format (`\\`, `\n`, `\r`, `\t`); otherwise the raw text of a parameter.
    ///   - value: not null (the caller writes NULL itself).
    func append(_ value: JSON, copy: Bool, to out: inout [UInt8]) -> String? {
        switch kind {
        case .json:
            return Self.appendJSON(value, copy: copy, to: &out)
        case .integer(let min, let max):
            switch value {
            case .int(let i):
                guard i >= min && i <= max else { return refusal(value, "is out of range") }
                Self.appendInteger(i, to: &out)
            case .double(let d):
                guard d.rounded() == d, d >= Double(min), d <= Double(max) else { return refusal(value) }
                Self.appendInteger(Int64(d), to: &out)
            case .bool(let b):
                out.append(b ? UInt8(ascii: "1") : UInt8(ascii: "0"))
            case .string(let s):
                let trimmed = s.trimmingSpaces
                guard let i = Int64(trimmed), i >= min && i <= max else { return refusal(value) }
                Self.appendInteger(i, to: &out)
            default:
                return refusal(value)
            }
        case .float, .numeric:
            switch value {
            case .int(let i): Self.appendInteger(i, to: &out)
            case .double(let d): out.append(contentsOf: JSON.format(d).utf8)
            case .bool(let b): out.append(b ? UInt8(ascii: "1") : UInt8(ascii: "0"))
            case .string(let s):
                let trimmed = s.trimmingSpaces
                guard Double(trimmed) != nil || ["nan", "infinity", "-infinity", "inf", "-inf"].contains(trimmed.lowercased()) else {
                    return refusal(value)
                }
                out.append(contentsOf: trimmed.utf8)
            default:
                return refusal(value)
            }
        case .boolean:
            switch value {
            case .bool(let b): out.append(b ? UInt8(ascii: "t") : UInt8(ascii: "f"))
            case .int(let i) where i == 0 || i == 1: out.append(i == 1 ? UInt8(ascii: "t") : UInt8(ascii: "f"))
            case .string(let s) where Self.booleanWords.contains(s.trimmingSpaces.lowercased()):
                out.append(contentsOf: s.trimmingSpaces.utf8)
            default:
                return refusal(value)
            }
        case .text, .other:
            switch value {
            case .string(let s):
                guard Self.appendText(s, copy: copy, to: &out) else { return refusal(value, "holds a NUL character") }
            case .int(let i): Self.appendInteger(i, to: &out)
            case .double(let d): out.append(contentsOf: JSON.format(d).utf8)
            case .bool(let b): out.append(contentsOf: (b ? "true" : "false").utf8)
            case .array, .object, .null:
                // Nested values as their canonical JSON text (what a SQLite table holds too).
                return Self.appendJSON(value, copy: copy, to: &out)
            }
        case .array:
            switch value {
            case .array:
                var literal: [UInt8] = []
                Self.appendArrayLiteral(value, to: &literal)
                guard Self.appendText(String(decoding: literal, as: UTF8.self), copy: copy, to: &out) else {
                    return refusal(value, "holds a NUL character")
                }
            case .string(let s):
                guard Self.appendText(s, copy: copy, to: &out) else { return refusal(value, "holds a NUL character") }
            default:
                return refusal(value)
            }
        }
        return nil
    }

    private func refusal(_ value: JSON, _ why: String? = nil) -> String {
        var shown = value.serialized()
        if shown.utf8.count > 60 { shown = String(shown.prefix(57)) + "…" }
        return "column \"\(name)\" is \(type); the value \(shown) \(why ?? "does not fit it")"
    }

    static let booleanWords: Set<String> = ["t", "f", "true", "false", "yes", "no", "y", "n", "on", "off", "1", "0"]

    static func appendJSON(_ value: JSON, copy: Bool, to out: inout [UInt8]) -> String? {
        let start = out.count
        value.write(to: &out)
        // Canonical JSON escapes control characters, so only its backslashes need COPY's escape.
        if copy, out[start...].contains(UInt8(ascii: "\\")) {
            let text = Array(out[start...])
            out.removeSubrange(start...)
            for byte in text {
                if byte == UInt8(ascii: "\\") { out.append(byte) }
                out.append(byte)
            }
        }
        return nil
    }

    /// A string's UTF-8, escaped for COPY when `copy`; false when it holds a NUL (PostgreSQL text cannot).
    static func appendText(_ text: String, copy: Bool, to out: inout [UInt8]) -> Bool {
        var text = text
        return text.withUTF8 { appendText(bytes: UnsafeRawBufferPointer($0), copy: copy, to: &out) }
    }

    /// ``appendText(_:copy:to:)`` of a string's UTF-8 bytes.
    static func appendText(bytes: UnsafeRawBufferPointer, copy: Bool, to out: inout [UInt8]) -> Bool {
        let bytes = bytes.assumingMemoryBound(to: UInt8.self)
        guard copy else {
            if bytes.contains(0) { return false }
            out.append(contentsOf: bytes)
            return true
        }
        var start = 0
        for i in 0..<bytes.count {
            let byte = bytes[i]
            if byte >= 0x20 && byte != 0x5C { continue }
            let escape: UInt8
            switch byte {
            case 0x5C: escape = UInt8(ascii: "\\")
            case 0x0A: escape = UInt8(ascii: "n")
            case 0x0D: escape = UInt8(ascii: "r")
            case 0x09: escape = UInt8(ascii: "t")
            case 0x00: return false
            default: continue
            }
            out.append(contentsOf: UnsafeBufferPointer(rebasing: bytes[start..<i]))
            out.append(UInt8(ascii: "\\"))
            out.append(escape)
            start = i + 1
        }
        out.append(contentsOf: UnsafeBufferPointer(rebasing: bytes[start...]))
        return true
    }

    static func appendInteger(_ value: Int64, to out: inout [UInt8]) {
        if value < 0 {
            guard value != .min else {
                out.append(contentsOf: String(value).utf8)
                return
            }
            out.append(UInt8(ascii: "-"))
        }
        var magnitude = value.magnitude
        var digits: (UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8,
                     UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8) =
            (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
        var count = 0
        withUnsafeMutableBytes(of: &digits) { buffer in
            repeat {
                buffer[19 - count] = UInt8(ascii: "0") + UInt8(magnitude % 10)
                magnitude /= 10
                count += 1
            } while magnitude > 0
            out.append(contentsOf: buffer[(20 - count)...])
        }
    }

    /// A JSON array as a PostgreSQL array literal: `{1,"a b",NULL,{2,3}}`.
    static func appendArrayLiteral(_ value: JSON, to out: inout [UInt8]) {
        switch value {
        case .array(let elements):
            out.append(UInt8(ascii: "{"))
            for (i, element) in elements.enumerated() {
                if i > 0 { out.append(UInt8(ascii: ",")) }
                appendArrayLiteral(element, to: &out)
            }
            out.append(UInt8(ascii: "}"))
        case .null:
            out.append(contentsOf: "NULL".utf8)
        case .int(let i):
            appendInteger(i, to: &out)
        case .double(let d):
            out.append(contentsOf: JSON.format(d).utf8)
        case .bool(let b):
            out.append(contentsOf: (b ? "true" : "false").utf8)
        case .string, .object:
            let text = value.stringValue ?? value.serialized()
            out.append(UInt8(ascii: "\""))
            for byte in text.utf8 {
                if byte == UInt8(ascii: "\"") || byte == UInt8(ascii: "\\") { out.append(UInt8(ascii: "\\")) }
                out.append(byte)
            }
            out.append(UInt8(ascii: "\""))
        }
    }
}

extension String {
    /// Without leading and trailing spaces (what PostgreSQL's number and boolean parsers skip).
    var trimmingSpaces: Substring {
        var text = Substring(self)
        while text.first == " " { text.removeFirst() }
        while text.last == " " { text.removeLast() }
        return text
    }
}
