import FerryCore
import Testing

@Suite struct JSONTests {
    @Test func parsesAndSerializesCanonically() throws {
        let json = try JSON.parse(#" { "b": [1, 2.5, true, null], "a": {"z": "x\ny", "é": -0.000001}, "c": 12345678901234 } "#)
        #expect(json.serialized() == #"{"a":{"z":"x\ny","é":-0.000001},"b":[1,2.5,true,null],"c":12345678901234}"#)
        #expect(try JSON.parse(json.serialized()) == json)
    }

    @Test(arguments: [
        (1e21, "1e+21"), (1e-7, "1e-7"), (123.0, "123"), (0.1, "0.1"), (-1.5, "-1.5"), (1e20, "100000000000000000000"),
        (5e-324, "5e-324"), (1.7976931348623157e308, "1.7976931348623157e+308"), (0.000001, "0.000001"), (123456.789, "123456.789"),
    ])
    func formatsNumbersAsECMAScript(value: Double, expected: String) {
        #expect(JSON.format(value) == expected)
    }

    @Test func sortsKeysByUTF16() {
        // U+1F600 (surrogates D83D…) sorts before U+FFFD in UTF-16 but after it in code points.
        let json: JSON = ["\u{FFFD}": 1, "\u{1F600}": 2, "a": 3]
        #expect(json.serialized() == "{\"a\":3,\"\u{1F600}\":2,\"\u{FFFD}\":1}")
    }

    @Test func decodesEscapesAndSurrogatePairs() throws {
        #expect(try JSON.parse(#""\u00e9\ud83d\ude00\t\"""#) == .string("é😀\t\""))
    }

    @Test(arguments: [
        "", "{", "[1,]", "{\"a\":1,}", "01", "1.", "-", "tru", "\"abc", "{\"a\" 1}", "[1] x", "\"\\ud800\"", "\"\\x\"",
        "\"a\u{01}b\"", "1e400", "{\"a\":}", "NaN",
    ])
    func rejectsMalformedJSON(text: String) {
        #expect(throws: JSONParseError.self) { try JSON.parse(text) }
        // The check-only pass (sync's up-front file validation) refuses exactly the same.
        #expect(throws: JSONParseError.self) { try JSON.validate(bytes: Array(text.utf8)) }
    }

    @Test func validateNamesTheTopLevelKindAndAgreesWithParse() throws {
        #expect(try JSON.validate(bytes: Array(#"{"a":[1,{"b":null}],"c":"\u00e9"}"#.utf8)) == "object")
        #expect(try JSON.validate(bytes: Array("[1,2]".utf8)) == "array")
        #expect(throws: JSONParseError.self) { try JSON.validate(bytes: [0x22, 0xFF, 0xFE, 0x22] as [UInt8]) }
        let deep = String(repeating: "[", count: 65) + String(repeating: "]", count: 65)
        #expect(throws: JSONParseError.self) { try JSON.validate(bytes: Array(deep.utf8)) }
    }

    @Test func rejectsInvalidUTF8() {
        let bytes: [UInt8] = [0x22, 0xFF, 0xFE, 0x22]
        #expect(throws: JSONParseError.self) { try JSON.parse(bytes: bytes) }
    }

    @Test func rejectsDeepNesting() throws {
        let deep = String(repeating: "[", count: 100_000) + String(repeating: "]", count: 100_000)
        #expect(throws: JSONParseError.self) { try JSON.parse(deep) }
        let ok = String(repeating: "[", count: 64) + String(repeating: "]", count: 64)
        _ = try JSON.parse(ok)
    }

    @Test func intAndDoubleCompareAsNumbers() {
        #expect(JSON.int(1) == JSON.double(1.0))
        #expect(JSON.int(1) != JSON.string("1"))
        #expect(JSON.bool(true) != JSON.int(1))
    }
}

@Suite struct JSONPatchTests {
    @Test func appliesRFC6902Operations() throws {
        let doc: JSON = ["a": 1, "list": [1, 2], "nested": ["x": "y"]]
        let patch = try JSON.parse(#"""
            [{"op":"add","path":"/b","value":2},{"op":"remove","path":"/a"},{"op":"replace","path":"/nested/x","value":"z"},
             {"op":"add","path":"/list/-","value":3},{"op":"move","from":"/b","path":"/c"},{"op":"copy","from":"/c","path":"/d"},
             {"op":"test","path":"/d","value":2}]
            """#)
        #expect(try doc.applying(patch: patch) == ["list": [1, 2, 3], "nested": ["x": "z"], "c": 2, "d": 2])
    }

    @Test func failedPatchLeavesDocumentUnchanged() throws {
        let doc: JSON = ["a": 1]
        let patch = try JSON.parse(#"[{"op":"add","path":"/b","value":2},{"op":"test","path":"/a","value":5}]"#)
        #expect(throws: JSONPatchError.self) { try doc.applying(patch: patch) }
        #expect(doc == ["a": 1])
        #expect(throws: JSONPatchError.self) { try doc.applying(patch: ["not an op"]) }
        #expect(throws: JSONPatchError.self) { try doc.applying(patch: [["op": "remove", "path": "/missing"]]) }
    }

    @Test func mergePatchRemovesNullsAndMergesObjects() {
        let doc: JSON = ["a": 1, "o": ["x": 1, "y": 2]]
        #expect(doc.merging(patch: ["a": .null, "o": ["y": .null, "z": 3]]) == ["o": ["x": 1, "z": 3]])
    }
}
