import FerryCore
import FerryTestSupport
@testable import FerryServer
import Foundation
import Testing

/// The byte-level shortcuts of a list's parameters give what Foundation gives.
@Suite struct ListParametersTests {
    /// A `Next-Page` token is base64url without padding: what Foundation's base64 with the
    /// three characters replaced gave, for every length and byte.
    @Test func pageTokensAreBase64URL() {
        var random = SplitMix(seed: 4648)
        for length in 0..<70 {
            let bytes = (0..<length).map { _ in UInt8.random(in: 0...255, using: &random) }
            let foundation = Data(bytes).base64EncodedString()
                .replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_").replacingOccurrences(of: "=", with: "")
            #expect(PageToken.base64URL(bytes) == foundation, "\(bytes)")
        }
        let token = PageToken.encode(lastValues: ["last_modified": 17, "name": "é/+?"], offset: 3)
        #expect(PageToken.decode(token)?.lastValues == ["last_modified": 17, "name": "é/+?"])
        #expect(PageToken.decode(token)?.offset == 3)
    }

    @Test func trimmingIsFoundationsTrimming() {
        for text in ["", " ", "a", " a", "a ", "\ta\t", " a b ", "\u{00A0}a", "a\u{2003}", "é", " é ", "\"", "\"\"", "\"12\"", "12\"", "\"12", "\"\"1\"\""] {
            #expect(text.trimmingSpaces() == text.trimmingCharacters(in: .whitespaces), "\(text.debugDescription)")
            #expect(text.trimmingQuotes() == text.trimmingCharacters(in: CharacterSet(charactersIn: "\"")), "\(text.debugDescription)")
        }
    }

    /// A `Next-Page` link's query is escaped as Foundation escapes it with the same unreserved
    /// characters (letters, digits, `-_.~,`): random text of ASCII, controls and other scripts.
    @Test func linksArePercentEncodedAsFoundationEncodes() {
        var unreserved = CharacterSet()
        unreserved.insert(charactersIn: "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.~,")
        var random = SplitMix(seed: 97)
        let pieces = ["a", "Z", "0", "-", "_", ".", "~", ",", " ", "%", "&", "=", "?", "/", "+", "\u{0}", "\t", "é", "中", "😀", "\"", "'"]
        for length in 0..<60 {
            let text = (0..<length).map { _ in pieces[Int(random.next() % UInt64(pieces.count))] }.joined()
            #expect(APIRequest.percentEncode(text) == text.addingPercentEncoding(withAllowedCharacters: unreserved), "\(text.debugDescription)")
        }
    }
}
