import FerryCore
import FerryStore
import Foundation

/// The querystring of a list (`_limit`, `_sort`, `_fields`, `_token`, `_since`, filters) parsed and checked.
struct ListParameters: Sendable {
    var filters: [Filter] = []
    var sort: [Sort] = []
    var limit: Int
    var fields: [String]?
    var after: PageAfter?
    var offset = 0
    var includeDeleted = false

    /// Filter prefixes, longest first so `contains_any_` wins over `contains_`.
    static let prefixes: [(String, Comparison)] = Comparison.allCases
        .compactMap { c in c.prefix.map { ($0, c) } }
        .sorted { $0.0.count > $1.0.count } + [("eq_", .eq)]

    /// Parses the list parameters of a plural endpoint.
    /// - Parameters:
    ///   - query: the decoded querystring.
    ///   - paginateBy: the server's forced page size, if any.
    ///   - maxFetchSize: the most objects one page may hold.
    static func parse(_ query: [(String, String)], paginateBy: Int?, maxFetchSize: Int) throws(KintoError) -> ListParameters {
        var limit: Int?
        var sortSpec: String?
        var fieldsSpec: String?
        var token: String?
        var filters: [Filter] = []
        for (rawName, value) in query {
            let name = rawName.trimmingSpaces()
            if name.utf8.contains(0) || value.utf8.contains(0) {
                throw .invalidParameters(location: "querystring", name: name, description: "Invalid character 0x00")
            }
            switch name {
            case "_limit":
                guard let n = Int(value), n >= 0 else {
                    throw .invalidParameters(location: "querystring", name: "_limit", description: "\"\(value)\" is not a number")
                }
                limit = n
            case "_sort": sortSpec = value
            case "_fields": fieldsSpec = value
            case "_token": token = value
            case "_since", "_before", "_to":
                guard let ts = Int64(value.trimmingQuotes()) else {
                    throw .invalidParameters(location: "querystring", name: name, description: "Invalid value for \(name)")
                }
                filters.append(Filter("last_modified", name == "_since" ? .gt : .lt, .int(ts)))
            default:
                if name.hasPrefix("_") { continue }  // other underscore parameters are not filters (Kinto ignores them)
                filters.append(try parseFilter(name: name, value: value))
            }
        }
        var result = ListParameters(limit: 0)
        result.filters = filters
        result.includeDeleted = filters.contains { $0.field == "last_modified" }

        var effective = (limit == 0 ? nil : limit) ?? paginateBy ?? maxFetchSize
        if let paginateBy { effective = min(effective, paginateBy) }
        result.limit = min(effective, maxFetchSize)

        if let sortSpec {
            for raw in sortSpec.split(separator: ",", omittingEmptySubsequences: false) {
                let item = raw.trimmingSpaces()
                var field = item
                var descending = false
                if field.hasPrefix("-") { descending = true; field.removeFirst() } else if field.hasPrefix("+") { field.removeFirst() }
                guard FieldName.isValid(field) else {
                    throw .invalidParameters(location: "querystring", name: "_sort", description: "Invalid sort field '\(item)'")
                }
                result.sort.append(Sort(field, descending: descending))
            }
        }
        if !result.sort.contains(where: { $0.field == "last_modified" }) {
            result.sort.append(Sort("last_modified", descending: true))
        }

        if let fieldsSpec {
            var fields: [String] = []
            for raw in fieldsSpec.split(separator: ",", omittingEmptySubsequences: true) {
                let field = raw.trimmingSpaces()
                if field.isEmpty { continue }  // `_fields=a, ,b` as `_fields=a,,b`
                guard FieldName.isValid(field) else {
                    throw .invalidParameters(location: "querystring", name: "_fields", description: "Invalid field '\(field)'")
                }
                fields.append(field)
            }
            result.fields = fields + ["id", "last_modified"]
        }

        if let token {
            guard let info = PageToken.decode(token) else {
                throw .invalidParameters(location: "querystring", name: "_token", description: "_token has invalid content")
            }
            result.after = PageAfter(lastValues: info.lastValues)
            result.offset = info.offset
        }
        return result
    }

    /// Kinto's `native_value`: JSON if the text parses, the text itself otherwise.
    static func nativeValue(_ text: String) -> JSON {
        (try? JSON.parse(text, maxDepth: 8)) ?? .string(text)
    }

