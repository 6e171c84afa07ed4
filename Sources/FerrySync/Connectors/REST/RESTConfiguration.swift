public import FerryCore
import Foundation
import NIOHTTP1

/// How a `rest+http(s)://HOST/PATH` endpoint reads and writes: set with
/// `--source-rest KEY=VALUE`/`--target-rest KEY=VALUE`, or `source_rest:`/`target_rest:`
/// in a jobs file.
///
/// | key | meaning | default |
/// | --- | --- | --- |
/// | `items` | JSON pointer to the array of records in a list answer | the root |
/// | `pagination` | `none`, `page`, `offset`, `cursor`, `link` or `next-url` | `none` |
/// | `page_param` / `first_page` | page number parameter, first page | `page` / `1` |
/// | `size_param` / `page_size` | page size parameter (empty: not sent), records per page | `per_page` (`limit` for offset and cursor) / `100` |
/// | `offset_param` | offset parameter | `offset` |
/// | `cursor_param` / `next_cursor` | cursor parameter, JSON pointer to the next cursor | `cursor` / `/next_cursor` |
/// | `next_url` | JSON pointer to the next page's URL | `/next` |
/// | `since_param` | query parameter selecting records whose cursor field is ≥ a value (incremental) | none |
/// | `sorted` | list answers come sorted by the cursor field (checkpoint after every page) | `false` |
/// | `create` / `update` / `delete` | `METHOD PATH` templates; `{key}` or `{FIELD}` are filled in | `POST /PATH`, `PUT /PATH/{key}`, `DELETE /PATH/{key}` |
/// | `upsert` | `auto`, `update-first`, `create-first` or `put` (the update template creates) | `auto` |
/// | `exists_status` / `gone_status` | answers meaning "already exists" / "already gone" | `409` / `404,410` |
/// | `wrap` | send each record as `{"WRAP": record}` | none |
/// | `send_key` | include the key field in bodies | `true` |
/// | `managed_fields` | fields the API sets itself (never sent, not compared) | none |
/// | `concurrency` | write requests in flight at once | `4` |
/// | `rate` | most requests per second | unlimited |
public struct RESTConfiguration: Sendable, Equatable {
    public enum Pagination: String, Sendable, CaseIterable {
        case none, page, offset, cursor, link
        case nextURL = "next-url"
    }

    /// How an upsert is sent to an API that has separate create and update calls.
    public enum Upsert: String, Sendable, CaseIterable {
        /// Start with whichever worked last time; fall back to the other.
        case auto
        case updateFirst = "update-first"
        case createFirst = "create-first"
        /// The update call creates missing records (`PUT` as upsert): one request.
        case put
    }

    /// `METHOD PATH` with `{key}`/`{FIELD}` placeholders.
    public struct Template: Sendable, Equatable, CustomStringConvertible {
        public var method: String
        /// Literal text and placeholders, in order.
        var parts: [Part]

        enum Part: Sendable, Equatable {
            case literal(String)
            case field(String)
        }

        init(parsing text: String, what: String) throws(SyncError) {
            let pieces = text.trimmingCharacters(in: .whitespaces).split(separator: " ", maxSplits: 1, omittingEmptySubsequences: true)
            guard pieces.count == 2 else { throw .badInput("\(what): \"\(text)\" must be METHOD PATH, e.g. \"PUT /users/{id}\"") }
            method = pieces[0].uppercased()
            guard ["POST", "PUT", "PATCH", "DELETE"].contains(method) else {
                throw .badInput("\(what): the method must be POST, PUT, PATCH or DELETE, not \"\(pieces[0])\"")
            }
            let path = pieces[1].trimmingCharacters(in: .whitespaces)
            guard path.hasPrefix("/") || path.hasPrefix("http://") || path.hasPrefix("https://") else {
                throw .badInput("\(what): the path \"\(path)\" must start with / (or be a whole http(s) URL)")
            }
            var parts: [Part] = []
            var rest = Substring(path)
            while let open = rest.firstIndex(of: "{") {
                if open > rest.startIndex { parts.append(.literal(String(rest[..<open]))) }
                guard let close = rest[open...].firstIndex(of: "}") else { throw .badInput("\(what): unclosed { in \"\(path)\"") }
                let name = String(rest[rest.index(after: open)..<close])
                guard !name.isEmpty, !name.contains("{") else { throw .badInput("\(what): empty or nested placeholder in \"\(path)\"") }
                parts.append(.field(name))
                rest = rest[rest.index(after: close)...]
            }
            guard !rest.contains("}") else { throw .badInput("\(what): a } without { in \"\(path)\"") }
            if !rest.isEmpty { parts.append(.literal(String(rest))) }
            self.parts = parts
        }

