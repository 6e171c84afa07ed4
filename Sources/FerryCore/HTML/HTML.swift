/// Server-rendered HTML (`/admin`, `ferry run --status-port`'s page): every text that came from a
/// user or the data goes through ``escape(_:)`` (element content and quoted attribute values alike).
package enum HTML {
    /// `&`, `<`, `>`, `"` and `'` as character references.
    package static func escape(_ text: String) -> String {
        var out = ""
        out.reserveCapacity(text.utf8.count)
        for character in text {
            switch character {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&quot;"
            case "'": out += "&#39;"
            default: out.append(character)
            }
        }
        return out
    }
}
