import AsyncHTTPClient
public import FerryCore
import Foundation
import NIOHTTP1

/// `rest+http(s)://HOST[:PORT]/PATH[?STATIC=PARAMS]`: any JSON REST API, configured with
/// ``RESTConfiguration``.
///
/// Reads walk the list URL page by page in the configured pagination style. Incremental
/// reads ask for records whose cursor field is at least the saved value (`since_param`,
/// inclusive) and drop what the saved checkpoint already covers: it remembers the hash of
/// each record that had its value, so records sharing a timestamp are neither lost nor
/// repeated, even one written in the same second after the run. Writes are one request per record, several
/// at once (`concurrency`), as create/update/delete templates.
public final class RESTEndpoint: Endpoint {
    public let displayName: String
    /// The list URL without credentials (`http://127.0.0.1:5000/users`).
    let listURL: String
    /// `http://127.0.0.1:5000`, for paths in templates.
    let origin: String
    let config: RESTConfiguration
    let options: EndpointOptions
    let http: HTTPTransport

    public var managedFields: [String] { config.managedFields }
    var retries: Int { http.retries }

    /// - Parameter url: the `http(s)://` list URL, without credentials (give them in `options.auth`).
    init(url: String, options: EndpointOptions, client: HTTPClient) throws(SyncError) {
        guard let components = URLComponents(string: url), let scheme = components.scheme, let host = components.host else {
            throw .badInput("rest+\(url): not a valid URL")
        }
        origin = "\(scheme)://\(host)\(components.port.map { ":\($0)" } ?? "")"
        listURL = url
        displayName = "rest+" + url
        self.options = options
        do {
            config = try RESTConfiguration(options.rest, path: components.path)
        } catch {
            throw .badInput("\(displayName): \(error.message)")
        }
        http = HTTPTransport(client: client, policy: options.retry, credentials: try HTTPTransport.Credentials.parse(options.auth),
                             origin: origin, requestsPerSecond: config.rate)
    }

    // MARK: - Answers

    /// A failed answer as one line: the request, the status and what the API said.
    func failure(_ response: HTTPTransport.Response, _ request: String) -> SyncError {
        HTTPTransport.failure(status: response.status, endpoint: displayName, peer: "API", context: "for \(request)", said: Self.excerpt(response.body))
    }

    static func article(_ noun: String) -> String {
        (noun.first.map { "aeiou".contains($0) } ?? false ? "an " : "a ") + noun
    }

    /// The start of a body, on one line, for messages and the dead-letter file.
    static func excerpt(_ body: [UInt8]) -> String? {
        guard !body.isEmpty else { return nil }
        let text = String(decoding: body.prefix(500), as: UTF8.self)
            .split(whereSeparator: \.isNewline).joined(separator: " ").trimmingCharacters(in: .whitespaces)
        return text.isEmpty ? nil : text + (body.count > 500 ? "…" : "")
    }

    func document(_ response: HTTPTransport.Response, _ url: String) throws -> JSON {
        do {
            return try JSON.parse(bytes: response.body)
        } catch {
            throw SyncError(.protocolError, "\(displayName): GET \(http.redact(url)) did not answer JSON (\(error)): expected a list of records")
        }
    }

    /// The records of a list answer, where `items` points.
    func records(in document: JSON, url: String) throws -> [[String: JSON]] {
        var value = document
        var walked = ""
        for token in config.items {
            walked += "/" + token
            switch value {
            case .object(let members):
                guard let child = members[token] else {
                    throw SyncError(.protocolError, "\(displayName): GET \(http.redact(url)) answered an object without \(walked) (its keys: \(members.keys.sorted().prefix(12).joined(separator: ", "))): expected the records there (items=\(walked))")
                }
                value = child
            case .array(let elements):
                guard let i = Int(token), elements.indices.contains(i) else {
                    throw SyncError(.protocolError, "\(displayName): GET \(http.redact(url)): no element \(walked) in the answer")
                }
                value = elements[i]
            default:
                throw SyncError(.protocolError, "\(displayName): GET \(http.redact(url)): cannot look inside \(Self.article(value.typeName)) for \(walked)")
            }
        }
        let at = config.items.isEmpty ? "the root" : "/" + config.items.joined(separator: "/")
        guard case .array(let elements) = value else {
            var hint = ""
            if config.items.isEmpty, case .object(let members) = value {
                let arrays = members.filter { if case .array = $0.value { true } else { false } }.keys.sorted()
                hint = arrays.isEmpty ? " (an object with keys \(members.keys.sorted().prefix(12).joined(separator: ", ")))"
                    : "; the records look like they are at /\(arrays[0]): set items=/\(arrays[0])"
            }
            throw SyncError(.protocolError, "\(displayName): GET \(http.redact(url)) answered \(Self.article(value.typeName)) at \(at), expected an array of records\(hint)")
        }
        var out: [[String: JSON]] = []
        out.reserveCapacity(elements.count)
        for (i, element) in elements.enumerated() {
            guard case .object(var fields) = element else {
                throw SyncError(.protocolError, "\(displayName): GET \(http.redact(url)): element \(i) of \(at) is \(Self.article(element.typeName)), expected an object (a record)")
            }
            for name in config.managedFields { fields.removeValue(forKey: name) }
            out.append(fields)
        }
        return out
    }