        public var description: String {
            method + " " + parts.map {
                switch $0 {
                case .literal(let text): text
                case .field(let name): "{\(name)}"
                }
            }.joined()
        }

        /// The path for one record; `{key}` is the key, `{FIELD}` a field of the record
        /// (percent-encoded). Throws the name of a missing field.
        func path(key: RecordKey, fields: [String: JSON]?, keyField: String) -> Result<String, MissingField> {
            var out = ""
            for part in parts {
                switch part {
                case .literal(let text):
                    out += text
                case .field(let name):
                    let value: String?
                    if name == "key" || name == keyField {
                        value = key.text
                    } else {
                        switch fields?[name] {
                        case .string(let s)?: value = s
                        case .int(let i)?: value = String(i)
                        case .double(let d)?: value = JSON.double(d).serialized()
                        case .bool(let b)?: value = b ? "true" : "false"
                        default: value = nil
                        }
                    }
                    guard let value else { return .failure(MissingField(name: name)) }
                    out += value.addingPercentEncoding(withAllowedCharacters: .alphanumerics.union(CharacterSet(charactersIn: "-._~"))) ?? value
                }
            }
            return .success(out)
        }

        struct MissingField: Error { let name: String }
    }

    public var items: [String] = []
    public var pagination = Pagination.none
    public var pageParam = "page"
    public var firstPage = 1
    /// nil: no page size parameter is sent.
    public var sizeParam: String? = nil
    public var pageSize = 100
    public var offsetParam = "offset"
    public var cursorParam = "cursor"
    public var nextCursor = ["next_cursor"]
    public var nextURL = ["next"]
    public var sinceParam: String? = nil
    public var sorted = false
    public var create: Template
    public var update: Template
    public var delete: Template
    public var upsert = Upsert.auto
    public var existsStatus: Set<Int> = [409]
    public var goneStatus: Set<Int> = [404, 410]
    public var wrap: String? = nil
    public var sendKey = true
    public var managedFields: [String] = []
    public var concurrency = 4
    public var rate: Double? = nil

    static let keys = [
        "items", "pagination", "page_param", "first_page", "size_param", "page_size", "offset_param", "cursor_param",
        "next_cursor", "next_url", "since_param", "sorted", "create", "update", "delete", "upsert", "exists_status",
        "gone_status", "wrap", "send_key", "managed_fields", "concurrency", "rate",
    ]

