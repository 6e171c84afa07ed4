import FerryCore
import FerryStore

/// A `/batch` whose every sub-request is a plain record `PUT` into one collection: what
/// `ferry sync` and Kinto's clients send to push records, a thousand at a time.
///
/// It gives the answers, rows, change feed and permissions of the general path (``KintoAPI/batch(_:)``,
/// `BulkWriteTests` compares the two), without that path's objects for each sub-request (a
/// request, a route, an operation, a memo look-up and an answer's headers): the records are
/// checked and serialized before the transaction, and in it each is one upsert and, when new,
/// its creator's `write` entry.
///
/// It is taken only when nothing can make a record's answer depend on more than its collection:
/// the caller may write the collection (so may create and replace any record in it), and no
/// sub-request carries headers other than preconditions (`If-Match`, `If-None-Match`, which
/// the batch itself does not carry), permissions, a `last_modified` or an `id` of its own.
/// Anything else goes the general way.
struct RecordPuts: Sendable {
    /// A class, not a struct: the writer takes each item out of the list once, and a struct's
    /// copy retained and released each of its six references (3 % of a push's server samples,
    /// on the single writer).
    final class Item: Sendable {
        /// The sub-request's path as answered (below `/v1`).
        let path: String
        let id: String
        let data: [String: JSON]
        let text: RecordText
        /// The sub-request's `If-Match` and `If-None-Match`, as sent.
        let ifMatch: String?
        let ifNoneMatch: String?

        init(path: String, id: String, data: [String: JSON], text: RecordText, ifMatch: String?, ifNoneMatch: String?) {
            self.path = path
            self.id = id
            self.data = data
            self.text = text
            self.ifMatch = ifMatch
            self.ifNoneMatch = ifNoneMatch
        }
    }

    /// The records' path (no id).
    let records: ObjectPath
    let items: [Item]

    /// Thrown in the transaction when what was checked before it no longer holds (the grant or
    /// the collection went meanwhile): nothing was written, and the batch goes the general way.
    struct Stale: Error {}

    /// What one sub-request did: the stored record and its permissions, or its error.
    enum Outcome: Sendable {
        case written(created: Bool, StoredObject, Permissions)
        case refused(KintoError)
    }
}

/// Gathers a batch's record `PUT`s one at a time, while each is one ``RecordPuts`` answers: its
/// path names a record of the same collection as the others, its data has no `id` nor
/// `last_modified`, and it has no headers but its preconditions.
struct RecordPutsBuilder {
    /// What a sub-request's path and headers say (its data is taken apart from them).
    struct Head: Sendable {
        let path: String
        let id: String
        let ifMatch: String?
        let ifNoneMatch: String?
    }

    private(set) var records: ObjectPath?
    private(set) var heads: [Head] = []
    /// The path before the id of the last record taken (as sent, with `/` at its end): the
    /// records of a batch mostly share it, and then only the id is decoded and checked.
    private var prefix: [UInt8] = []

    init(capacity: Int) { heads.reserveCapacity(capacity) }

