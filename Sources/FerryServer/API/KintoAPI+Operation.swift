import FerryCore
import FerryStore
import HTTPTypes

/// What a request does, decided once from its route and method: the work that needs no
/// transaction (parsing the body, hashing a password) is already done, and `body` is what
/// remains, to run in the kind of transaction `access` names. `/batch` runs the bodies of its
/// sub-requests in savepoints of its own transaction, so every endpoint answers the same in a
/// batch as outside one.
struct Operation: Sendable {
    /// How the work meets the storage.
    enum Access: Sendable {
        /// No storage (server information).
        case none
        /// A read of the declared shape (``ReadShape``): a snapshot, or one content read that
        /// the session holds the body to.
        case read(ReadShape)
        /// A write transaction.
        case write
        /// Work that waits on its own (the heartbeat's ping, a long-poll, a batch): never in a batch.
        case own(@Sendable () async throws -> APIResponse)

        /// A read-only transaction: one consistent snapshot.
        static var snapshot: Access { .read(.snapshot) }
    }

    var access: Access
    /// Work before the transaction that needs I/O of its own and must follow a permission check
    /// (a webhook URL's DNS look-up): run first, outside any transaction; nil for most operations.
    var precheck: (@Sendable () async throws -> Void)? = nil
    /// The work, in a session of the transaction (nil with ``Access/none``), with what earlier
    /// requests of the same transaction read (a batch's).
    var run: @Sendable ((any StorageSession)?, TransactionMemo) throws -> APIResponse

    init(_ access: Access, _ body: @escaping @Sendable ((any StorageSession)?) throws -> APIResponse) {
        self.access = access
        run = { session, _ in try body(session) }
    }

    /// Work in a session (every access but ``Access/none``).
    init(_ access: Access, session body: @escaping @Sendable (any StorageSession) throws -> APIResponse) {
        self.init(access, session: { session, _ in try body(session) })
    }

    /// Work in a session that can reuse what earlier requests of its batch read.
    init(_ access: Access, session body: @escaping @Sendable (any StorageSession, TransactionMemo) throws -> APIResponse) {
        self.access = access
        run = { session, memo in
            guard let session else { throw KintoError.internalError("no storage session") }
            return try body(session, memo)
        }
    }

    /// The work of a request on its own: nothing to share.
    func body(_ session: (any StorageSession)?) throws -> APIResponse {
        try run(session, TransactionMemo())
    }

    /// Work that waits on its own.
    static func own(_ work: @escaping @Sendable () async throws -> APIResponse) -> Operation {
        Operation(.own(work)) { _ in throw KintoError.internalError("answered outside its own work") }
    }
}

