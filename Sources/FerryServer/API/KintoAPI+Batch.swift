import FerryCore
import FerryStore
import HTTPTypes

extension KintoAPI {
    /// `POST /v1/batch`: up to `batch_max_requests` sub-requests in one transaction.
    /// Each sub-request runs in a savepoint: one that fails answers its error and
    /// changes nothing, the others still apply (as in Kinto).
    func batch(_ request: APIRequest) async throws -> APIResponse {
        // A sync's push: its record PUTs read from the bytes, the batch's JSON never built.
        let scanned = await scannedRecordPuts(request)
        if let puts = scanned, let response = try await run(puts, identity: request.identity, minimal: request.prefersMinimal) {
            return Self.withPreferenceApplied(response, request)
        }
        guard case .object(let top)? = try request.jsonBody(emptyIsNil: false) else {
            throw KintoError.invalidParameters(location: "body", description: "The body must be a JSON object")
        }
        let defaults = top["defaults"] ?? .object([:])
        guard case .object(let given) = defaults else {
            throw KintoError.invalidParameters(location: "body", name: "defaults", description: "defaults must be an object")
        }
        try Self.checkDefaults(given)
        guard let requests = top["requests"] else {
            throw KintoError.invalidParameters(location: "body", name: "requests", description: "requests is missing")
        }
        guard case .array(let items) = requests, !items.isEmpty else {
            throw KintoError.invalidParameters(location: "body", name: "requests", description: "requests must be a non-empty list")
        }
        guard items.count <= settings.batchMaxRequests else {
            throw KintoError.invalidParameters(location: "body", name: "requests",
                                               description: "Number of requests is limited to \(settings.batchMaxRequests)")
        }
        // Plain record PUTs into one collection (a sync's push) take a path of their own, unless
        // the walk above found them already (the same puts: that path refused them).
        if scanned == nil, let puts = recordPuts(items, defaults: defaults, request: request),
           let response = try await run(puts, identity: request.identity, minimal: request.prefersMinimal) {
            return Self.withPreferenceApplied(response, request)
        }
        // Every sub-request is routed and prepared (its body parsed, a password hashed) before
        // the transaction; one that cannot be answers its error, and the others still run.
        var subs: [APIRequest] = []
        var steps: [Result<Operation, KintoError>] = []
        // What each write may change (announced after the commit), and whether it writes
        // anything but a record (which may change what the memo remembers: grants, parents, rules).
        var writeEffects: [WriteEffects?] = []
        var forgets: [Bool] = []
        var implicit: [[ObjectPath]] = []
        var effects = WriteEffects()
        // Where each write may leave files without their record (cleaned after the commit).
        var scopes: [AttachmentScope?] = []
        // The bulk path: record PUTs run without a savepoint of their own (they refuse before
        // they write), their bodies checked and serialized here, and whether their records exist
        // read in one statement per collection before the first of them.
        var direct: [Bool] = []
        var prefetch: [ResourceKey: [String]] = [:]
        var rules: [String: (version: Int64, rules: CollectionRules)?] = [:]
        var parent = request
        parent.headers["content-length"] = nil
        for (i, item) in items.enumerated() {
            guard case .object = item else {
                throw KintoError.invalidParameters(location: "body", name: "requests.\(i)", description: "requests.\(i) must be an object")
            }
            var sub = try subrequest(Self.mergeDefaults(defaults, into: item), index: i, parent: parent)
            subs.append(sub)
            writeEffects.append(nil)
            forgets.append(false)
            implicit.append([])
            scopes.append(nil)
            direct.append(false)
            do {
                // Under /buckets/default: the caller's personal bucket, created first if missing.
                if let personal = try personalBucket(sub) {
                    sub = personal.request
                    implicit[i] = personal.implicit
                    forgets[i] = !personal.implicit.isEmpty
                    for path in personal.implicit { effects.formUnion(Route.object(path).effects) }
                }
                let route = try Route(sub.path)
                if settings.bulkRecordWrites, sub.method == .put, implicit[i].isEmpty, case .object(let path) = route, path.kind == .record {
                    direct[i] = true
                    prefetch[path.storageKey, default: []].append(path.id!)
                    let uri = path.collectionURI!
                    if rules[uri] == nil { rules[uri] = .some(await collectionRules(path)) }
                    sub.preparedRecord = prepareRecordWrite(sub, id: path.id!, rules: rules[uri] ?? nil)
                }
                if !sub.isRead {
                    writeEffects[i] = route.effects
                    effects.formUnion(route.effects)
                    scopes[i] = Self.attachmentScope(route: route, method: sub.method)
                    // Any write but a record's may change what the memo holds: grants, parents and
                    // rules (a bucket, collection or group), records (a flush, an attachment's removal).
                    switch route {
                    case .object(let path) where path.kind == .record, .plural(let path) where path.kind == .record: break
                    default: forgets[i] = true
                    }
                }
                let operation = try operation(for: sub, route: route, inBatch: true)
                try await operation.precheck?()
                steps.append(.success(operation))
            } catch let error as KintoError {
                steps.append(.failure(error))
            }
        }
        let prepared = steps
        let isRead = subs.map(\.isRead)
        let forgetting = forgets
        let creations = implicit
        let identity = request.identity
        let bulk = direct
        let prefetching = prefetch
        // Other processes hear of what the writes among them may change, not of everything.
        let responses: [APIResponse] = try await storage.write(announcing: effects.announcements) { session in
            let memo = TransactionMemo(shared: true)
            for (key, ids) in prefetching { try memo.prefetch(key, ids: ids, session: session) }
            return try prepared.indices.map { i in
                if forgetting[i] { memo.clear() }
                defer { if forgetting[i] { memo.clear() } }
                do {
                    let operation = try prepared[i].get()
                    if case .own = operation.access { throw KintoError.internalError("not answerable in a batch") }
                    // A write runs in a savepoint: one that fails changes nothing, the others still apply.
                    if !creations[i].isEmpty {
                        return try session.savepoint {
                            try self.createImplicitly(creations[i], for: identity, in: session)
                            return try operation.run(session, memo)
                        }
                    }
                    if isRead[i] || bulk[i] { return try operation.run(session, memo) }
                    do {
                        return try session.savepoint { try operation.run(session, memo) }
                    } catch {
                        // Its savepoint undid what it wrote, which the memo may hold.
                        memo.forgetObjects()
                        throw error
                    }
                } catch let error as KintoError {
                    return APIResponse(error: error)
                }
            }
        }
        // Once for the batch: what its successful writes changed; identity caches also go
        // after a refused write to accounts or groups (as outside a batch).
        var changed = WriteEffects()
        var refused = WriteEffects()
        for (effects, response) in zip(writeEffects, responses) {
            guard let effects else { continue }
            if response.status < 400 { changed.formUnion(effects) } else { refused.accountsOrGroups = refused.accountsOrGroups || effects.accountsOrGroups }
        }
        announce(changed, succeeded: true)
        announce(refused, succeeded: false)
        await cleanAttachments(Set(zip(scopes, responses).compactMap { $1.status < 400 ? $0 : nil }))
        return Self.withPreferenceApplied(APIResponse(body: .raw(Self.batchBody(subs, responses))), request)
    }