    /// Takes one sub-request's path and headers; false when it is not one of these (the batch
    /// goes the general way). Its data is checked by ``item(_:_:)``.
    mutating func add(path rawPath: String, headers: [String: JSON]?) -> Bool {
        var ifMatch: String?
        var ifNoneMatch: String?
        for (name, value) in headers ?? [:] {
            guard let value = value.stringValue else { return false }
            switch name.lowercased() {
            case "if-match" where ifMatch == nil: ifMatch = value
            case "if-none-match" where ifNoneMatch == nil: ifNoneMatch = value
            default: return false
            }
        }
        var path = rawPath
        guard path.utf8.count <= 4096, !path.utf8.contains(UInt8(ascii: "?")) else { return false }
        if path.hasPrefix("/v1/") { path.removeFirst(3) }
        let id: String
        if records != nil, path.utf8.count > prefix.count, path.utf8.starts(with: prefix),
           !path.utf8.dropFirst(prefix.count).contains(UInt8(ascii: "/")) {
            id = APIRequest.percentDecode(Substring(path.utf8.dropFirst(prefix.count)))
            guard ObjectID.isValid(id) else { return false }
        } else {
            // As ``Route`` splits it (bytes, not characters: a thousand paths a batch).
            let segments = path.utf8.split(separator: UInt8(ascii: "/")).map { APIRequest.percentDecode(Substring($0)) }
            guard segments.count == 6, segments[0] == "buckets", segments[2] == "collections", segments[4] == "records",
                  segments[1] != "default", ObjectID.isValid(segments[1]), ObjectID.isValid(segments[3]), ObjectID.isValid(segments[5]) else { return false }
            if let records {
                guard records.bucket == segments[1], records.collection == segments[3] else { return false }
            } else {
                records = ObjectPath(kind: .record, bucket: segments[1], collection: segments[3])
            }
            // The prefix is taken only as a plain path writes it (no empty segment, nothing encoded).
            let last = path.utf8.lastIndex(of: UInt8(ascii: "/"))!
            let candidate = Array(path.utf8[...last])
            prefix = candidate.contains(UInt8(ascii: "%")) || candidate.contains(UInt8(ascii: "+"))
                || path.utf8.split(separator: UInt8(ascii: "/"), omittingEmptySubsequences: false).count != 7 ? [] : candidate
            id = segments[5]
        }
        heads.append(Head(path: path, id: id, ifMatch: ifMatch, ifNoneMatch: ifNoneMatch))
        return true
    }

    /// The put of `head` with `data`, serialized; nil when the data names its own `id` or
    /// `last_modified` (the general path answers those).
    static func item(_ head: Head, _ data: [String: JSON]) -> RecordPuts.Item? {
        guard data["id"] == nil, data["last_modified"] == nil else { return nil }
        return RecordPuts.Item(path: head.path, id: head.id, data: data, text: RecordText(data, hashedAs: head.id),
                               ifMatch: head.ifMatch, ifNoneMatch: head.ifNoneMatch)
    }

    /// The puts gathered with their data (one for each, in order), each serialized; nil when
    /// there were none or one does not qualify.
    func build(_ data: [[String: JSON]]) -> RecordPuts? {
        guard let records, !heads.isEmpty, data.count == heads.count else { return nil }
        var items: [RecordPuts.Item] = []
        items.reserveCapacity(heads.count)
        for (head, data) in zip(heads, data) {
            guard let item = Self.item(head, data) else { return nil }
            items.append(item)
        }
        return RecordPuts(records: records, items: items)
    }
}

extension KintoAPI {
    /// Whether a batch of this request may be answered by ``RecordPuts`` at all.
    func mayTakeRecordPuts(_ request: APIRequest) -> Bool {
        settings.bulkRecordWrites && !settings.readonly && request.headers["if-match"] == nil && request.headers["if-none-match"] == nil
    }

    /// The batch's record `PUT`s, when every sub-request is one this path answers as the general
    /// path would (nil: the general path answers).
    func recordPuts(_ items: [JSON], defaults: JSON, request: APIRequest) -> RecordPuts? {
        guard mayTakeRecordPuts(request) else { return nil }
        var builder = RecordPutsBuilder(capacity: items.count)
        var records: [[String: JSON]] = []
        records.reserveCapacity(items.count)
        for item in items {
            guard case .object(let members) = Self.mergeDefaults(defaults, into: item), members.count <= 4,
                  members.keys.allSatisfy({ $0 == "method" || $0 == "path" || $0 == "body" || $0 == "headers" }),
                  members["method"]?.stringValue?.uppercased() == "PUT", let path = members["path"]?.stringValue,
                  case .object(let body)? = members["body"], body.count == 1, case .object(let data)? = body["data"] else { return nil }
            var headers: [String: JSON]?
            if let given = members["headers"] {
                guard case .object(let given) = given else { return nil }
                headers = given
            }
            guard builder.add(path: path, headers: headers) else { return nil }
            records.append(data)
        }
        // Serialized once every sub-request is known to qualify (else the general path does it).
        return builder.build(records)
    }