extension KintoAPI {
    /// The operation of `request` on `route`: checks the method, parses what can be parsed
    /// before any transaction, and says which transaction the rest needs.
    /// - Parameter inBatch: whether it is a sub-request of `/batch` (which refuses the
    ///   operations that wait on their own, and answers the heartbeat from its own transaction).
    func operation(for request: APIRequest, route: Route, inBatch: Bool) throws -> Operation {
        // A route this server does not serve is absent, whatever the method.
        guard serves(route) else { throw KintoError.missingResource }
        guard route.allowedMethods.contains(request.method) else {
            throw KintoError.methodNotAllowed(request.method, allowed: route.allowedMethods)
        }
        switch route {
        case .hello:
            return Operation(.none) { _ in self.hello(request) }
        case .api:
            return Operation(.none) { _ in APIResponse(body: .json(APIDocument(api: self).json(baseURL: request.baseURL))) }
        case .lbheartbeat:
            return Operation(.none) { _ in APIResponse(body: .json([:])) }
        case .version:
            return Operation(.none) { _ in
                var body: [String: JSON] = ["name": "ferry", "version": .string(self.settings.version), "commit": .string(FerryVersion.commit)]
                if let projectURL = self.settings.projectURL { body["source"] = .string(projectURL) }
                return APIResponse(body: .json(.object(body)))
            }
        case .heartbeat:
            // In a batch, the batch's own transaction shows the storage answers.
            if inBatch { return Operation(.none) { _ in APIResponse(body: .json(["storage": true, "permission": true, "cache": true])) } }
            return .own {
                let ok = await self.storage.ping()
                return APIResponse(status: ok ? 200 : 503, body: .json(["storage": .bool(ok), "permission": .bool(ok), "cache": true]))
            }
        case .batch:
            if inBatch {
                throw KintoError.invalidParameters(location: "body", name: "requests", description: "Recursive batch requests are not allowed")
            }
            return .own { try await self.batch(request) }
        case .flush:
            // Kinto's flush plugin: no permission required (a setting for test suites).
            try refuseWriteIfReadonly(request)
            return Operation(.write, session: { session in
                try session.flush()
                return APIResponse(status: 202, body: .json([:]))
            })
        case .permissions:
            guard request.identity.userID != nil else { throw KintoError.unauthorized }
            return Operation(.snapshot, session: { session in try self.permissionsList(request, session: session) })
        case .accounts(let id):
            return try accountOperation(request, id: id)
        case .webhooks(let bucket, let collection, let id, let log):
            return try webhookOperation(request, bucket: bucket, collection: collection, id: id, log: log)
        case .attachment(let path):
            if request.method == .delete { return try deleteAttachmentOperation(request, path: path) }
            if inBatch {
                throw KintoError.invalidParameters(location: "body", name: "requests", description: "An attachment upload (multipart) cannot be sent in a batch")
            }
            return .own { try await self.uploadAttachment(request, path: path, effects: route.effects) }
        case .reconcile(let path):
            return try reconcileOperation(request, path: path, inBatch: inBatch)
        case .plural(let path) where path.kind == .record && request.method == .get && request.query.contains(where: { $0.0 == "_wait" }):
            if inBatch {
                throw KintoError.invalidParameters(location: "querystring", name: "_wait", description: "_wait (a long-poll) is not allowed in a batch")
            }
            let wait = request.query.last { $0.0 == "_wait" }!.1
            return .own { try await self.longPoll(request, path: path, wait: wait) }
        case .plural(let path), .object(let path):
            if request.isRead {
                // One content read for an object (ResourceHandler.get); for a plain list, grants,
                // parents, then the timestamp and the page in one statement (pluralGet).
                let single: Bool
                if case .object = route { single = true } else { single = ResourceHandler.isPlainList(request) }
                return Operation(.read(single ? .oneStatement : .snapshot), session: { session, memo in
                    try self.resource(request, route: route, path: path, session: session, memo: memo)
                })
            }
            try refuseWriteIfReadonly(request)
            var parsed = request
            // The body is parsed before the transaction: never under the single writer. A body
            // that does not parse is refused in the transaction, after the permission check
            // (who may not write learns nothing from a 400).
            if request.method != .delete, let body = try? request.jsonBody() { parsed.parsedBody = body }
            let prepared = parsed
            return Operation(.write, session: { session, memo in
                try self.resource(prepared, route: route, path: path, session: session, memo: memo)
            })
        }
    }

    /// 405 for a write to a read-only server.
    func refuseWriteIfReadonly(_ request: APIRequest) throws(KintoError) {
        if settings.readonly && !request.isRead { throw .methodNotAllowed(request.method, allowed: [.get, .head]) }
    }

    /// A bucket, collection, group or record endpoint, in its transaction.
    func resource(_ request: APIRequest, route: Route, path: ObjectPath, session: any StorageSession,
                  memo: TransactionMemo = TransactionMemo()) throws -> APIResponse {
        var handler = ResourceHandler(api: self, request: request, path: path, session: session, memo: memo)
        if case .plural = route {
            switch request.method {
            case .get, .head: return try handler.pluralGet()
            case .post: return try handler.pluralPost()
            default: return try handler.pluralDelete()
            }
        }
        switch request.method {
        case .get, .head: return try handler.get()
        case .put: return try handler.put()
        case .patch: return try handler.patch()
        default: return try handler.delete()
        }
    }
}