    /// `response` saying it honoured `Prefer: return=minimal` (RFC 7240 `Preference-Applied`)
    /// when the batch asked for it.
    static func withPreferenceApplied(_ response: APIResponse, _ request: APIRequest) -> APIResponse {
        guard request.prefersMinimal else { return response }
        var response = response
        response.headers.append(("Preference-Applied", "return=minimal"))
        return response
    }

    /// The rules of the collection of `path` and their version, read before the transaction (nil
    /// when the collection does not exist or cannot be read: the transaction reads it again).
    func collectionRules(_ path: ObjectPath) async -> (version: Int64, rules: CollectionRules)? {
        let collection = ObjectPath(kind: .collection, bucket: path.bucket, id: path.collection!)
        guard let object = try? await storage.read(.oneStatement, { try $0.get(collection.storageKey, id: collection.id!, includeDeleted: false) }),
              let rules = try? self.rules(of: object, uri: path.collectionURI!) else { return nil }
        return (object.lastModified, rules)
    }

    /// A record PUT's data, serialized and checked against `rules` before the transaction; nil
    /// when its body has no `data` object (the transaction answers what is wrong with it).
    func prepareRecordWrite(_ sub: APIRequest, id: String, rules: (version: Int64, rules: CollectionRules)?) -> PreparedRecord? {
        guard case .object(let data)? = sub.parsedBody?["data"] else { return nil }
        var prepared = PreparedRecord(text: RecordText(data, hashedAs: id))
        if let rules {
            do {
                try rules.rules.checkSchema(record: data)
                prepared.schema = (rules.version, nil)
            } catch {
                prepared.schema = (rules.version, error)
            }
        }
        return prepared
    }

