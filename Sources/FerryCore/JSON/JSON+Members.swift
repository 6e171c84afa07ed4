/// The text of a key or a string value, as ``JSON/forEachMember(ofObject:maxDepth:_:)`` hands it out.
public enum JSONScannedText {
    /// ASCII without escapes: the bytes between the quotes, valid during the callback only.
    /// No `String` is built (measured: building and hashing them was most of a JSONL load).
    case ascii(UnsafeRawBufferPointer)
    /// Anything else (escapes, other scripts), decoded and checked as ``JSON/parse(_:maxDepth:)`` does.
    case string(String)

    /// Whether the text is exactly `bytes`.
    public func equals(_ bytes: [UInt8]) -> Bool {
        switch self {
        case .ascii(let raw):
            guard raw.count == bytes.count else { return false }
            return bytes.withUnsafeBytes { $0.elementsEqual(raw) }
        case .string(let string):
            return string.utf8.elementsEqual(bytes)
        }
    }

    /// The text as a `String` (built on demand).
    public var string: String {
        switch self {
        case .ascii(let raw): String(decoding: raw, as: UTF8.self)
        case .string(let string): string
        }
    }
}

/// A member value as ``JSON/forEachMember(ofObject:maxDepth:_:)`` hands it out.
public enum JSONScannedValue {
    case null
    case bool(Bool)
    case int(Int64)
    case double(Double)
    case text(JSONScannedText)
    /// An object or an array, built as ``JSON/parse(_:maxDepth:)`` would.
    case nested(JSON)
}

extension JSON {
    /// Walks the top-level members of the JSON object in `buffer` without building the object:
    /// the fast path of loads that write each member straight to a column.
    ///
    /// Same rules and errors as ``parse(_:maxDepth:)``. A member that occurs twice is handed out twice.
    /// - Parameter body: called with each member in order; returning false stops the walk.
    /// - Returns: true when every member was handed out; false when `body` stopped the walk or
    ///   the text is valid JSON but not an object.
    public static func forEachMember(
        ofObject buffer: UnsafeRawBufferPointer, maxDepth: Int = defaultMaxDepth,
        _ body: (JSONScannedText, JSONScannedValue) throws -> Bool
    ) throws -> Bool {
        var parser = JSONParser(bytes: buffer, maxDepth: maxDepth)
        parser.skipWhitespace()
        guard parser.index < buffer.count, buffer[parser.index] == UInt8(ascii: "{") else {
            _ = try parser.parseValue(depth: 0)
            parser.skipWhitespace()
            guard parser.index == buffer.count else { throw parser.error("unexpected data after the JSON value") }
            return false
        }
        parser.index += 1
        parser.skipWhitespace()
        if parser.index < buffer.count, buffer[parser.index] == UInt8(ascii: "}") {
            parser.index += 1
        } else {
            while true {
                parser.skipWhitespace()
                guard parser.index < buffer.count, buffer[parser.index] == UInt8(ascii: "\"") else {
                    throw parser.error("expected a string key")
                }
                let key = try parser.scanText()
                parser.skipWhitespace()
                guard parser.index < buffer.count, buffer[parser.index] == UInt8(ascii: ":") else { throw parser.error("expected ':'") }
                parser.index += 1
                parser.skipWhitespace()
                guard parser.index < buffer.count else { throw parser.error("unexpected end of input") }
                let value: JSONScannedValue
                switch buffer[parser.index] {
                case UInt8(ascii: "\""): value = .text(try parser.scanText())
                case UInt8(ascii: "{"), UInt8(ascii: "["): value = .nested(try parser.parseValue(depth: 1))
                default:
                    switch try parser.parseValue(depth: 1) {
                    case .null: value = .null
                    case .bool(let b): value = .bool(b)
                    case .int(let i): value = .int(i)
                    case .double(let d): value = .double(d)
                    case let other: value = .nested(other)  // not reached: strings and containers are above
                    }
                }
                guard try body(key, value) else { return false }
                parser.skipWhitespace()
                guard parser.index < buffer.count else { throw parser.error("unexpected end of input") }
                if buffer[parser.index] == UInt8(ascii: ",") {
                    parser.index += 1
                } else if buffer[parser.index] == UInt8(ascii: "}") {
                    parser.index += 1
                    break
                } else {
                    throw parser.error("expected ',' or '}'")
                }
            }
        }
        parser.skipWhitespace()
        guard parser.index == buffer.count else { throw parser.error("unexpected data after the JSON value") }
        return true
    }
}

extension JSONParser {
    /// A string at `index` (its opening quote): ASCII without escapes as its raw bytes, anything
    /// else through ``parseString()``.
    mutating func scanText() throws -> JSONScannedText {
        let quote = index
        var at = index + 1
        while at < bytes.count {
            let byte = bytes[at]
            if byte == UInt8(ascii: "\"") {
                index = at + 1
                return .ascii(UnsafeRawBufferPointer(rebasing: bytes[(quote + 1)..<at]))
            }
            if byte == UInt8(ascii: "\\") || byte < 0x20 || byte >= 0x80 { break }
            at += 1
        }
        return .string(try parseString())
    }
}