    /// The batch's record `PUT`s read straight from the body's bytes, without building the
    /// batch's JSON (its objects, their copies merged with `defaults`, and freeing them were two
    /// thirds of preparing a push's batch): nil whenever the body is anything but a `requests`
    /// list of record `PUT`s (and `defaults` of at most `"method": "PUT"`), or is not valid JSON,
    /// or is deeper than this walk reads; the general parse then answers it, as before.
    ///
    /// The walk finds each record's data; parsing and serializing them (most of the work) is
    /// shared by two tasks in a large batch, so a lone batch has both cores.
    func scannedRecordPuts(_ request: APIRequest) async -> RecordPuts? {
        guard mayTakeRecordPuts(request), request.parsedBody == nil,
              let (builder, ranges) = Self.walkRecordPuts(request.body, maxRequests: settings.batchMaxRequests),
              let records = builder.records else { return nil }
        let heads = builder.heads
        let body = request.body
        let count = heads.count
        let parts = count >= Self.sharedPrepareCount ? [0..<count / 2, count / 2..<count] : [0..<count]
        var items: [[RecordPuts.Item]?] = await withTaskGroup(of: (Int, [RecordPuts.Item]?).self) { group in
            for (n, part) in parts.enumerated().dropFirst() {
                group.addTask { (n, Self.recordItems(body, heads, ranges, part)) }
            }
            var items: [[RecordPuts.Item]?] = Array(repeating: nil, count: parts.count)
            items[0] = Self.recordItems(body, heads, ranges, parts[0])
            for await (n, part) in group { items[n] = part }
            return items
        }
        guard items.allSatisfy({ $0 != nil }) else { return nil }
        // The first part taken out, so that it is extended in place (copying every item, as a
        // flatMap does, was 4 % of a push's server CPU).
        var all = items[0]!
        items[0] = nil
        for part in items.dropFirst() { all.append(contentsOf: part!) }
        return RecordPuts(records: records, items: all)
    }

    /// Records from which a batch's data is parsed by two tasks.
    static let sharedPrepareCount = 200

    /// The walk of ``scannedRecordPuts(_:)``: each sub-request's path and headers, and where its
    /// data is in `body`; nil when the body is not one it takes. One pass (``JSONCursor``): the
    /// records' data is only skipped here, parsed by ``recordItems(_:_:_:_:)``.
    static func walkRecordPuts(_ body: [UInt8], maxRequests: Int) -> (RecordPutsBuilder, [Range<Int>])? {
        try? body.withUnsafeBytes { (buffer: UnsafeRawBufferPointer) -> (RecordPutsBuilder, [Range<Int>])? in
            var cursor = JSONCursor(buffer)
            guard try cursor.enterObject() else { return nil }
            var builder = RecordPutsBuilder(capacity: 1000)
            var ranges: [Range<Int>] = []
            ranges.reserveCapacity(1000)
            var seen: (requests: Bool, defaults: Bool) = (false, false)
            var defaultMethod: String?
            // A sub-request without a method takes the defaults' one, which may come after it.
            var needsDefaultMethod = false
            while let name = try cursor.nextKey() {
                if name.equals(Self.requestsName), !seen.requests {
                    seen.requests = true
                    guard try cursor.enterArray() else { return nil }
                    while try cursor.nextElement() {
                        guard ranges.count < maxRequests, let request = try walkRecordPut(&cursor),
                              request.method.map({ $0.uppercased() == "PUT" }) ?? true,
                              builder.add(path: request.path, headers: request.headers) else { return nil }
                        needsDefaultMethod = needsDefaultMethod || request.method == nil
                        ranges.append(request.data)
                    }
                } else if name.equals(Self.defaultsName), !seen.defaults {
                    seen.defaults = true
                    guard case .object(let given) = try cursor.value(maxDepth: 4), given.keys.allSatisfy({ $0 == "method" }) else { return nil }
                    if let given = given["method"] {
                        guard let text = given.stringValue, text.uppercased() == "PUT" else { return nil }
                        defaultMethod = text
                    }
                } else {
                    return nil
                }
            }
            try cursor.finish()
            guard !ranges.isEmpty, !needsDefaultMethod || defaultMethod != nil else { return nil }
            return (builder, ranges)
        }
    }

