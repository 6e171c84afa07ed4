/// A walk through a JSON text in one pass that reads only what its caller asks for: it enters
/// objects and arrays, hands out member keys, and parses or skips each value where it stands.
/// ``JSON/forEachRawMember(ofObject:maxDepth:_:)`` finds a value's end before handing it out, so
/// a caller that walks into it reads its bytes again: a batch of a thousand records, four levels
/// deep, was scanned four times so before its records were parsed (a sixth of preparing a push).
///
/// The structure the cursor passes (brackets, commas, colons, keys) is checked as
/// ``JSON/parse(_:maxDepth:)`` checks it, with its errors; a skipped value only by its brackets
/// and quotes (the caller parses what it keeps). The buffer must outlive the cursor.
public struct JSONCursor {
    private var parser: JSONParser
    /// The containers entered and not yet closed: each one's closing byte, and whether an item of
    /// it has been read.
    private var open: [(close: UInt8, started: Bool)] = []

    public init(_ buffer: UnsafeRawBufferPointer, maxDepth: Int = JSON.defaultMaxDepth) {
        parser = JSONParser(bytes: buffer, maxDepth: maxDepth)
        parser.skipWhitespace()
    }

    /// The first byte of the value at the cursor (nil at the end of the text).
    public var next: UInt8? { parser.index < parser.bytes.count ? parser.bytes[parser.index] : nil }

    /// Enters the object at the cursor: false, having read nothing, when the value is not one.
    public mutating func enterObject() throws -> Bool { try enter(UInt8(ascii: "{"), closedBy: UInt8(ascii: "}")) }

    /// Enters the array at the cursor: false, having read nothing, when the value is not one.
    public mutating func enterArray() throws -> Bool { try enter(UInt8(ascii: "["), closedBy: UInt8(ascii: "]")) }

    private mutating func enter(_ bracket: UInt8, closedBy close: UInt8) throws -> Bool {
        guard next == bracket else { return false }
        guard open.count < parser.maxDepth else { throw parser.error("nesting deeper than \(parser.maxDepth) levels") }
        parser.index += 1
        open.append((close, false))
        return true
    }

    /// The key of the next member of the object entered last, the cursor then at its value; nil
    /// when the object has no more (it is then closed, the cursor after it).
    public mutating func nextKey() throws -> JSONScannedText? {
        guard try nextItem() else { return nil }
        return try parser.memberKey()
    }

    /// Whether the array entered last has another element, the cursor then at it; false when it
    /// has no more (it is then closed, the cursor after it).
    public mutating func nextElement() throws -> Bool {
        guard try nextItem() else { return false }
        parser.skipWhitespace()
        return true
    }

    private mutating func nextItem() throws -> Bool {
        guard let (close, started) = open.last else { throw parser.error("no object or array entered") }
        parser.skipWhitespace()
        guard parser.index < parser.bytes.count else { throw parser.error("unexpected end of input") }
        if parser.bytes[parser.index] == close {
            parser.index += 1
            open.removeLast()
            return false
        }
        if started {
            guard parser.bytes[parser.index] == UInt8(ascii: ",") else {
                throw parser.error(close == UInt8(ascii: "}") ? "expected ',' or '}'" : "expected ',' or ']'")
            }
            parser.index += 1
        } else {
            open[open.count - 1].started = true
        }
        return true
    }

    /// Moves past the value at the cursor, found by its brackets and quotes alone: where its text
    /// is in the buffer.
    public mutating func skip() throws -> Range<Int> {
        let start = parser.index
        try parser.skipValue(depth: open.count + 1)
        return start..<parser.index
    }

    /// The value at the cursor, parsed as ``JSON/parse(_:maxDepth:)`` parses a text of it alone.
    public mutating func value(maxDepth: Int) throws -> JSON {
        var value = JSONParser(bytes: parser.bytes, maxDepth: maxDepth)
        value.index = parser.index
        defer { parser.index = value.index }
        return try value.parseValue(depth: 0)
    }

    /// Checks that the text ends after the value walked (every container closed).
    public mutating func finish() throws {
        parser.skipWhitespace()
        guard open.isEmpty, parser.index == parser.bytes.count else { throw parser.error("unexpected data after the JSON value") }
    }
}
