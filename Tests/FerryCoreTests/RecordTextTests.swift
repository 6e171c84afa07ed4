import FerryCore
import FerryTestSupport
import Testing

/// A record's text serialized before its timestamp is known is, once the id and the timestamp
/// are written in, exactly the canonical text of the whole object.
@Suite struct RecordTextTests {
    @Test func textIsTheCanonicalTextOfTheWholeObject() {
        // Keys on both sides of "id" and "last_modified", and ones that share their prefixes.
        let keys = ["", "a", "Z", "i", "ia", "id0", "idx", "j", "last", "last_modified0", "last_modifiee", "m", "z", "é", "\u{1F600}", "id", "last_modified"]
        var random = SplitMix(seed: 8785)
        for _ in 0..<500 {
            var members: [String: JSON] = [:]
            for key in keys where Bool.random(using: &random) {
                // Top-level nulls (which the hash drops) and nested ones (which it keeps).
                switch Int.random(in: 0..<8, using: &random) {
                case 0: members[key] = .null
                case 1: members[key] = ["n": .null, "b": .array([1, .null]), "a": "x"]
                case 2, 3, 4: members[key] = .int(Int64.random(in: -5...5, using: &random))
                default: members[key] = .string("v\"\n\(key)")
                }
            }
            let id = Bool.random(using: &random) ? "r1" : "quote\"d"
            let ts = Int64.random(in: 0...1_900_000_000_000, using: &random)
            var whole = members
            whole["id"] = .string(id)
            whole["last_modified"] = .int(ts)
            #expect(RecordText(members).text(id: id, lastModified: ts) == JSON.object(whole).serialized(), "\(members)")
            // The content hash made ahead is the diff's hash of the stored record.
            var fields = whole
            fields["last_modified"] = nil
            #expect(RecordText(members, hashedAs: id).hash?.bytes == RecordHash(fields: fields, keyField: "id", keyText: id).bytes)
        }
    }
}