    /// - Parameters:
    ///   - settings: `KEY=VALUE` settings; unknown keys and bad values are errors naming the key.
    ///   - path: the list URL's path, for the default write templates.
    public init(_ settings: [String: String], path: String) throws(SyncError) {
        func fail(_ key: String, _ why: String) -> SyncError { .badInput("REST setting \(key): \(why)") }
        for key in settings.keys where !Self.keys.contains(key) {
            throw .badInput("unknown REST setting \"\(key)\" (expected one of \(Self.keys.joined(separator: ", ")))")
        }
        func pointer(_ key: String) throws(SyncError) -> [String]? {
            guard var text = settings[key] else { return nil }
            if text == "/" { text = "" }
            do {
                return try JSON.pointerTokens(text)
            } catch {
                throw fail(key, "\"\(text)\" is not a JSON pointer (write /data, or /result/items)")
            }
        }
        func int(_ key: String, _ range: ClosedRange<Int>) throws(SyncError) -> Int? {
            guard let text = settings[key] else { return nil }
            guard let n = Int(text), range.contains(n) else { throw fail(key, "must be a whole number from \(range.lowerBound) to \(range.upperBound), not \"\(text)\"") }
            return n
        }
        func bool(_ key: String) throws(SyncError) -> Bool? {
            guard let text = settings[key] else { return nil }
            switch text.lowercased() {
            case "true", "yes", "1": return true
            case "false", "no", "0": return false
            default: throw fail(key, "must be true or false, not \"\(text)\"")
            }
        }
        func statuses(_ key: String) throws(SyncError) -> Set<Int>? {
            guard let text = settings[key] else { return nil }
            var out: Set<Int> = []
            for part in text.split(separator: ",") {
                guard let n = Int(part.trimmingCharacters(in: .whitespaces)), (200...599).contains(n) else {
                    throw fail(key, "must list HTTP statuses like 404,410, not \"\(text)\"")
                }
                out.insert(n)
            }
            return out
        }
        func name(_ key: String) throws(SyncError) -> String? {
            guard let text = settings[key] else { return nil }
            guard !text.isEmpty, text.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || "-_.[]".contains($0)) }) else {
                throw fail(key, "\"\(text)\" is not a usable query parameter name")
            }
            return text
        }

        if let text = settings["pagination"] {
            guard let style = Pagination(rawValue: text) else {
                throw fail("pagination", "must be one of \(Pagination.allCases.map(\.rawValue).joined(separator: ", ")), not \"\(text)\"")
            }
            pagination = style
        }
        items = try pointer("items") ?? []
        nextCursor = try pointer("next_cursor") ?? nextCursor
        nextURL = try pointer("next_url") ?? nextURL
        pageParam = try name("page_param") ?? pageParam
        offsetParam = try name("offset_param") ?? offsetParam
        cursorParam = try name("cursor_param") ?? cursorParam
        firstPage = try int("first_page", 0...1) ?? firstPage
        pageSize = try int("page_size", 1...100_000) ?? pageSize
        switch settings["size_param"] {
        case ""?: sizeParam = nil
        case .some: sizeParam = try name("size_param")
        case nil:
            switch pagination {
            case .page, .link: sizeParam = "per_page"
            case .offset, .cursor: sizeParam = "limit"
            case .none, .nextURL: sizeParam = nil
            }
        }
        sinceParam = try name("since_param")
        sorted = try bool("sorted") ?? false
        sendKey = try bool("send_key") ?? true
        var base = path
        while base.hasSuffix("/") { base.removeLast() }
        create = try Template(parsing: settings["create"] ?? "POST \(base.isEmpty ? "/" : base)", what: "REST setting create")
        update = try Template(parsing: settings["update"] ?? "PUT \(base)/{key}", what: "REST setting update")
        delete = try Template(parsing: settings["delete"] ?? "DELETE \(base)/{key}", what: "REST setting delete")
        if let text = settings["upsert"] {
            guard let strategy = Upsert(rawValue: text) else {
                throw fail("upsert", "must be one of \(Upsert.allCases.map(\.rawValue).joined(separator: ", ")), not \"\(text)\"")
            }
            upsert = strategy
        }
        existsStatus = try statuses("exists_status") ?? existsStatus
        goneStatus = try statuses("gone_status") ?? goneStatus
        if let text = settings["wrap"] {
            guard !text.isEmpty else { throw fail("wrap", "needs a member name, e.g. wrap=user") }
            wrap = text
        }
        if let text = settings["managed_fields"] {
            managedFields = text.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        }
        concurrency = try int("concurrency", 1...64) ?? concurrency
        if let text = settings["rate"] {
            guard let r = Double(text), r.isFinite, r > 0, r <= 100_000 else { throw fail("rate", "must be requests per second above 0, not \"\(text)\"") }
            rate = r
        }
    }
}
