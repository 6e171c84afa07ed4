import FerryCore
import FerryTestSupport
import Testing

@Suite struct MultipartFormDataTests {
    static let body = Array((
        "preamble to ignore\r\n" +
        "--b0undary\r\n" +
        "Content-Disposition: form-data; name=\"attachment\"; filename=\"a;b \\\"c\\\".txt\"\r\n" +
        "Content-Type: text/plain\r\n" +
        "\r\n" +
        "line one\r\n--b0undar not the end\r\n" +
        "\r\n--b0undary\r\n" +
        "content-disposition: form-data; name=data\r\n" +
        "\r\n" +
        "{\"a\": 1}" +
        "\r\n--b0undary\r\n" +
        "Content-Disposition: form-data; name=\"empty\"\r\n" +
        "\r\n" +
        "\r\n--b0undary--\r\nepilogue").utf8)

    @Test func partsAreReadWithTheirNamesFilenamesTypesAndExactBytes() throws {
        let boundary = try MultipartFormData.boundary(contentType: "Multipart/Form-Data; charset=utf-8; boundary=\"b0undary\"")
        #expect(boundary == "b0undary")
        let parts = try MultipartFormData.parse(Self.body, boundary: boundary)
        #expect(parts.map(\.name) == ["attachment", "data", "empty"])
        #expect(parts[0].filename == "a;b \"c\".txt" && parts[0].contentType == "text/plain")
        #expect(parts[0].content == Array("line one\r\n--b0undar not the end\r\n".utf8))
        #expect(parts[1].content == Array("{\"a\": 1}".utf8) && parts[1].filename == nil)
        #expect(parts[2].content == [])
    }

    @Test(arguments: [
        (nil as String?, "none was sent"), ("application/json", "not application/json"), ("multipart/form-data", "needs a boundary"),
        ("multipart/form-data; boundary=", "1 to 70"), ("multipart/form-data; boundary=" + String(repeating: "x", count: 71), "1 to 70"),
        ("multipart/mixed; boundary=x", "should be multipart/form-data"),
    ])
    func badContentTypesSayWhatIsWrong(_ contentType: String?, _ message: String) {
        #expect { try MultipartFormData.boundary(contentType: contentType) } throws: { error in
            (error as? MultipartFormData.ParseError)?.description.contains(message) == true
        }
    }

    @Test(arguments: [
        ("", "no boundary line"),
        ("--b\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nno end", "not closed by a boundary"),
        ("--b\r\nContent-Disposition: form-data; name=\"a\"\r\nno blank line", "do not end"),
        ("--b\r\nContent-Type: text/plain\r\n\r\nx\r\n--b--", "no Content-Disposition"),
        ("--b\r\nContent-Disposition: attachment; name=\"a\"\r\n\r\nx\r\n--b--", "must be form-data"),
        ("--b\r\nContent-Disposition: form-data; filename=\"a\"\r\n\r\nx\r\n--b--", "has no name"),
        ("--b\r\nbroken header\r\n\r\nx\r\n--b--", "without a colon"),
        ("--bxyz\r\n", "must end with CRLF"),
        ("--b\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n1\r\n--b\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n2\r\n--b--", "more than once"),
    ])
    func malformedBodiesAreRefusedWithWhere(_ text: String, _ message: String) {
        #expect { try MultipartFormData.parse(Array(text.utf8), boundary: "b") } throws: { error in
            (error as? MultipartFormData.ParseError)?.description.contains(message) == true
        }
    }

    @Test func tooManyPartsOrEndlessHeadersAreRefused() {
        var many = ""
        for i in 0...MultipartFormData.maxParts { many += "--b\r\nContent-Disposition: form-data; name=\"f\(i)\"\r\n\r\nx\r\n" }
        many += "--b--"
        #expect(throws: MultipartFormData.ParseError.self) { try MultipartFormData.parse(Array(many.utf8), boundary: "b") }
        let endless = "--b\r\nX: " + String(repeating: "a", count: MultipartFormData.maxHeaderBytes * 2) + "\r\n\r\nx\r\n--b--"
        #expect(throws: MultipartFormData.ParseError.self) { try MultipartFormData.parse(Array(endless.utf8), boundary: "b") }
    }

    /// Fuzz-style: every truncation and thousands of random byte flips of a valid body either
    /// parse or throw ParseError; none crashes, and a parsed part's content is a slice of the input.
    @Test func mutatedBodiesNeverCrash() {
        let body = Self.body
        for cut in 0..<body.count {
            _ = try? MultipartFormData.parse(Array(body[..<cut]), boundary: "b0undary")
        }
        var generator = SplitMix(seed: 15)
        for _ in 0..<5000 {
            var mutated = body
            for _ in 0..<Int(generator.next() % 4 + 1) {
                let i = Int(generator.next() % UInt64(mutated.count))
                switch generator.next() % 3 {
                case 0: mutated[i] = UInt8(truncatingIfNeeded: generator.next())
                case 1: mutated.remove(at: i)
                default: mutated.insert([13, 10, 45, 34, 59][Int(generator.next() % 5)], at: i)
                }
            }
            do {
                let parts = try MultipartFormData.parse(mutated, boundary: "b0undary")
                for part in parts { #expect(part.content.count <= mutated.count) }
            } catch {
                #expect(error is MultipartFormData.ParseError)
            }
        }
    }
}
