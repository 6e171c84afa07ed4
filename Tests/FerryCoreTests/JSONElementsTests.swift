import FerryCore
import FerryTestSupport
import Testing

/// `JSON.forEachElement(ofArrayMember:inObject:)`: the texts it hands out are exactly the
/// elements a full parse finds, whatever they hold and however the page is spaced.
@Suite struct JSONElementsTests {
    func elements(_ text: String, _ member: String = "data") throws -> (Bool, [String]) {
        var found: [String] = []
        let bytes = Array(text.utf8)
        let ok = try bytes.withUnsafeBytes { buffer in
            try JSON.forEachElement(ofArrayMember: member, inObject: buffer) { found.append(String(decoding: $0, as: UTF8.self)) }
        }
        return (ok, found)
    }

    /// A random value: every kind, nesting, escapes and other scripts in strings and keys.
    func value(_ rng: inout SplitMix, depth: Int = 0) -> JSON {
        switch Int.random(in: 0..<(depth > 3 ? 6 : 8), using: &rng) {
        case 0: return .null
        case 1: return .bool(Bool.random(using: &rng))
        case 2: return .int(Int64.random(in: -1_000_000...1_000_000, using: &rng))
        case 3: return .double(Double.random(in: -1e6...1e6, using: &rng))
        case 4, 5: return .string(text(&rng))
        case 6: return .array((0..<Int.random(in: 0..<4, using: &rng)).map { _ in value(&rng, depth: depth + 1) })
        default:
            var members: [String: JSON] = [:]
            for _ in 0..<Int.random(in: 0..<4, using: &rng) { members[text(&rng)] = value(&rng, depth: depth + 1) }
            return .object(members)
        }
    }

    func text(_ rng: inout SplitMix) -> String {
        let pieces = ["a", "b", "\"", "\\", "]", "}", "[", "{", ",", ":", "é", "日本", "\n", "\u{1}", " ", "\\\"", "\u{1F600}"]
        return (0..<Int.random(in: 0..<6, using: &rng)).map { _ in pieces.randomElement(using: &rng)! }.joined()
    }

    /// The serialized text with whitespace after every bracket, comma and colon.
    func spaced(_ json: JSON, _ rng: inout SplitMix) -> String {
        let space = [" ", "\n", "\t", "", "  "]
        var out = ""
        var inString = false
        var escaped = false
        for ch in json.serialized() {
            out.append(ch)
            if inString {
                if escaped { escaped = false } else if ch == "\\" { escaped = true } else if ch == "\"" { inString = false }
            } else if ch == "\"" {
                inString = true
            } else if "{}[],:".contains(ch) {
                out += space.randomElement(using: &rng)!
            }
        }
        return out
    }

    @Test(arguments: 0..<200) func elementsAreTheParsedElements(seed: Int) throws {
        var rng = SplitMix(seed: UInt64(seed))
        let data = (0..<Int.random(in: 0..<6, using: &rng)).map { _ in value(&rng) }
        var page: [String: JSON] = ["data": .array(data)]
        if Bool.random(using: &rng) { page["aa"] = value(&rng) }  // members before and after it
        if Bool.random(using: &rng) { page["zz"] = value(&rng) }
        let text = seed % 2 == 0 ? JSON.object(page).serialized() : spaced(.object(page), &rng)
        let (ok, found) = try elements(text)
        #expect(ok)
        #expect(found.count == data.count)
        #expect(try found.map { try JSON.parse($0) } == JSON.parse(text)["data"]?.arrayValue, "\(text)")
    }

    @Test func pagesWithoutTheArrayAreNotTaken() throws {
        #expect(try elements(#"{"data":{"a":1}}"#).0 == false)
        #expect(try elements(#"{"other":[1,2]}"#).0 == false)
        #expect(try elements(#"{}"#).0 == false)
        #expect(try elements(#"[{"data":[1]}]"#).0 == false)
        #expect(try elements(#"{"data":[1],"data":[2]}"#) == (false, ["1"]))  // a parse keeps the second
        #expect(try elements(#" {"data" : [ ] } "#) == (true, []))
    }

    @Test func brokenPagesThrow() {
        for text in [#"{"data":[{"a":1}"#, #"{"data":[{"a":"x}]}"#, #"{"data":[1 2]}"#, #"{"data":[1]"#, #"{"data":[1]} x"#,
                     #"{"data":[1],"b":tru}"#, #"{"data" [1]}"#, #"{"data":[{"a":1]]}"#] {
            #expect(throws: JSONParseError.self, "\(text)") { try elements(text) }
        }
    }

    @Test func nestingPastTheLimitThrows() {
        let deep = #"{"data":["# + String(repeating: "[", count: 600) + String(repeating: "]", count: 600) + "]}"
        #expect(throws: JSONParseError.self) { try elements(deep) }
    }

    /// `JSON.forEachRawMember(ofObject:)`: each member's key and value text are those a parse finds.
    @Test(arguments: 0..<200) func rawMembersAreTheParsedMembers(seed: Int) throws {
        var rng = SplitMix(seed: UInt64(seed) + 1000)
        var object: [String: JSON] = [:]
        for _ in 0..<Int.random(in: 0..<6, using: &rng) { object[text(&rng)] = value(&rng) }
        let text = seed % 2 == 0 ? JSON.object(object).serialized() : spaced(.object(object), &rng)
        var found: [String: JSON] = [:]
        let ok = try Array(text.utf8).withUnsafeBytes { buffer in
            try JSON.forEachRawMember(ofObject: buffer) { key, value in
                found[key.string] = try JSON.parse(value)
                return true
            }
        }
        #expect(ok)
        #expect(JSON.object(found) == JSON.object(object), "\(text)")
    }

    @Test func rawMembersOfWhatIsNoObject() throws {
        func walk(_ text: String) throws -> (Bool, [String]) {
            var keys: [String] = []
            let ok = try Array(text.utf8).withUnsafeBytes { buffer in
                try JSON.forEachRawMember(ofObject: buffer) { key, _ in
                    keys.append(key.string)
                    return keys.count < 2
                }
            }
            return (ok, keys)
        }
        #expect(try walk("[1]") == (false, []))
        #expect(try walk(" { } ") == (true, []))
        #expect(try walk(#"{"a":1,"b":2,"c":3}"#) == (false, ["a", "b"]))  // stopped
        for broken in [#"{"a":1"#, #"{"a" 1}"#, #"{"a":[1}"#, #"{"a":"x}"#, #"{"a":1} x"#, #"{a:1}"#] {
            #expect(throws: JSONParseError.self, "\(broken)") { try walk(broken) }
        }
    }
}