    /// One sub-request of ``walkRecordPuts(_:maxRequests:)`` at `cursor`: its method (nil when it
    /// has none), path, headers and where its data is; nil when it is not a record `PUT`'s shape.
    private static func walkRecordPut(_ cursor: inout JSONCursor) throws -> (method: String?, path: String, headers: [String: JSON]?, data: Range<Int>)? {
        guard try cursor.enterObject() else { return nil }
        var method: String?, path: String?, headers: [String: JSON]?, data: Range<Int>?
        var seen: (method: Bool, path: Bool, body: Bool, headers: Bool) = (false, false, false, false)
        while let name = try cursor.nextKey() {
            if name.equals(Self.methodName), !seen.method {
                seen.method = true
                guard let text = try cursor.value(maxDepth: 1).stringValue else { return nil }
                method = text
            } else if name.equals(Self.pathName), !seen.path {
                seen.path = true
                guard let text = try cursor.value(maxDepth: 1).stringValue else { return nil }
                path = text
            } else if name.equals(Self.headersName), !seen.headers {
                seen.headers = true
                guard case .object(let given) = try cursor.value(maxDepth: 2) else { return nil }
                headers = given
            } else if name.equals(Self.bodyName), !seen.body {
                seen.body = true
                // Its only member is `data`, an object (parsed later, ``recordItems``).
                guard try cursor.enterObject(), let member = try cursor.nextKey(), member.equals(Self.dataName),
                      cursor.next == UInt8(ascii: "{") else { return nil }
                data = try cursor.skip()
                guard try cursor.nextKey() == nil else { return nil }
            } else {
                return nil
            }
        }
        guard let path, let data else { return nil }
        return (method, path, headers, data)
    }

    private static let methodName = Array("method".utf8), pathName = Array("path".utf8), headersName = Array("headers".utf8)
    private static let bodyName = Array("body".utf8), dataName = Array("data".utf8)
    private static let requestsName = Array("requests".utf8), defaultsName = Array("defaults".utf8)

    /// The puts of `heads[part]`, their data parsed from `ranges` of `body` and serialized; nil
    /// when one does not parse as the general parse would take it, or does not qualify.
    static func recordItems(_ body: [UInt8], _ heads: [RecordPutsBuilder.Head], _ ranges: [Range<Int>], _ part: Range<Int>) -> [RecordPuts.Item]? {
        // Records sit four levels down (the batch, its list, a request, its body): read with a
        // smaller depth than the general parse allows, so nothing it refuses is taken here.
        let depth = JSON.defaultMaxDepth - 5
        return body.withUnsafeBytes { buffer -> [RecordPuts.Item]? in
            var items: [RecordPuts.Item] = []
            items.reserveCapacity(part.count)
            for i in part {
                guard case .object(let data)? = try? JSON.parse(UnsafeRawBufferPointer(rebasing: buffer[ranges[i]]), maxDepth: depth),
                      let item = RecordPutsBuilder.item(heads[i], data) else { return nil }
                items.append(item)
            }
            return items
        }
    }

