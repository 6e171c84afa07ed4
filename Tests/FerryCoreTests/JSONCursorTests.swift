import FerryCore
import FerryTestSupport
import Testing

/// `JSONCursor`: a walk that enters every container and parses every scalar where it stands
/// rebuilds the value a parse finds; a skipped value's range is its text; broken structure
/// throws as a parse does.
@Suite struct JSONCursorTests {
    let random = JSONElementsTests()

    /// The value at `cursor`, rebuilt by walking into objects and arrays.
    func walk(_ cursor: inout JSONCursor) throws -> JSON {
        if try cursor.enterObject() {
            var members: [String: JSON] = [:]
            while let key = try cursor.nextKey() { members[key.string] = try walk(&cursor) }
            return .object(members)
        }
        if try cursor.enterArray() {
            var elements: [JSON] = []
            while try cursor.nextElement() { elements.append(try walk(&cursor)) }
            return .array(elements)
        }
        return try cursor.value(maxDepth: 1)
    }

    func walk(_ text: String) throws -> JSON {
        try Array(text.utf8).withUnsafeBytes { buffer in
            var cursor = JSONCursor(buffer)
            let value = try walk(&cursor)
            try cursor.finish()
            return value
        }
    }

    @Test(arguments: 0..<200) func aWalkRebuildsTheParsedValue(seed: Int) throws {
        var rng = SplitMix(seed: UInt64(seed) + 2000)
        let value = random.value(&rng)
        let text = seed % 2 == 0 ? value.serialized() : random.spaced(value, &rng)
        #expect(try walk(text) == JSON.parse(text), "\(text)")
    }

    @Test(arguments: 0..<100) func skippedElementsAreTheirTexts(seed: Int) throws {
        var rng = SplitMix(seed: UInt64(seed) + 3000)
        let elements = (0..<Int.random(in: 0..<5, using: &rng)).map { _ in random.value(&rng) }
        let text = random.spaced(.array(elements), &rng)
        let bytes = Array(text.utf8)
        var found: [JSON] = []
        try bytes.withUnsafeBytes { buffer in
            var cursor = JSONCursor(buffer)
            #expect(try cursor.enterArray())
            while try cursor.nextElement() { found.append(try JSON.parse(bytes: bytes[try cursor.skip()])) }
            try cursor.finish()
        }
        #expect(try JSON.array(found) == JSON.parse(text), "\(text)")
    }

    @Test func brokenStructureThrows() throws {
        #expect(try walk(" { } ") == .object([:]))
        #expect(try walk("[ ]") == .array([]))
        for broken in [#"{"a":1"#, #"{"a" 1}"#, #"{"a":[1}"#, #"{"a":"x}"#, #"{"a":1} x"#, #"{a:1}"#, "[1,]", #"{"a":1,}"#,
                       "[1 2]", #"{"a":1 "b":2}"#, "[", "", #"{"a":1]"#, "[1}"] {
            #expect(throws: JSONParseError.self, "\(broken)") { try walk(broken) }
        }
        let deep = String(repeating: "[", count: 100) + String(repeating: "]", count: 100)
        #expect(throws: JSONParseError.self) { try walk(deep) }
    }

    @Test func whatIsNoContainerIsNotEntered() throws {
        try Array(#""text""#.utf8).withUnsafeBytes { buffer in
            var cursor = JSONCursor(buffer)
            #expect(try !cursor.enterObject())
            #expect(try !cursor.enterArray())
            #expect(cursor.next == UInt8(ascii: "\""))
            #expect(try cursor.value(maxDepth: 1) == .string("text"))
            try cursor.finish()
        }
    }
}
