/// A strict parser of `multipart/form-data` bodies (RFC 7578 over RFC 2046), for uploads.
///
/// Strict on purpose: a body that does not follow the grammar (no closing delimiter, a part
/// without `Content-Disposition: form-data; name=…`, headers that never end, a name given
/// twice) is refused with a message that says where, rather than guessed at. It reads a body
/// already bounded by the caller's size limit and copies each part's content once.
///
/// ```swift
/// let boundary = try MultipartFormData.boundary(contentType: "multipart/form-data; boundary=xyz")
/// let parts = try MultipartFormData.parse(body, boundary: boundary)
/// ```
public enum MultipartFormData {
    /// One field of the form.
    public struct Part: Sendable, Equatable {
        /// The `name` of its `Content-Disposition`.
        public var name: String
        /// The `filename`, when the part is a file.
        public var filename: String?
        /// Its `Content-Type` header, when given.
        public var contentType: String?
        public var content: [UInt8]

        public init(name: String, filename: String? = nil, contentType: String? = nil, content: [UInt8]) {
            self.name = name
            self.filename = filename
            self.contentType = contentType
            self.content = content
        }
    }

    /// What is wrong with a body, in words a client can act on.
    public struct ParseError: Error, Sendable, Equatable, CustomStringConvertible {
        public let description: String
        init(_ description: String) { self.description = description }
    }

    /// Most parts one body may hold, and most header bytes of one part (beyond: refused).
    public static let maxParts = 64
    public static let maxHeaderBytes = 8192

    /// The boundary of a `multipart/form-data` Content-Type, or an error that says what is
    /// missing (another media type, no boundary, a boundary RFC 2046 forbids).
    public static func boundary(contentType: String?) throws(ParseError) -> String {
        guard let contentType else { throw ParseError("Content-Type should be multipart/form-data (none was sent)") }
        let pieces = splitParameters(contentType)
        guard let type = pieces.first?.lowercased(), type == "multipart/form-data" else {
            throw ParseError("Content-Type should be multipart/form-data, not \(pieces.first ?? "")")
        }
        for piece in pieces.dropFirst() {
            guard let eq = piece.firstIndex(of: "=") else { continue }
            guard piece[..<eq].trimmingSpaces().lowercased() == "boundary" else { continue }
            let value = unquote(String(piece[piece.index(after: eq)...].trimmingSpaces()))
            // RFC 2046: 1 to 70 characters, not ending with a space.
            guard (1...70).contains(value.utf8.count), !value.hasSuffix(" "),
                  value.utf8.allSatisfy({ $0 >= 0x20 && $0 < 0x7F }) else {
                throw ParseError("The multipart boundary must be 1 to 70 printable characters")
            }
            return value
        }
        throw ParseError("Content-Type multipart/form-data needs a boundary parameter")
    }

    /// The parts of `body`, in order.
    public static func parse(_ body: [UInt8], boundary: String) throws(ParseError) -> [Part] {
        let dashBoundary = Array("--\(boundary)".utf8)
        let delimiter = Array("\r\n--\(boundary)".utf8)
        // The preamble (ignored) ends at the first dash-boundary at the start of a line.
        var position: Int
        if body.starts(with: dashBoundary) {
            position = dashBoundary.count
        } else if let found = find(delimiter, in: body, from: 0) {
            position = found + delimiter.count
        } else {
            throw ParseError("The multipart body has no boundary line (--\(boundary))")
        }
        var parts: [Part] = []
        var names = Set<String>()
        while true {
            // After a boundary: `--` ends the body, else optional whitespace then CRLF.
            if body.count >= position + 2, body[position] == UInt8(ascii: "-"), body[position + 1] == UInt8(ascii: "-") {
                return parts
            }
            while position < body.count, body[position] == UInt8(ascii: " ") || body[position] == UInt8(ascii: "\t") { position += 1 }
            guard body.count >= position + 2, body[position] == 0x0D, body[position + 1] == 0x0A else {
                throw ParseError("A multipart boundary line must end with CRLF")
            }
            position += 2
            guard parts.count < maxParts else { throw ParseError("The multipart body has more than \(maxParts) parts") }
            guard let headerEnd = find(Array("\r\n\r\n".utf8), in: body, from: position - 2, limit: maxHeaderBytes) else {
                throw ParseError("The headers of multipart part \(parts.count + 1) do not end (no blank line within \(maxHeaderBytes) bytes)")
            }
            var part = try headers(body[position..<max(position, headerEnd)], index: parts.count + 1)
            let contentStart = headerEnd + 4
            guard let contentEnd = find(delimiter, in: body, from: contentStart) else {
                throw ParseError("Multipart part \(parts.count + 1) (\(part.name)) is not closed by a boundary: the body is cut short")
            }
            part.content = Array(body[contentStart..<contentEnd])
            guard names.insert(part.name).inserted else { throw ParseError("The multipart field \(part.name) is given more than once") }
            parts.append(part)
            position = contentEnd + delimiter.count
        }
    }