    /// Answers `puts` (nil when the caller may not write the collection or it does not exist:
    /// the general path answers those, each sub-request with its own error); written records
    /// without their body when `minimal` (`Prefer: return=minimal`).
    func run(_ puts: RecordPuts, identity: Identity, minimal: Bool = false) async throws -> APIResponse? {
        let records = puts.records
        let collection = ObjectPath(kind: .collection, bucket: records.bucket, id: records.collection!)
        let grants = records.grants("write", id: nil)
        // Checked before the transaction (and again in it): the grant, the collection and its rules.
        let before: (version: Int64, rules: CollectionRules)? = try await storage.read(.snapshot) { session in
            guard try session.anyGranted(grants, principals: identity.principals),
                  let object = try session.get(collection.storageKey, id: collection.id!, includeDeleted: false) else { return nil }
            guard let rules = try? self.rules(of: object, uri: records.collectionURI!) else { return nil }
            return (object.lastModified, rules)
        }
        guard let before else { return nil }
        // The schema's verdicts, reached against the collection as read just now (none without a
        // schema: the map copied every item, 1 % of a push).
        let verdicts: [KintoError?] = before.rules.schema == nil ? Array(repeating: nil, count: puts.items.count) : puts.items.map { item -> KintoError? in
            do throws(KintoError) {
                try before.rules.checkSchema(record: item.data)
                return nil
            } catch {
                return error
            }
        }
        let checked = puts.items
        // Whether an id comes twice: only then does a record's write depend on an earlier one of
        // the batch (known here, off the writer, it spares the writer two hash-table steps a record).
        let repeats = Set(checked.lazy.map(\.id)).count != checked.count
        let key = records.storageKey
        let effects = Route.object(records).effects
        let outcomes: [RecordPuts.Outcome]
        do {
            outcomes = try await storage.write(announcing: effects.announcements) { session in
                guard try session.anyGranted(grants, principals: identity.principals),
                      let object = try session.get(collection.storageKey, id: collection.id!, includeDeleted: false) else { throw RecordPuts.Stale() }
                guard let rules = object.lastModified == before.version ? before.rules : try? self.rules(of: object, uri: records.collectionURI!) else {
                    throw RecordPuts.Stale()
                }
                var existing = try session.objects(key, ids: checked.map(\.id))
                // With an id twice, each record written goes in, for the later one to see (growing
                // it was 2 % of the writer).
                if repeats { existing.reserveCapacity(checked.count) }
                var outcomes: [RecordPuts.Outcome] = []
                outcomes.reserveCapacity(checked.count)
                // The creator keeps `write` (a new object has no permissions to replace). The
                // entries of the records this batch creates are written together after them.
                var creator = Permissions()
                if let user = identity.userID { creator["write"] = [user] }
                var created: Set<String> = []
                var createdURIs: [String] = []
                let uriPrefix = records.uri(id: "")  // (built for each record, it was 3 % of the writer)
                for (i, item) in checked.enumerated() {  // (one copy of each item: `checked[i].field` copied it for each field)
                    do {
                        let id = item.id
                        let replaced = existing[id]
                        try ResourceHandler.check412(ifMatch: ResourceHandler.precondition("If-Match", item.ifMatch),
                                                     ifNoneMatch: ResourceHandler.precondition("If-None-Match", item.ifNoneMatch),
                                                     existing: replaced, current: replaced?.lastModified ?? 0)
                        try rules.check(record: item.data, id: id, key: key, session: session,
                                        schemaChecked: object.lastModified == before.version ? .some(verdicts[i]) : nil)
                        // A record PUT refuses before it writes: no savepoint.
                        let stored = try session.put(key, id: id, text: item.text, requestedTimestamp: nil)
                        if repeats { existing[id] = stored }
                        if replaced != nil {
                            // (A minimal answer does not show them: not read. A record this batch
                            // created has its creator's, not written yet.)
                            let permissions = minimal ? Permissions() : repeats && created.contains(id) ? creator : try session.permissions(of: uriPrefix + id)
                            outcomes.append(.written(created: false, stored, permissions))
                        } else {
                            if repeats { created.insert(id) }
                            createdURIs.append(uriPrefix + id)
                            outcomes.append(.written(created: true, stored, creator))
                        }
                    } catch let error as KintoError {
                        outcomes.append(.refused(error))
                    }
                }
                try session.addPermissions(ofEach: createdURIs, creator)
                return outcomes
            }
        } catch is RecordPuts.Stale {
            return nil
        }
        // Counted once the batch committed, in one step (a counter's lock for each record was
        // 2 % of a push's server samples, on the single writer).
        let written = outcomes.count { if case .written = $0 { true } else { false } }
        if written > 0 {
            metrics?.recordWritten(written)
            announce(effects, succeeded: true)
            // Files are looked for only where the collection has a folder of them.
            if let store = attachments, store.exists("\(records.bucket)/\(records.collection!)") {
                await cleanAttachments(Set(zip(checked, outcomes).compactMap { item, outcome in
                    if case .written = outcome { AttachmentScope.record(bucket: records.bucket, collection: records.collection!, id: item.id) } else { nil }
                }))
            }
        }
        return APIResponse(body: .raw(Self.batchBody(puts.items.map(\.path), outcomes, minimal: minimal)))
    }

