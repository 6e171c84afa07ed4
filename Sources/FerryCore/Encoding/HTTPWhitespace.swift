extension StringProtocol {
    /// Without the spaces and tabs around it (HTTP's optional whitespace, RFC 9110 §5.6.3),
    /// compared by bytes: header values are trimmed on every request, and Foundation's
    /// `trimmingCharacters(in: .whitespaces)` cost as much as the HMAC of the credentials.
    public func trimmingHTTPWhitespace() -> String {
        let bytes = Substring(self).utf8
        let isSpace = { (byte: UInt8) in byte == UInt8(ascii: " ") || byte == UInt8(ascii: "\t") }
        guard let first = bytes.firstIndex(where: { !isSpace($0) }) else { return "" }
        let last = bytes.lastIndex(where: { !isSpace($0) })!
        return String(decoding: bytes[first...last], as: UTF8.self)
    }
}