    /// A part's headers: `Content-Disposition: form-data; name="…"[; filename="…"]` is required.
    static func headers(_ bytes: ArraySlice<UInt8>, index: Int) throws(ParseError) -> Part {
        let text = String(decoding: bytes, as: UTF8.self)
        guard text.utf8.elementsEqual(bytes) else {
            throw ParseError("The headers of multipart part \(index) are not UTF-8")
        }
        var disposition: String?
        var contentType: String?
        for line in text.split(separator: "\r\n", omittingEmptySubsequences: true) {
            guard let colon = line.firstIndex(of: ":") else {
                throw ParseError("Multipart part \(index) has a header line without a colon")
            }
            let name = line[..<colon].trimmingSpaces().lowercased()
            let value = String(line[line.index(after: colon)...].trimmingSpaces())
            switch name {
            case "content-disposition": disposition = value
            case "content-type": contentType = value
            default: break
            }
        }
        guard let disposition else { throw ParseError("Multipart part \(index) has no Content-Disposition header") }
        let pieces = splitParameters(disposition)
        guard pieces.first?.lowercased() == "form-data" else {
            throw ParseError("Multipart part \(index): Content-Disposition must be form-data")
        }
        var fieldName: String?
        var filename: String?
        for piece in pieces.dropFirst() {
            guard let eq = piece.firstIndex(of: "=") else { continue }
            let key = piece[..<eq].trimmingSpaces().lowercased()
            let value = unquote(String(piece[piece.index(after: eq)...].trimmingSpaces()))
            switch key {
            case "name": fieldName = value
            case "filename": filename = value
            default: break
            }
        }
        guard let fieldName, !fieldName.isEmpty else {
            throw ParseError("Multipart part \(index): Content-Disposition has no name")
        }
        return Part(name: fieldName, filename: filename, contentType: contentType, content: [])
    }

    /// `a; b="x;y"; c` → `["a", "b=\"x;y\"", "c"]`: semicolons inside quotes do not split.
    static func splitParameters(_ text: String) -> [String] {
        var pieces: [String] = []
        var current = ""
        var quoted = false
        var escaped = false
        for character in text {
            if escaped { current.append(character); escaped = false; continue }
            if quoted && character == "\\" { current.append(character); escaped = true; continue }
            if character == "\"" { quoted.toggle() }
            if character == ";" && !quoted {
                pieces.append(String(current.trimmingSpaces()))
                current = ""
            } else {
                current.append(character)
            }
        }
        pieces.append(String(current.trimmingSpaces()))
        return pieces.filter { !$0.isEmpty }
    }

    /// `"a\"b"` → `a"b`; an unquoted value as it is.
    static func unquote(_ value: String) -> String {
        guard value.count >= 2, value.hasPrefix("\""), value.hasSuffix("\"") else { return value }
        var out = ""
        var escaped = false
        for character in value.dropFirst().dropLast() {
            if escaped { out.append(character); escaped = false } else if character == "\\" { escaped = true } else { out.append(character) }
        }
        return out
    }

    /// The first index of `needle` in `haystack` at or after `start` (searching at most `limit` bytes).
    static func find(_ needle: [UInt8], in haystack: [UInt8], from start: Int, limit: Int? = nil) -> Int? {
        guard !needle.isEmpty else { return nil }
        let first = needle[0]
        let end = min(haystack.count - needle.count, limit.map { start + $0 } ?? Int.max)
        var i = max(0, start)
        return haystack.withUnsafeBufferPointer { h -> Int? in
            while i <= end {
                if h[i] == first {
                    var j = 1
                    while j < needle.count && h[i + j] == needle[j] { j += 1 }
                    if j == needle.count { return i }
                }
                i += 1
            }
            return nil
        }
    }
}

extension StringProtocol {
    fileprivate func trimmingSpaces() -> SubSequence {
        var s = self[...]
        while let f = s.first, f == " " || f == "\t" { s = s.dropFirst() }
        while let l = s.last, l == " " || l == "\t" { s = s.dropLast() }
        return s
    }
}