    static func parseFilter(name: String, value: String) throws(KintoError) -> Filter {
        var comparison = Comparison.eq
        var field = name
        for (prefix, c) in prefixes where name.hasPrefix(prefix) && name.count > prefix.count {
            comparison = c
            field = String(name.dropFirst(prefix.count))
            break
        }
        guard FieldName.isValid(field) else {
            throw .invalidParameters(location: "querystring", name: name, description: "Unknown filter field '\(name)'")
        }
        let parsed: JSON
        switch comparison {
        case .in, .exclude, .contains, .containsAny:
            if case .array(let values) = nativeValue(value) {
                parsed = .array(values)
            } else {
                parsed = .array(value.split(separator: ",", omittingEmptySubsequences: false).map { nativeValue(String($0)) })
            }
        case .like:
            parsed = .string(value)
        default:
            parsed = nativeValue(value)
        }
        if field == "last_modified" {
            let values = parsed.arrayValue ?? [parsed]
            let trimmedInts = values.allSatisfy { v in
                if v.intValue != nil { return true }
                if let s = v.stringValue { return Int64(s.trimmingCharacters(in: CharacterSet(charactersIn: "\""))) != nil }
                return false
            }
            guard !value.isEmpty, trimmedInts else {
                throw .invalidParameters(location: "querystring", name: name, description: "Invalid value for \(name)")
            }
        }
        return Filter(field, comparison, parsed)
    }
}

/// The `_token` of a `Next-Page` URL: base64url of `{"last_object": {…}, "offset": n}`.
enum PageToken {
    static func encode(lastValues: [String: JSON], offset: Int) -> String {
        let json = JSON.object(["last_object": .object(lastValues), "offset": .int(Int64(offset))]).serializedBytes()
        return base64URL(json)
    }

    /// Base64url without padding, written directly (through Foundation's base64 and three
    /// `replacingOccurrences` it was 4 % of serving a page of 100).
    static func base64URL(_ bytes: [UInt8]) -> String {
        let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_".utf8)
        var out: [UInt8] = []
        out.reserveCapacity((bytes.count + 2) / 3 * 4)
        var i = 0
        while i < bytes.count {
            let b0 = Int(bytes[i])
            let b1 = i + 1 < bytes.count ? Int(bytes[i + 1]) : 0
            let b2 = i + 2 < bytes.count ? Int(bytes[i + 2]) : 0
            out.append(alphabet[b0 >> 2])
            out.append(alphabet[(b0 & 0x3) << 4 | b1 >> 4])
            if i + 1 < bytes.count { out.append(alphabet[(b1 & 0xF) << 2 | b2 >> 6]) }
            if i + 2 < bytes.count { out.append(alphabet[b2 & 0x3F]) }
            i += 3
        }
        return String(decoding: out, as: UTF8.self)
    }

    static func decode(_ token: String) -> (lastValues: [String: JSON], offset: Int)? {
        var text = token.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        while text.count % 4 != 0 { text += "=" }
        guard token.utf8.count < 65536, let data = Data(base64Encoded: text),
              case .object(let info)? = try? JSON.parse(bytes: [UInt8](data)),
              case .object(let last)? = info["last_object"],
              let offset = info["offset"]?.intValue, offset >= 0
        else { return nil }
        for key in last.keys where !FieldName.isValid(key) { return nil }
        return (last, Int(offset))
    }
}

extension StringProtocol {
    /// `trimmingCharacters(in: .whitespaces)`, without Foundation's cost when the text neither
    /// starts nor ends with a space, a tab or a non-ASCII character (every query parameter of a
    /// client's page).
    func trimmingSpaces() -> String {
        let bytes = Substring(self).utf8
        guard let first = bytes.first, let last = bytes.last else { return "" }
        func plain(_ byte: UInt8) -> Bool { byte != 0x20 && byte != 0x09 && byte < 0x80 }
        if plain(first) && plain(last) { return String(self) }
        return trimmingCharacters(in: .whitespaces)
    }

    /// `trimmingCharacters(in: CharacterSet(charactersIn: "\""))`, without Foundation's cost
    /// when there is no quote at either end.
    func trimmingQuotes() -> String {
        let bytes = Substring(self).utf8
        guard let first = bytes.first, let last = bytes.last else { return "" }
        if first != UInt8(ascii: "\"") && last != UInt8(ascii: "\"") { return String(self) }
        var text = Substring(self)
        while text.first == "\"" { text.removeFirst() }
        while text.last == "\"" { text.removeLast() }
        return String(text)
    }
}