    // MARK: - Pages

    /// `base` with more query parameters.
    static func url(_ base: String, adding parameters: [(String, String)]) -> String {
        guard !parameters.isEmpty else { return base }
        let query = parameters.map { HTTPTransport.queryEncode($0.0) + "=" + HTTPTransport.queryEncode($0.1) }.joined(separator: "&")
        return base + (base.contains("?") ? "&" : "?") + query
    }

    /// A cursor field value as a query parameter.
    static func parameter(_ value: JSON) -> String {
        if case .string(let s) = value { return s }
        return value.serialized()
    }

    /// The `rel="next"` target of a `Link` header (RFC 8288).
    static func nextLink(_ header: String?) -> String? {
        guard let header else { return nil }
        // Split into link-values at commas outside <…> and "…".
        var values: [String] = []
        var current = ""
        var inTarget = false, inQuotes = false
        for c in header {
            switch c {
            case "<" where !inQuotes: inTarget = true
            case ">" where !inQuotes: inTarget = false
            case "\"" where !inTarget: inQuotes.toggle()
            case "," where !inTarget && !inQuotes:
                values.append(current)
                current = ""
                continue
            default: break
            }
            current.append(c)
        }
        values.append(current)
        for value in values {
            guard let open = value.firstIndex(of: "<"), let close = value[open...].firstIndex(of: ">") else { continue }
            let target = String(value[value.index(after: open)..<close])
            for param in value[value.index(after: close)...].split(separator: ";") {
                let pair = param.split(separator: "=", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces) }
                guard pair.count == 2, pair[0].lowercased() == "rel" else { continue }
                let rels = pair[1].trimmingCharacters(in: CharacterSet(charactersIn: "\"")).lowercased().split(separator: " ")
                if rels.contains("next") { return target }
            }
        }
        return nil
    }

    /// A next-page URL from a header or body, made absolute against the page it came from.
    func resolve(_ link: String, against url: String) -> String {
        if link.hasPrefix("http://") || link.hasPrefix("https://") { return link }
        return URL(string: link, relativeTo: URL(string: url))?.absoluteString ?? (origin + link)
    }

    func value(at pointer: [String], in document: JSON) -> JSON? {
        var value = document
        for token in pointer {
            switch value {
            case .object(let members): guard let child = members[token] else { return nil }; value = child
            case .array(let elements): guard let i = Int(token), elements.indices.contains(i) else { return nil }; value = elements[i]
            default: return nil
            }
        }
        return value
    }

    /// The first page's URL.
    func firstPage(since: JSON?, size: Int? = nil) -> String {
        var parameters: [(String, String)] = []
        if let since, let name = config.sinceParam { parameters.append((name, Self.parameter(since))) }
        let size = size ?? config.pageSize
        switch config.pagination {
        case .page, .link: parameters.append((config.pageParam, String(config.firstPage)))
        case .offset: parameters.append((config.offsetParam, "0"))
        case .none, .cursor, .nextURL: break
        }
        if let sizeParam = config.sizeParam { parameters.append((sizeParam, String(size))) }
        return Self.url(listURL, adding: parameters)
    }

    /// Reads the pages of the list (those after `since`, with `since_param`), one per ``Pages/records()``.
    ///
    /// The next page is fetched while the caller handles this one, so a run goes at the API's pace;
    /// a read dropped before its end cancels that request.
    final class Pages {
        let endpoint: RESTEndpoint
        let since: JSON?
        var next: String?
        var pending: Task<HTTPTransport.Response, any Error>?
        var page: Int
        var offset = 0
        var visited: Set<String> = []
        var previousFirstKey: String? = nil
        var started = false

        init(_ endpoint: RESTEndpoint, since: JSON?) {
            self.endpoint = endpoint
            self.since = since
            next = endpoint.firstPage(since: since)
            page = endpoint.config.firstPage
        }

        deinit { pending?.cancel() }

        private func fetch(_ url: String) -> Task<HTTPTransport.Response, any Error> {
            let http = endpoint.http
            return Task { try await http.send(.GET, url) }
        }

        /// The records of the next page that has any; nil after the last page.
        func records() async throws -> [[String: JSON]]? {
            if !started {
                started = true
                pending = next.map(fetch)
            }
            let endpoint = endpoint
            let config = endpoint.config
            let http = endpoint.http
            let options = endpoint.options
            let displayName = endpoint.displayName
            while let url = next, let task = pending {
                let response = try await task.value
                pending = nil
                guard response.status == 200 else { throw endpoint.failure(response, "GET \(http.redact(url))") }
                let document = try endpoint.document(response, url)
                let records = try endpoint.records(in: document, url: url)
                if let first = records.first, let key = first[options.keyField].flatMap(RecordKey.init)?.text {
                    // An API that ignores the page parameter would hand out page one forever.
                    if config.pagination == .page || config.pagination == .offset, key == previousFirstKey {
                        throw SyncError(.protocolError, "\(displayName): GET \(http.redact(url)) answered the same records as the page before; does the API take \(config.pagination == .page ? "page_param=\(config.pageParam)" : "offset_param=\(config.offsetParam)")?")
                    }
                    previousFirstKey = key
                }
                switch config.pagination {
                case .none:
                    if RESTEndpoint.nextLink(response.header("Link")) != nil {
                        throw SyncError(.protocolError, "\(displayName): GET \(http.redact(url)) has a Link rel=\"next\" header, so the list has more pages: set pagination=link")
                    }
                    next = nil
                case .page:
                    page += 1
                    var parameters = [(config.pageParam, String(page))]
                    if let since, let name = config.sinceParam { parameters.insert((name, RESTEndpoint.parameter(since)), at: 0) }
                    if let sizeParam = config.sizeParam { parameters.append((sizeParam, String(config.pageSize))) }
                    next = records.isEmpty ? nil : RESTEndpoint.url(endpoint.listURL, adding: parameters)
                case .offset:
                    offset += records.count
                    var parameters = [(config.offsetParam, String(offset))]
                    if let since, let name = config.sinceParam { parameters.insert((name, RESTEndpoint.parameter(since)), at: 0) }
                    if let sizeParam = config.sizeParam { parameters.append((sizeParam, String(config.pageSize))) }
                    next = records.isEmpty ? nil : RESTEndpoint.url(endpoint.listURL, adding: parameters)
                case .cursor:
                    let token: String?
                    switch endpoint.value(at: config.nextCursor, in: document) {
                    case .string(let s)? where !s.isEmpty: token = s
                    case .int(let i)?: token = String(i)
                    case nil, .null?, .string?: token = nil
                    case let other?:
                        throw SyncError(.protocolError, "\(displayName): GET \(http.redact(url)): the next cursor at /\(config.nextCursor.joined(separator: "/")) is \(RESTEndpoint.article(other.typeName)), expected a string")
                    }
                    if let token, !records.isEmpty {
                        var parameters = [(config.cursorParam, token)]
                        if let since, let name = config.sinceParam { parameters.insert((name, RESTEndpoint.parameter(since)), at: 0) }
                        if let sizeParam = config.sizeParam { parameters.append((sizeParam, String(config.pageSize))) }
                        next = RESTEndpoint.url(endpoint.listURL, adding: parameters)
                    } else {
                        next = nil
                    }
                case .link:
                    next = RESTEndpoint.nextLink(response.header("Link")).map { endpoint.resolve($0, against: url) }
                case .nextURL:
                    switch endpoint.value(at: config.nextURL, in: document) {
                    case .string(let s)? where !s.isEmpty: next = endpoint.resolve(s, against: url)
                    case nil, .null?, .string?: next = nil
                    case let other?:
                        throw SyncError(.protocolError, "\(displayName): GET \(http.redact(url)): the next page at /\(config.nextURL.joined(separator: "/")) is \(RESTEndpoint.article(other.typeName)), expected a URL")
                    }
                }
                if let following = next, config.pagination == .cursor || config.pagination == .link || config.pagination == .nextURL {
                    guard visited.insert(following).inserted else {
                        throw SyncError(.protocolError, "\(displayName): pagination came back to \(http.redact(following)); the API's next page does not advance")
                    }
                }
                pending = next.map(fetch)
                if !records.isEmpty { return records }
            }
            return nil
        }
    }

    // MARK: - Endpoint

    public func open(forWriting: Bool) async throws {
        // One small page proves the address and the credentials, and for reading the
        // shape of the answers (a target that is only written needs no read settings).
        let url = firstPage(since: nil, size: 1)
        let response = try await http.send(.GET, url)
        guard response.status == 200 else { throw failure(response, "GET \(http.redact(url))") }
        if !forWriting { _ = try records(in: try document(response, url), url: url) }
    }

    public func estimatedCount() async throws -> Int? { nil }

    public func readAll(batchSize: Int) throws -> SourceBatches {
        SourceBatches { AllReader(pages: Pages(self, since: nil)) }
    }

    /// Every record, a page per batch.
    final class AllReader: BatchReader {
        let pages: Pages
        init(pages: Pages) { self.pages = pages }

        func next() async throws -> SourceBatch? {
            try await pages.records().map { SourceBatch($0.map { .record($0) }) }
        }
    }

    public func readChanges(after cursor: Cursor?, batchSize: Int) throws -> SourceBatches {
        guard let field = options.cursorField else {
            throw SyncError.badInput("\(displayName): an incremental read needs --cursor-field, the API's updated-at field (or use --mode diff)")
        }
        guard config.sinceParam != nil else {
            throw SyncError.badInput("\(displayName): an incremental read needs since_param, the query parameter asking for records whose \(field) is at least a value (e.g. --source-rest since_param=updated_since); without one, use --mode diff")
        }
        var start: JSON? = nil
        switch cursor {
        case nil: break
        case .compound(let value, _)?: start = value
        case .since?:
            throw SyncError.badInput("\(displayName): the saved checkpoint is a server timestamp, not a \(field) value; run once with --reset")
        }
        return SourceBatches { [start] in ChangeReader(endpoint: self, field: field, after: cursor, start: start) }
    }

    /// The records changed since the checkpoint, a page per batch.
    final class ChangeReader: BatchReader {
        let endpoint: RESTEndpoint
        let field: String
        let start: JSON?
        let pages: Pages
        // Unsorted answers: values compare by JSON.cursorOrder, not by where they come.
        var checkpoint: ValueCheckpoint
        var previous: JSON? = nil
        var done = false

        init(endpoint: RESTEndpoint, field: String, after cursor: Cursor?, start: JSON?) {
            self.endpoint = endpoint
            self.field = field
            self.start = start
            pages = Pages(endpoint, since: start)
            checkpoint = ValueCheckpoint(after: cursor, keyField: endpoint.options.keyField, sorted: false)
        }

        func next() async throws -> SourceBatch? {
            guard !done else { return nil }
            let keyField = endpoint.options.keyField
            let sorted = endpoint.config.sorted
            let displayName = endpoint.displayName
            while let records = try await pages.records() {
                var items: [SourceItem] = []
                items.reserveCapacity(records.count)
                for fields in records {
                    guard let value = fields[field], value != .null else {
                        throw SyncError(.protocolError, "\(displayName): a record without \(field): \(JSON.object(fields).serialized().prefix(200)); is --cursor-field right?")
                    }
                    if sorted, let previous, JSON.cursorOrder(value, previous) < 0 {
                        throw SyncError(.protocolError, "\(displayName): the records are not sorted by \(field) (\(value.serialized()) came after \(previous.serialized())); remove sorted=true")
                    }
                    previous = value
                    guard let key = fields[keyField].flatMap(RecordKey.init) else {
                        items.append(.record(fields))  // the engine dead-letters it
                        continue
                    }
                    if checkpoint.take(value: value, key: key, fields: fields) { items.append(.record(fields)) }
                }
                // Sorted answers: everything before this page's last value is done.
                var pageCheckpoint: Cursor? = nil
                if sorted, let previous, start.map({ JSON.cursorOrder(previous, $0) > 0 }) ?? true {
                    pageCheckpoint = .compound(value: previous, key: .string(""))
                }
                if !items.isEmpty || pageCheckpoint != nil { return SourceBatch(items, cursor: pageCheckpoint) }
            }
            done = true
            // The end: the newest value with the hash of every record that has it, so the next
            // run (which asks for ≥ that value) skips exactly those and still takes a record
            // that gets the same value later.
            return checkpoint.end.map { SourceBatch([], cursor: $0) }
        }
    }

    public func makeWriter(job: String) async throws -> any TargetWriter {
        RESTWriter(calls: RESTCalls(endpoint: self))
    }

    public func close() async {}
}

extension RESTEndpoint: RetryingEndpoint {}
