@testable import FerryCore
import FerryTestSupport
import Testing

/// Canonical JSON orders keys by UTF-16 code units (RFC 8785); `JSON.keyPrecedes` compares their
/// UTF-8 bytes and must give that order for every pair, including characters from U+E000 (which
/// sort above a surrogate pair in UTF-16 but below a 4-byte character in UTF-8).
@Suite struct KeyOrderTests {
    @Test func keysSortByUTF16CodeUnits() {
        let pieces = ["", "a", "b", "id", "Z", "_", "~", "\u{7F}", "é", "\u{7FF}", "\u{800}", "\u{D7FF}", "\u{E000}", "\u{EFFF}", "\u{F000}",
                      "\u{FF21}", "\u{FFFD}", "\u{FFFF}", "\u{10000}", "\u{1F600}", "\u{10FFFF}", "e\u{301}", "last_modified"]
        var random = SplitMix(seed: 8785)
        var keys = pieces
        for _ in 0..<400 {
            keys.append((0..<Int.random(in: 1...4, using: &random)).map { _ in pieces.randomElement(using: &random)! }.joined())
        }
        var wrong: [(String, String)] = []
        for a in keys {
            for b in keys where JSON.keyPrecedes(a, b) != a.utf16.lexicographicallyPrecedes(b.utf16) {
                wrong.append((a, b))
            }
        }
        #expect(wrong.isEmpty, "\(wrong.prefix(5).map { ($0.0.unicodeScalars.map(\.value), $0.1.unicodeScalars.map(\.value)) })")
        // The characters whose order differs between the two encodings are among them.
        #expect(JSON.keyPrecedes("\u{1F600}", "\u{E000}") && !"\u{1F600}".utf8.lexicographicallyPrecedes("\u{E000}".utf8))
    }
}
