import AsyncHTTPClient
public import FerryCore
import Foundation
import NIOHTTP1

/// `http(s)://HOST[:PORT]/…/v1/buckets/B/collections/C`: a collection on a Ferry or Kinto server.
///
/// Reads follow the change feed (`_since`, `_sort=last_modified`), so every page ends at a
/// timestamp that is a safe place to resume; deletes arrive as tombstones. Writes go
/// through `/batch` in groups of the server's `batch_max_requests`, each record a `PUT`
/// (an idempotent upsert) and each delete a `DELETE` (a 404 means already gone).
/// The server's `last_modified` is metadata, not data: it is dropped from records.
public final class KintoEndpoint: Endpoint {
    /// The API root, e.g. `http://127.0.0.1:8888/v1`.
    public let root: String
    public let bucket: String
    public let collection: String
    let options: EndpointOptions
    let http: HTTPTransport
    var batchMaxRequests = 25
    /// Largest request body the server takes (a Ferry server says; 1 MiB for one that does not).
    var maxBodySize = 1 << 20
    /// The most records the server puts in a page (`storage_max_fetch_size`), when it says.
    var maxFetchSize: Int?
    /// What records' `attachment.location` is relative to (`capabilities.attachments.base_url`), when the server has attachments.
    var attachmentBaseURL: String?
    /// Whether the server announces reconciliation (`capabilities.reconcile`) in the version Ferry speaks.
    var reconciles = false
    /// Cancels, and waits for, the request for the next page of the last read (``FeedPages``).
    var settleReadAhead: (() async -> Void)? = nil
    public let displayName: String
    /// Engine batches of several server batches, so that several can be in flight (``KintoWriter``).
    public var preferredBatchSize: Int? { 10_000 }