    /// The batch's answer for ``RecordPuts``: what ``batchBody(_:_:)`` writes for the same
    /// answers, written straight from the stored records.
    static func batchBody(_ paths: [String], _ outcomes: [RecordPuts.Outcome], minimal: Bool = false) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(outcomes.count * (minimal ? 160 : 256))
        out.append(contentsOf: #"{"responses":["#.utf8)
        var date: (second: Int64, text: [UInt8]) = (-1, [])
        for i in outcomes.indices {  // (by index: a zip copied each answer and its path)
            if i > 0 { out.append(UInt8(ascii: ",")) }
            let path = paths[i]
            switch outcomes[i] {
            case .refused(let error):
                appendAnswer(path: path, APIResponse(error: error), to: &out)
            case .written(let created, let stored, let permissions):
                out.append(contentsOf: created ? #"{"status":201,"path":"#.utf8 : #"{"status":200,"path":"#.utf8)
                JSON.writeString(path, to: &out)
                if !minimal { appendBody(stored, permissions, to: &out) }
                out.append(contentsOf: #","headers":{"ETag":"\""#.utf8)
                out.append(contentsOf: String(stored.lastModified).utf8)
                out.append(contentsOf: #"\"","Last-Modified":""#.utf8)
                // The records of a batch mostly share their second.
                if stored.lastModified / 1000 != date.second {
                    date = (stored.lastModified / 1000, Array(Timestamp.httpDate(stored.lastModified).utf8))
                }
                out.append(contentsOf: date.text)
                out.append(contentsOf: #"","Cache-Control":"no-cache, no-store"}}"#.utf8)
            }
        }
        out.append(contentsOf: "]}".utf8)
        return out
    }

    /// `,"body":{"data": …,"permissions": …}` of a written record.
    private static func appendBody(_ stored: StoredObject, _ permissions: Permissions, to out: inout [UInt8]) {
        out.append(contentsOf: #","body":{"data":"#.utf8)
        out.append(contentsOf: stored.json.utf8)
        out.append(contentsOf: #","permissions":{"#.utf8)
        var first = true
        for name in permissions.count == 1 ? Array(permissions.keys) : permissions.keys.sorted() {
            guard let principals = permissions[name], !principals.isEmpty else { continue }
            if !first { out.append(UInt8(ascii: ",")) }
            first = false
            JSON.writeString(name, to: &out)
            out.append(contentsOf: ":[".utf8)
            for (j, principal) in (principals.count == 1 ? Array(principals) : principals.sorted()).enumerated() {
                if j > 0 { out.append(UInt8(ascii: ",")) }
                JSON.writeString(principal, to: &out)
            }
            out.append(UInt8(ascii: "]"))
        }
        out.append(contentsOf: "}}".utf8)
    }
}
