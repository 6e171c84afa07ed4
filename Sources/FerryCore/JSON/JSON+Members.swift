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
        return try parser.walkObject { parser in
            switch parser.bytes[parser.index] {
            case UInt8(ascii: "\""): return .text(try parser.scanText())
            case UInt8(ascii: "{"), UInt8(ascii: "["): return .nested(try parser.parseValue(depth: 1))
            default:
                switch try parser.parseValue(depth: 1) {
                case .null: return .null
                case .bool(let b): return .bool(b)
                case .int(let i): return .int(i)
                case .double(let d): return .double(d)
                case let other: return .nested(other)  // not reached: strings and containers are above
                }
            }
        } each: { key, value in
            try body(key, value)
        }
    }
}

extension JSONParser {
    /// The members of the object at `index` (its `{`), each value read by `value` and handed with
    /// its key to `each`, then the end of the text: true when every member was handed out, false
    /// when `each` stopped the walk.
    mutating func walkObject<Value>(_ value: (inout JSONParser) throws -> Value,
                                    each: (JSONScannedText, Value) throws -> Bool) throws -> Bool {
        index += 1
        skipWhitespace()
        if index < bytes.count, bytes[index] == UInt8(ascii: "}") {
            index += 1
        } else {
            while true {
                let key = try memberKey()
                guard try each(key, try value(&self)) else { return false }
                if try endOfItem(UInt8(ascii: "}")) { break }
            }
        }
        skipWhitespace()
        guard index == bytes.count else { throw error("unexpected data after the JSON value") }
        return true
    }
}

extension JSONParser {
    /// The key of the member at `index` and its `:`; leaves `index` at the value.
    mutating func memberKey() throws -> JSONScannedText {
        skipWhitespace()
        guard index < bytes.count, bytes[index] == UInt8(ascii: "\"") else { throw error("expected a string key") }
        let key = try scanText()
        skipWhitespace()
        guard index < bytes.count, bytes[index] == UInt8(ascii: ":") else { throw error("expected ':'") }
        index += 1
        skipWhitespace()
        guard index < bytes.count else { throw error("unexpected end of input") }
        return key
    }

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

extension JSON {
    /// Hands out the text of each element of the array that is the member `name` of the JSON
    /// object in `buffer`, without building the elements: the fast path of a change-feed page
    /// (`{"data":[…]}`) whose records are written straight to columns.
    ///
    /// Only the object's structure and its other members are checked here; an element's text is
    /// found by its brackets and quotes alone, so the caller checks it (with
    /// ``forEachMember(ofObject:maxDepth:_:)`` or ``parse(_:maxDepth:)``), as it reads it anyway.
    /// - Parameter body: called with each element's bytes (valid during the call only), in order.
    /// - Returns: false when the text is not an object, or has no such member, or the member is not
    ///   an array (`body` was then not called), or the member occurs twice (as a parse keeps the
    ///   last one, the elements handed out were not the object's: the caller drops them).
    public static func forEachElement(
        ofArrayMember name: String, inObject buffer: UnsafeRawBufferPointer, maxDepth: Int = defaultMaxDepth,
        _ body: (UnsafeRawBufferPointer) throws -> Void
    ) throws -> Bool {
        var parser = JSONParser(bytes: buffer, maxDepth: maxDepth)
        let wanted = Array(name.utf8)
        var found = false
        parser.skipWhitespace()
        guard parser.index < buffer.count, buffer[parser.index] == UInt8(ascii: "{") else { return false }
        parser.index += 1
        parser.skipWhitespace()
        if parser.index < buffer.count, buffer[parser.index] == UInt8(ascii: "}") { return false }
        while true {
            let key = try parser.memberKey()
            if key.equals(wanted) {
                // A second one would win in a parse: this walk has handed out the wrong elements.
                guard !found, buffer[parser.index] == UInt8(ascii: "[") else { return false }
                found = true
                try parser.forEachElement(body)
            } else {
                parser.discard = true
                _ = try parser.parseValue(depth: 0)
            }
            if try parser.endOfItem(UInt8(ascii: "}")) { break }
        }
        parser.skipWhitespace()
        guard parser.index == buffer.count else { throw parser.error("unexpected data after the JSON value") }
        return found
    }
}

extension JSONParser {
    /// The array at `index` (its `[`): each element's text to `body`, found by `skipValue`.
    mutating func forEachElement(_ body: (UnsafeRawBufferPointer) throws -> Void) throws {
        index += 1
        skipWhitespace()
        if index < bytes.count, bytes[index] == UInt8(ascii: "]") {
            index += 1
            return
        }
        while true {
            skipWhitespace()
            let start = index
            try skipValue(depth: 2)
            try body(UnsafeRawBufferPointer(rebasing: bytes[start..<index]))
            if try endOfItem(UInt8(ascii: "]")) { return }
        }
    }

    /// Moves past the value at `index` by its brackets and quotes alone: strings are not decoded
    /// nor their UTF-8 checked, numbers and literals are parsed (the caller checks the text).
    mutating func skipValue(depth: Int) throws {
        guard index < bytes.count else { throw error("unexpected end of input") }
        switch bytes[index] {
        case UInt8(ascii: "\""):
            index += 1
            while index < bytes.count {
                switch bytes[index] {
                case UInt8(ascii: "\""):
                    index += 1
                    return
                case UInt8(ascii: "\\"): index += 2
                default: index += 1
                }
            }
            throw error("unterminated string")
        case UInt8(ascii: "{"), UInt8(ascii: "["):
            guard depth <= maxDepth else { throw error("nesting deeper than \(maxDepth) levels") }
            let close = bytes[index] == UInt8(ascii: "{") ? UInt8(ascii: "}") : UInt8(ascii: "]")
            index += 1
            skipWhitespace()
            if index < bytes.count, bytes[index] == close {
                index += 1
                return
            }
            while true {
                skipWhitespace()
                try skipValue(depth: depth + 1)
                skipWhitespace()
                guard index < bytes.count else { throw error("unexpected end of input") }
                switch bytes[index] {
                case UInt8(ascii: ","), UInt8(ascii: ":"): index += 1
                case close:
                    index += 1
                    return
                default: throw error("expected ',' or '\(Character(Unicode.Scalar(close)))'")
                }
            }
        default:
            _ = try parseValue(depth: depth)
        }
    }
}

extension JSON {
    /// Walks the top-level members of the JSON object in `buffer`, handing out each value's text
    /// unbuilt: found by its brackets and quotes alone (as ``forEachElement(ofArrayMember:inObject:maxDepth:_:)``
    /// finds elements), so the caller parses the values it needs and skips the rest.
    /// - Parameter body: called with each member in order (the value's bytes valid during the
    ///   call); returning false stops the walk.
    /// - Returns: false when the text is not an object or `body` stopped the walk.
    public static func forEachRawMember(
        ofObject buffer: UnsafeRawBufferPointer, maxDepth: Int = defaultMaxDepth,
        _ body: (JSONScannedText, UnsafeRawBufferPointer) throws -> Bool
    ) throws -> Bool {
        var parser = JSONParser(bytes: buffer, maxDepth: maxDepth)
        parser.skipWhitespace()
        guard parser.index < buffer.count, buffer[parser.index] == UInt8(ascii: "{") else { return false }
        return try parser.walkObject { parser in
            let start = parser.index
            try parser.skipValue(depth: 1)
            return UnsafeRawBufferPointer(rebasing: parser.bytes[start..<parser.index])
        } each: { key, value in
            try body(key, value)
        }
    }
}