    /// - Parameter url: the collection's URL, without credentials (give them in `options.auth`).
    init(url: String, options: EndpointOptions, client: HTTPClient) throws(SyncError) {
        guard let range = url.range(of: "/buckets/") else {
            throw .badInput("\(url): a server endpoint must name a collection: http(s)://HOST/v1/buckets/BUCKET/collections/COLLECTION")
        }
        let parts = url[range.upperBound...].split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 3, parts[1] == "collections", !parts[0].isEmpty, !parts[2].isEmpty else {
            throw .badInput("\(url): a server endpoint must end with /buckets/BUCKET/collections/COLLECTION")
        }
        for id in [parts[0], parts[2]] where !id.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" }) || !id.allSatisfy(\.isASCII) {
            throw .badInput("\(url): \"\(id)\" is not a valid bucket or collection id (letters, digits, - and _)")
        }
        root = String(url[..<range.lowerBound])
        bucket = String(parts[0])
        collection = String(parts[2])
        self.options = options
        displayName = url
        let origin = URL(string: url).map { "\($0.scheme ?? "http")://\($0.host ?? "?")\($0.port.map { ":\($0)" } ?? "")" } ?? url
        http = HTTPTransport(client: client, policy: options.retry, credentials: try HTTPTransport.Credentials.parse(options.auth), origin: origin)
    }

    var collectionPath: String { "/buckets/\(bucket)/collections/\(collection)" }
    var recordsURL: String { root + collectionPath + "/records" }
    var retries: Int { http.retries }

    /// A failed answer as one line: what the server said and what to do.
    func failure(_ response: HTTPTransport.Response, _ doing: String) -> SyncError {
        Self.failure(response, displayName, doing)
    }

    static func failure(_ response: HTTPTransport.Response, _ displayName: String, _ doing: String) -> SyncError {
        let message = (try? JSON.parse(bytes: response.body))?["message"]?.stringValue
        return HTTPTransport.failure(status: response.status, endpoint: displayName, peer: "server", context: "while \(doing)", said: message)
    }

    func json(_ response: HTTPTransport.Response, _ doing: String) throws -> JSON {
        try Self.json(response, displayName, doing)
    }

    static func json(_ response: HTTPTransport.Response, _ displayName: String, _ doing: String) throws -> JSON {
        do {
            return try JSON.parse(bytes: response.body)
        } catch {
            throw SyncError(.protocolError, "\(displayName): the answer to \(doing) is not JSON (\(error)); is this a Ferry or Kinto server?")
        }
    }

    public func open(forWriting: Bool) async throws {
        let hello = try await http.send(.GET, root + "/")
        guard hello.status == 200 else { throw failure(hello, "reading the server's root \(root)/") }
        let info = try json(hello, "GET \(root)/")
        guard info["settings"] != nil else {
            throw SyncError(.protocolError, "\(displayName): \(root)/ does not look like a Kinto API root (no settings)")
        }
        if let n = info["settings"]?["batch_max_requests"]?.intValue, n > 0 { batchMaxRequests = Int(n) }
        if let n = info["settings"]?["max_body_size"]?.intValue, n >= 1024 { maxBodySize = Int(n) }
        if let n = info["settings"]?["storage_max_fetch_size"]?.intValue, n > 0 { maxFetchSize = Int(n) }
        if let base = info["capabilities"]?["attachments"]?["base_url"]?.stringValue, !base.isEmpty {
            attachmentBaseURL = base.hasSuffix("/") ? base : base + "/"
        }
        reconciles = info["capabilities"]?["reconcile"]?["version"]?.intValue == Int64(ReconcileMessage.version)
        let probe = try await http.send(.GET, root + collectionPath)
        if probe.status == 200 { return }
        guard forWriting, probe.status == 403 || probe.status == 404 else {
            throw failure(probe, "opening the collection")
        }
        // A missing bucket or collection is created (the server says 403 for both "missing" and "forbidden").
        for path in ["/buckets/\(bucket)", collectionPath] {
            let created = try await http.send(.PUT, root + path, body: Array(#"{"data":{}}"#.utf8), headers: [("If-None-Match", "*")])
            guard created.status == 201 || created.status == 200 || created.status == 412 else {
                throw failure(created, "creating \(path)")
            }
        }
    }

    public func estimatedCount() async throws -> Int? {
        let response = try await http.send(.HEAD, recordsURL)
        guard response.status == 200 else { return nil }
        return (response.header("Total-Objects") ?? response.header("Total-Records")).flatMap { Int($0) }
    }

    public func readAll(batchSize: Int) throws -> SourceBatches {
        let changes = try readChanges(after: nil, batchSize: batchSize)
        return SourceBatches { AllReader(changes: changes.makeAsyncIterator()) }
    }

    /// The live records of the feed from the start; each batch carries the page's timestamp
    /// (even a page of tombstones alone, as an empty batch), so the last is where the read ended.
    final class AllReader: BatchReader {
        var changes: SourceBatches.Iterator
        init(changes: SourceBatches.Iterator) { self.changes = changes }

        func next() async throws -> SourceBatch? {
            guard var batch = try await changes.next() else { return nil }
            batch.items.removeAll { if case .record = $0 { false } else { true } }
            return batch
        }
    }

    public func readChanges(after cursor: Cursor?, batchSize: Int) throws -> SourceBatches {
        let since: Int64
        switch cursor {
        case nil: since = 0
        case .since(let t)?: since = t
        case .compound?:
            throw SyncError.badInput("\(displayName): the saved checkpoint is a table cursor, not a server timestamp; run once with --reset")
        }
        let feed = Feed(http: http, recordsURL: recordsURL, displayName: displayName, options: options, batchSize: batchSize)
        return SourceBatches { ChangeReader(pages: FeedPages(self, from: since) { try await feed.page(since: $0) }) }
    }

    /// The changes of the feed, a page per batch, each with its timestamp as the cursor.
    final class ChangeReader: BatchReader {
        let pages: FeedPages<Feed.Page>
        init(pages: FeedPages<Feed.Page>) { self.pages = pages }

        func next() async throws -> SourceBatch? {
            try await pages.next().map { SourceBatch($0.items, cursor: .since($0.last)) }
        }
    }

    /// The change feed as the server sent it, page by page (``Feed/RawPage``), for a target that
    /// writes records from their text (``SQLiteWriter/load(_:from:run:)``).
    ///
    /// The first page has `batchSize` records (a new table's columns and their types are decided
    /// on it, as the engine's path decides them on its first batch); later pages `pageSize`
    /// (a server answers with fewer when it caps its pages, and says there is more).
    func rawChanges(after since: Int64, batchSize: Int, pageSize: Int) -> FeedPages<Feed.RawPage> {
        let first = Feed(http: http, recordsURL: recordsURL, displayName: displayName, options: options, batchSize: batchSize)
        let later = Feed(http: http, recordsURL: recordsURL, displayName: displayName, options: options, batchSize: pageSize)
        return FeedPages(self, from: since) { [since] in try await ($0 == since ? first : later).rawPage(since: $0) }
    }

    /// Records per later page of ``rawChanges(after:batchSize:pageSize:)`` when the job names no
    /// `--batch-size`: as many as the server puts in a page (`storage_max_fetch_size`), up to
    /// ``feedPageSize``, and never fewer than `batchSize`. Measured on a full read of 200,000
    /// records into SQLite: pages of 5,000 instead of the target's 1,000 took 0.73x the engine's
    /// CPU (fewer requests, commits and checkpoints).
    func rawPageSize(batchSize: Int) -> Int {
        max(batchSize, min(Self.feedPageSize, maxFetchSize ?? Self.feedPageSize))
    }

    /// Kinto's default `storage_max_fetch_size`; two pages of it (the one written and the next,
    /// read ahead) are a few MB of text.
    static let feedPageSize = 10_000

    /// The pages of the feed from `since` in order, each read when asked for.
    ///
    /// The next page is asked for while the engine writes this one: its `_since` is known as
    /// soon as this page is parsed, and the server and the target then work at the same time
    /// instead of taking turns (on two cores, the full read's time was the sum of both).
    /// Dropped before its end, it cancels that request; ``KintoEndpoint/close()`` waits for it
    /// (no request outlives the read: the client may close next).
    final class FeedPages<Page: FeedPage> {
        let endpoint: KintoEndpoint
        let fetch: @Sendable (Int64) async throws -> Page?
        var since: Int64?
        var pending: Task<Page?, any Error>? = nil

        init(_ endpoint: KintoEndpoint, from since: Int64, fetch: @escaping @Sendable (Int64) async throws -> Page?) {
            self.endpoint = endpoint
            self.since = since
            self.fetch = fetch
        }

        deinit { pending?.cancel() }

        /// The next page; nil after the last.
        func next() async throws -> Page? {
            let page: Page?
            if let pending {
                self.pending = nil
                page = try await pending.value
            } else if let since {
                self.since = nil
                page = try await fetch(since)
            } else {
                return nil
            }
            guard let page else { return nil }
            if page.more {
                let fetch = fetch
                let next = Task { [since = page.last] in try await fetch(since) }
                pending = next
                endpoint.settleReadAhead = {
                    next.cancel()
                    _ = try? await next.value
                }
            }
            return page
        }
    }

    /// One page of the change feed at a time; ``Sendable``, so the next page can be fetched in a
    /// task of its own while the current one is written.
    struct Feed: Sendable {
        let http: HTTPTransport
        let recordsURL: String
        let displayName: String
        let options: EndpointOptions
        let batchSize: Int

        struct Page: FeedPage {
            var items: [SourceItem]
            /// The newest `last_modified` of the page: where the next one starts.
            var last: Int64
            /// Whether the server said there is a next page (`Next-Page`).
            var more: Bool
        }

        /// A page of the feed as the server sent it: the text of each record, read without
        /// building it (measured: parsing pages into dictionaries was a sixth of a full read).
        struct RawPage: FeedPage {
            var body: [UInt8]
            /// Where each element of `data` is in `body`, in order.
            var elements: [Range<Int>]
            /// Which elements are tombstones (`"deleted": true`).
            var tombstones: [Bool]
            /// The newest `last_modified` of the page: where the next one starts.
            var last: Int64
            /// Whether the server said there is a next page (`Next-Page`).
            var more: Bool
        }

        /// The answer to the request for the changes after `since`, checked.
        private func fetch(since: Int64) async throws -> HTTPTransport.Response {
            let url = recordsURL + "?_since=\(since)&_sort=last_modified&_limit=\(batchSize)"
            let response = try await http.send(.GET, url)
            if response.status == 410, let body = try? JSON.parse(bytes: response.body), body["errno"]?.intValue == 124 {
                throw SyncError(.cursorExpired, "\(displayName): the server purged tombstones past the checkpoint \(since) (410): \(body["message"]?.stringValue ?? "")")
            }
            guard response.status == 200 else { throw KintoEndpoint.failure(response, displayName, "reading changes since \(since)") }
            return response
        }

        /// The changes after `since`, or nil when there are none.
        func page(since: Int64) async throws -> Page? {
            try page(of: try await fetch(since: since), since: since)
        }

        private func page(of response: HTTPTransport.Response, since: Int64) throws -> Page? {
            guard let data = try KintoEndpoint.json(response, displayName, "GET records")["data"]?.arrayValue else {
                throw SyncError(.protocolError, "\(displayName): the records list has no data array")
            }
            guard !data.isEmpty else { return nil }
            var items: [SourceItem] = []
            items.reserveCapacity(data.count)
            var last = since
            for element in data {
                let (item, modified) = try KintoEndpoint.item(element, displayName: displayName, options: options)
                last = max(last, modified)
                items.append(item)
            }
            try checkMoved(last, since: since)
            return Page(items: items, last: last, more: response.header("Next-Page") != nil)
        }

        private func checkMoved(_ last: Int64, since: Int64) throws {
            guard last > since else {
                throw SyncError(.protocolError, "\(displayName): the change feed did not move past \(since); is _sort=last_modified honoured?")
            }
        }

        /// The changes after `since` as their text, or nil when there are none; the same checks
        /// and errors as ``page(since:)``.
        func rawPage(since: Int64) async throws -> RawPage? {
            let response = try await fetch(since: since)
            var body = response.body
            var split = Self.split(body, since: since)
            if split == nil {
                // Not a page the walk takes (not JSON, not records, a member given twice): what a
                // parse makes of it, written out again; or the error of the engine's reader.
                guard let data = try KintoEndpoint.json(response, displayName, "GET records")["data"]?.arrayValue else {
                    throw SyncError(.protocolError, "\(displayName): the records list has no data array")
                }
                body = JSON.object(["data": .array(data)]).serializedBytes()
                split = Self.split(body, since: since)
                if split == nil {
                    _ = try page(of: response, since: since)
                    throw SyncError(.protocolError, "\(displayName): a page of \(data.count) changes could not be read")
                }
            }
            guard let (elements, tombstones, last) = split, !elements.isEmpty else { return nil }
            try checkMoved(last, since: since)
            return RawPage(body: body, elements: elements, tombstones: tombstones, last: last, more: response.header("Next-Page") != nil)
        }

        /// Where each record of a page's `data` is, which are tombstones, and the newest
        /// `last_modified` (at least `since`); nil when the page is not one ``scan(_:)`` takes whole.
        static func split(_ body: [UInt8], since: Int64) -> ([Range<Int>], [Bool], Int64)? {
            struct NotARecord: Error {}
            var elements: [Range<Int>] = []
            var tombstones: [Bool] = []
            var last = since
            let found = try? body.withUnsafeBytes { buffer in
                try JSON.forEachElement(ofArrayMember: "data", inObject: buffer) { element in
                    guard let (modified, deleted) = try scan(element) else { throw NotARecord() }
                    let start = element.baseAddress! - buffer.baseAddress!
                    elements.append(start..<(start + element.count))
                    tombstones.append(deleted)
                    last = max(last, modified)
                }
            }
            return found == true ? (elements, tombstones, last) : nil
        }

        /// A record's `last_modified` and whether it is a tombstone; nil when it lacks `id` or
        /// `last_modified` (``KintoEndpoint/item(_:displayName:options:)`` refuses it).
        private static func scan(_ element: UnsafeRawBufferPointer) throws -> (Int64, Bool)? {
            var modified: Int64? = nil
            var deleted = false
            var hasID = false
            guard try JSON.forEachMember(ofObject: element, { name, value in
                if name.equals(lastModifiedName) {
                    modified = switch value {
                    case .int(let i): i
                    case .double(let d): JSON.double(d).intValue
                    default: nil
                    }
                } else if name.equals(idName) {
                    hasID = true
                } else if name.equals(deletedName) {
                    if case .bool(let b) = value { deleted = b } else { deleted = false }
                }
                return true
            }), hasID, let modified else { return nil }
            return (modified, deleted)
        }

        static let lastModifiedName = Array("last_modified".utf8)
        private static let idName = Array("id".utf8)
        private static let deletedName = Array("deleted".utf8)
    }

    /// A record (or tombstone) of a list as the engine reads it, with its `last_modified`:
    /// the server's timestamp is metadata, not data.
    func item(_ element: JSON) throws -> (SourceItem, Int64) {
        try Self.item(element, displayName: displayName, options: options)
    }

    static func item(_ element: JSON, displayName: String, options: EndpointOptions) throws -> (SourceItem, Int64) {
        guard case .object(var fields) = element, let id = fields["id"], let modified = fields["last_modified"]?.intValue else {
            throw SyncError(.protocolError, "\(displayName): a record without id or last_modified: \(element.serialized().prefix(200))")
        }
        if fields["deleted"] == .bool(true) { return (.deleted(key: id), modified) }
        fields.removeValue(forKey: "last_modified")
        if let versionField = options.versionField { fields[versionField] = .int(modified) }
        if options.keyField != "id" { fields.removeValue(forKey: "id") }
        return (.record(fields), modified)
    }

    public func makeWriter(job: String) async throws -> any TargetWriter {
        KintoWriter(endpoint: self)
    }

    public func close() async {
        // A read dropped before its end may have the request for its next page in flight.
        await settleReadAhead?()
        settleReadAhead = nil
    }

    static func escape(_ id: String) -> String {
        // The ids Kinto accepts need no escaping: skip building a character set for each record.
        if id.utf8.allSatisfy({ $0.isASCIIAlphanumericOrDashUnderscore }) { return id }
        return id.addingPercentEncoding(withAllowedCharacters: allowed) ?? id
    }

    private static let allowed = CharacterSet.alphanumerics.union(CharacterSet(charactersIn: "-_"))
}

/// What ``KintoEndpoint``'s reader of the change feed needs of a page.
protocol FeedPage: Sendable {
    /// The newest `last_modified` of the page: where the next one starts.
    var last: Int64 { get }
    /// Whether the server said there is a next page (`Next-Page`).
    var more: Bool { get }
}

/// Writes through `/batch`: each batch of the engine goes as requests of `batch_max_requests`
/// sub-requests, several in flight at once when no key appears twice in it (then no two
/// requests can race for one record; with repeated keys they go one after the other, in order).
final class KintoWriter: TargetWriter {
    let endpoint: KintoEndpoint
    /// Where the files of records' attachments come from (a Ferry or Kinto source); nil: records go as plain data.
    var attachmentSource: (any AttachmentSource)?
    init(endpoint: KintoEndpoint) { self.endpoint = endpoint }
    /// What a two-way run read of the records it is about to change: key → version (nil: absent).
    var expected: [String: Int64?] = [:]

    func expect(key: RecordKey, exists: Bool, version: Int64?, hash: String?) {
        if exists, version == nil { return }
        expected[key.text] = exists ? version : .some(nil)
    }

    /// Requests in flight at once: the server works on one while the next is sent and parsed.
    static let inFlight = 3

    var commitsEachBatch: Bool { true }
    var keepsCheckpoint: Bool { false }
    func storedCursor() async throws -> Cursor? { nil }
    func finish(cursor: Cursor?) async throws -> ApplyOutcome { ApplyOutcome() }

    func apply(_ changes: [Change], cursor: Cursor?) async throws -> ApplyOutcome {
        // Records with a file go one by one after the batch (a later change of the same key in
        // this batch wins, so an earlier one with a file is dropped; one without goes in the batch).
        var lastIndex: [RecordKey: Int] = [:]
        for (i, change) in changes.enumerated() { lastIndex[change.key] = i }
        var withFiles: [Change] = []
        var plain: [Change] = []
        for (i, change) in changes.enumerated() {
            if carriesAttachment(change) {
                if lastIndex[change.key] == i { withFiles.append(change) }
            } else {
                plain.append(change)
            }
        }
        var outcome = try await applyPlain(plain)
        for change in withFiles { await applyWithAttachment(change, into: &outcome) }
        return outcome
    }

    func applyPlain(_ changes: [Change]) async throws -> ApplyOutcome {
        guard !changes.isEmpty else { return ApplyOutcome() }
        let sender = BatchSender(endpoint, expected: expected)
        expected = [:]
        // Requests of at most batch_max_requests sub-requests and max_body_size bytes (a larger
        // body would be refused whole with 413); a sub-request larger than that goes alone.
        let requests = changes.map(sender.request)
        var chunks: [Range<Int>] = []
        var start = 0
        var bytes = 0
        for (index, request) in requests.enumerated() {
            let full = index - start == endpoint.batchMaxRequests || (index > start && bytes + request.count + 1 > endpoint.maxBodySize - 64)
            if full {
                chunks.append(start..<index)
                start = index
                bytes = 0
            }
            bytes += request.count + 1
        }
        if start < changes.count { chunks.append(start..<changes.count) }
        let parallel = chunks.count > 1 && Set(changes.lazy.map(\.key)).count == changes.count ? Self.inFlight : 1
        var outcome = ApplyOutcome()
        try await withThrowingTaskGroup(of: ApplyOutcome.self) { group in
            var next = 0
            func add() {
                let chunk = chunks[next]
                next += 1
                group.addTask {
                    var part = ApplyOutcome()
                    try await sender.send(changes[chunk], requests: requests[chunk], into: &part)
                    return part
                }
            }
            while next < min(parallel, chunks.count) { add() }
            while let part = try await group.next() {
                outcome.add(part)
                if next < chunks.count { add() }
            }
        }
        return outcome
    }
}

/// What sending one `/batch` needs, shared by the requests in flight.
struct BatchSender: Sendable {
    let http: HTTPTransport
    let root: String
    let collectionPath: String
    let keyField: String
    let retry: RetryPolicy
    let displayName: String
    /// Conditions of two-way writes: key → the version the record must still have (nil: it must still be absent).
    let expected: [String: Int64?]

    init(_ endpoint: KintoEndpoint, expected: [String: Int64?] = [:]) {
        self.expected = expected
        http = endpoint.http
        root = endpoint.root
        collectionPath = endpoint.collectionPath
        keyField = endpoint.options.keyField
        retry = endpoint.options.retry
        displayName = endpoint.displayName
    }

    /// The sub-request of one change, serialized (its members in no particular order: only
    /// nested values are written canonically, as the server reads them the same either way).
    func request(_ change: Change) -> [UInt8] {
        var out: [UInt8] = Array(#"{"path":"#.utf8)
        JSON.writeString(collectionPath + "/records/" + KintoEndpoint.escape(change.key.text), to: &out)
        switch change {
        case .upsert(let record):
            out.append(contentsOf: #","method":"PUT","body":{"data":{"#.utf8)
            var first = true
            for (name, value) in record.fields where name != "last_modified" && !(name == "id" && keyField == "id") {
                if !first { out.append(UInt8(ascii: ",")) }
                first = false
                JSON.writeString(name, to: &out)
                out.append(UInt8(ascii: ":"))
                value.write(to: &out)
            }
            out.append(contentsOf: "}}".utf8)
        case .delete:
            out.append(contentsOf: #","method":"DELETE""#.utf8)
        }
        switch expected[change.key.text] {
        case .some(.some(let version)): out.append(contentsOf: #","headers":{"If-Match":"\"\#(version)\""}"#.utf8)
        case .some(.none): out.append(contentsOf: #","headers":{"If-None-Match":"*"}"#.utf8)
        case .none: break
        }
        out.append(UInt8(ascii: "}"))
        return out
    }

    /// Sends `changes` in one `/batch`; `requests` are their sub-requests when already serialized.
    func send(_ changes: ArraySlice<Change>, requests: ArraySlice<[UInt8]>? = nil, into outcome: inout ApplyOutcome, attempt: Int = 1) async throws {
        var body: [UInt8] = Array(#"{"requests":["#.utf8)
        for (i, change) in changes.enumerated() {
            if i > 0 { body.append(UInt8(ascii: ",")) }
            if let requests { body.append(contentsOf: requests[requests.startIndex + i]) } else { body.append(contentsOf: request(change)) }
        }
        body.append(contentsOf: "]}".utf8)
        // Only each answer's status is read (and an error's body): a Ferry server then leaves
        // the records out of its answer (RFC 7240); a Kinto server ignores the preference.
        let response = try await http.send(.POST, root + "/batch", body: body, headers: [("Prefer", "return=minimal")])
        guard response.status == 200 else { throw KintoEndpoint.failure(response, displayName, "sending a batch of \(changes.count)") }
        let answers = try Self.answers(response, displayName)
        guard answers.count == changes.count else {
            throw SyncError(.protocolError, "\(displayName): /batch did not answer each of the \(changes.count) requests")
        }
        var again: [Change] = []
        for (change, (status, body)) in zip(changes, answers) {
            switch (change, status) {
            case (.upsert, 201): outcome.created += 1
            case (.upsert, 200): outcome.updated += 1
            case (.delete, 200): outcome.deleted += 1
            case (.delete, 404): outcome.alreadyGone += 1
            case (_, 412) where expected[change.key.text] != nil: outcome.changedMeanwhile.append(change.key)
            case (_, let s) where RetryPolicy.isRetryable(status: s) && attempt < retry.maxAttempts:
                again.append(change)
            default:
                let message = body?["message"]?.stringValue ?? body?.serialized() ?? ""
                outcome.rejected.append((change, "\(displayName) answered \(status): \(message)"))
            }
        }
        if !again.isEmpty {
            // Sub-requests the server could not do now (each is idempotent, so sending again is safe).
            let delay = retry.delay(afterAttempt: attempt, retryAfter: nil, random: Double.random(in: 0...1)) ?? 1
            try await Task.sleep(nanoseconds: UInt64(delay * 1e9))
            try await send(again[...], into: &outcome, attempt: attempt + 1)
        }
    }

    /// Each answer's status, and its body when it is not a success: read from the batch's answer
    /// without building the records it carries back (a thousand of them).
    static func answers(_ response: HTTPTransport.Response, _ displayName: String) throws -> [(status: Int, body: JSON?)] {
        var answers: [(status: Int, body: JSON?)] = []
        let found: Bool
        do {
            // One pass (a walk to each answer's end and then through it again was a sixth of a
            // push's client CPU).
            found = try response.body.withUnsafeBytes { raw in
                var cursor = JSONCursor(raw)
                guard try cursor.enterObject() else { return false }
                var found = false
                while let name = try cursor.nextKey() {
                    guard name.equals(Self.responsesName) else {
                        _ = try cursor.skip()
                        continue
                    }
                    // A second list would win in a parse: the answers read were not the batch's.
                    guard !found, try cursor.enterArray() else { return false }
                    found = true
                    while try cursor.nextElement() {
                        guard try cursor.enterObject() else {
                            _ = try cursor.skip()
                            answers.append((0, nil))
                            continue
                        }
                        var status = 0
                        var body: Range<Int>?
                        while let name = try cursor.nextKey() {
                            if name.equals(Self.statusName) {
                                status = Int(try cursor.value(maxDepth: JSON.defaultMaxDepth).intValue ?? 0)
                            } else if name.equals(Self.bodyName) {
                                body = try cursor.skip()
                            } else {
                                _ = try cursor.skip()
                            }
                        }
                        answers.append((status, (200..<300).contains(status) ? nil : try body.map { try JSON.parse(UnsafeRawBufferPointer(rebasing: raw[$0])) }))
                    }
                }
                try cursor.finish()
                return found
            }
        } catch {
            throw SyncError(.protocolError, "\(displayName): the answer to POST /batch is not JSON (\(error)); is this a Ferry or Kinto server?")
        }
        guard found else { throw SyncError(.protocolError, "\(displayName): the answer to POST /batch has no list of responses") }
        return answers
    }

    private static let responsesName = Array("responses".utf8), statusName = Array("status".utf8), bodyName = Array("body".utf8)
}

extension UInt8 {
    /// `A-Z`, `a-z`, `0-9`, `-` or `_`.
    var isASCIIAlphanumericOrDashUnderscore: Bool {
        switch self {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
             UInt8(ascii: "-"), UInt8(ascii: "_"): true
        default: false
        }
    }
}