    /// `{"responses": [{"status", "path", "body", "headers"}…]}`, each body spliced in as it was
    /// answered (stored records go out as stored, without being parsed again); a write's success
    /// without its body for a sub-request that prefers it minimal (its own or the batch's `Prefer`;
    /// a read's body is what it asked for, so it keeps it).
    static func batchBody(_ subs: [APIRequest], _ responses: [APIResponse]) -> [UInt8] {
        var out: [UInt8] = Array(#"{"responses":["#.utf8)
        for (i, (sub, response)) in zip(subs, responses).enumerated() {
            if i > 0 { out.append(UInt8(ascii: ",")) }
            appendAnswer(path: sub.path, response, minimal: !sub.isRead && sub.prefersMinimal, to: &out)
        }
        out.append(contentsOf: "]}".utf8)
        return out
    }

    /// One answer of a batch: `{"status", "path", "body", "headers"}`, without `body` when
    /// `minimal` and the answer is a success (an error keeps its body: it says what was wrong).
    static func appendAnswer(path: String, _ response: APIResponse, minimal: Bool = false, to out: inout [UInt8]) {
        out.append(contentsOf: #"{"status":"#.utf8)
        out.append(contentsOf: String(response.status).utf8)
        out.append(contentsOf: #","path":"#.utf8)
        JSON.writeString(path, to: &out)
        if !(minimal && response.status < 300) {
            out.append(contentsOf: #","body":"#.utf8)
            switch response.body {
            case .raw(let bytes): out.append(contentsOf: bytes)
            case .json(let json): json.write(to: &out)
            case .empty, .text, .bytes: out.append(contentsOf: "null".utf8)
            }
        }
        // Written as they are (no dictionary made and sorted for each); a name given twice
        // keeps its last value, as a JSON object can hold it once.
        out.append(contentsOf: #","headers":{"#.utf8)
        var first = true
        for (i, (name, value)) in response.headers.enumerated()
        where !response.headers[(i + 1)...].contains(where: { $0.0 == name }) {
            if !first { out.append(UInt8(ascii: ",")) }
            first = false
            JSON.writeString(name, to: &out)
            out.append(UInt8(ascii: ":"))
            JSON.writeString(value, to: &out)
        }
        out.append(contentsOf: "}}".utf8)
    }

    /// `defaults` is checked as a request is, before any merge (as Kinto checks it), so a value a
    /// request overrides is refused all the same: a method, a path, string headers, an object body.
    static func checkDefaults(_ defaults: [String: JSON]) throws {
        func refuse(_ name: String, _ what: String) -> KintoError {
            KintoError.invalidParameters(location: "body", name: "defaults.\(name)", description: "defaults.\(name) must be \(what)")
        }
        if let method = defaults["method"] {
            guard let name = method.stringValue?.uppercased(), ["GET", "HEAD", "PUT", "PATCH", "POST", "DELETE"].contains(name) else {
                throw refuse("method", "one of GET, HEAD, PUT, PATCH, POST, DELETE")
            }
        }
        if let path = defaults["path"] {
            guard let text = path.stringValue, text.hasPrefix("/"), text.utf8.count <= 4096 else { throw refuse("path", "a path starting with /") }
        }
        if let headers = defaults["headers"] {
            guard case .object(let members) = headers, members.values.allSatisfy({ $0.stringValue != nil }) else {
                throw refuse("headers", "an object of strings")
            }
        }
        if let body = defaults["body"], body != .null {
            guard case .object = body else { throw refuse("body", "an object") }
        }
    }

    /// Kinto merges `defaults` into each request recursively; the request's values win.
    static func mergeDefaults(_ defaults: JSON, into item: JSON) -> JSON {
        guard case .object(let d) = defaults, case .object(var members) = item else { return item }
        for (key, value) in d {
            if let existing = members[key] {
                if case .object = existing, case .object = value { members[key] = mergeDefaults(value, into: existing) }
            } else {
                members[key] = value
            }
        }
        return .object(members)
    }

    func subrequest(_ item: JSON, index i: Int, parent: APIRequest) throws -> APIRequest {
        let name = (item["method"] ?? "GET").stringValue?.uppercased()
        guard let name, ["GET", "HEAD", "PUT", "PATCH", "POST", "DELETE"].contains(name), let method = HTTPRequest.Method(name) else {
            throw KintoError.invalidParameters(location: "body", name: "requests.\(i).method", description: "requests.\(i).method must be one of GET, HEAD, PUT, PATCH, POST, DELETE")
        }
        guard let rawPath = item["path"]?.stringValue, rawPath.hasPrefix("/"), rawPath.utf8.count <= 4096 else {
            throw KintoError.invalidParameters(location: "body", name: "requests.\(i).path", description: "requests.\(i).path must be a path starting with /")
        }
        var headers = parent.headers
        // Only when there is one: removing a missing key would still copy the dictionary, for
        // each of up to a thousand sub-requests (``batch(_:)`` removes the batch's own once).
        if headers["content-length"] != nil { headers["content-length"] = nil }
        if let subHeaders = item["headers"] {
            guard case .object(let members) = subHeaders else {
                throw KintoError.invalidParameters(location: "body", name: "requests.\(i).headers", description: "requests.\(i).headers must be an object")
            }
            for (name, value) in members {
                guard let s = value.stringValue else {
                    throw KintoError.invalidParameters(location: "body", name: "requests.\(i).headers", description: "header values must be strings")
                }
                headers[name.lowercased()] = s
            }
        }
        var body: JSON?
        if let subBody = item["body"], subBody != .null {
            guard case .object = subBody else {
                throw KintoError.invalidParameters(location: "body", name: "requests.\(i).body", description: "requests.\(i).body must be an object")
            }
            body = subBody
        }
        var path = rawPath
        var query: [(String, String)] = []
        if let q = rawPath.firstIndex(of: "?") {
            path = String(rawPath[..<q])
            query = APIRequest.parseQuery(rawPath[rawPath.index(after: q)...])
        }
        if path.hasPrefix("/v1/") || path == "/v1" { path = String(path.dropFirst(3)) }
        var sub = APIRequest(method: method, path: path, query: query, headers: headers, identity: parent.identity, baseURL: parent.baseURL)
        sub.parsedBody = body  // already parsed with the batch: not serialized and parsed again
        return sub
    }
}
