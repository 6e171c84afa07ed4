public import FerryCore
public import FerryStore
import Foundation

/// The Kinto HTTP API 1.x as a function from ``APIRequest`` to ``APIResponse``.
///
/// Transport-free: the HTTP layer (``FerryResponder``) and `/batch` both call
/// ``handle(_:)``; every request runs in one storage transaction, so an error
/// leaves the data as it was.
public struct KintoAPI: Sendable {
    /// Settings announced in `GET /v1/` and obeyed by every endpoint.
    public struct Settings: Sendable {
        /// Most sub-requests one `POST /batch` may hold (Kinto's default: 25).
        public var batchMaxRequests: Int = 25
        /// Refuse every write with 405.
        public var readonly: Bool = false
        /// Force pages of at most this many objects.
        public var paginateBy: Int? = nil
        /// Most objects one page may hold (Kinto's `storage_max_fetch_size`).
        public var maxFetchSize: Int = 10_000
        /// Principals that may create buckets (Kinto's `bucket_create_principals`).
        public var bucketCreatePrincipals: Set<String> = [Identity.authenticated]
        /// `Retry-After` seconds sent with 503 answers.
        public var retryAfterSeconds: Int = 30
        /// When set, every response carries `Backoff: <seconds>` (ask clients to slow down).
        public var backoffSeconds: Int? = nil
        /// Where webhooks may point.
        public var webhookPolicy = WebhookAddressPolicy()
        /// The public version string.
        public var version: String = FerryVersion.current

        public init() {}
    }

    public let storage: any Storage
    public let settings: Settings
    let metrics: ServerMetrics?
    /// Accounts, tokens and JWTs; nil serves no `/accounts` (tests that set identities directly).
    public let authenticator: Authenticator?
    /// Compiled collection schemas and unique fields.
    let rulesCache = RulesCache()
    /// Wakes event streams, long-polls and webhook deliveries after writes.
    public let changeHub = ChangeHub()
    /// Change-feed reads shared by streams woken together.
    let feedReads = SharedReads()
    /// Raised when a webhook is registered, changed or deleted (the dispatcher looks again).
    public let webhooksChanged = WakeSignal()

    public init(storage: any Storage, settings: Settings = .init(), metrics: ServerMetrics? = nil, authenticator: Authenticator? = nil) {
        self.storage = storage
        self.settings = settings
        self.metrics = metrics
        self.authenticator = authenticator
    }

    /// The identity behind an `Authorization` header (anonymous without one).
    public func authenticate(authorization: String?) async throws(KintoError) -> Identity {
        guard let authenticator else {
            return try BasicAuthenticator(secret: "").identity(authorization: authorization)
        }
        return try await authenticator.identity(authorization: authorization, storage: storage)
    }

    /// Where a path leads.
    enum Route: Sendable {
        case hello, heartbeat, lbheartbeat, version, batch, permissions
        case accounts(String?)
        case webhooks(bucket: String, collection: String, id: String?, log: Bool)
        case plural(ObjectPath)
        case object(ObjectPath)

        var allowedMethods: [String] {
            switch self {
            case .hello, .heartbeat, .lbheartbeat, .version: ["GET", "HEAD"]
            case .batch: ["POST"]
            case .permissions: ["GET", "HEAD"]
            case .accounts(nil): ["GET", "HEAD", "POST"]
            case .accounts: ["GET", "HEAD", "PUT", "PATCH", "DELETE"]
            case .webhooks(_, _, let id, let log): id == nil || log ? ["GET", "HEAD"] : ["GET", "HEAD", "PUT", "DELETE"]
            case .plural: ["GET", "HEAD", "POST", "DELETE"]
            case .object: ["GET", "HEAD", "PUT", "PATCH", "DELETE"]
            }
        }

        /// A name for logs and metrics, without ids.
        var name: String {
            switch self {
            case .hello: "/"
            case .heartbeat: "/__heartbeat__"
            case .lbheartbeat: "/__lbheartbeat__"
            case .version: "/__version__"
            case .batch: "/batch"
            case .permissions: "/permissions"
            case .accounts(nil): "accounts"
            case .accounts: "account"
            case .webhooks(_, _, let id, let log): log ? "webhook-deliveries" : id == nil ? "webhooks" : "webhook"
            case .plural(let p): p.kind.plural
            case .object(let p): p.kind.rawValue
            }
        }
    }

    /// Finds the route of a path below `/v1`.
    static func route(_ path: String) throws(KintoError) -> Route {
        var segments = path.split(separator: "/", omittingEmptySubsequences: true).map { APIRequest.percentDecode($0) }
        if segments.first == "v1" { segments.removeFirst() }
        func id(_ s: String) throws(KintoError) -> String {
            guard ObjectID.isValid(s) else {
                throw .invalidParameters(location: "path", name: "id", description: "Invalid object id")
            }
            return s
        }
        switch segments.count {
        case 0: return .hello
        case 1:
            switch segments[0] {
            case "__heartbeat__": return .heartbeat
            case "__lbheartbeat__": return .lbheartbeat
            case "__version__": return .version
            case "batch": return .batch
            case "permissions": return .permissions
            case "accounts": return .accounts(nil)
            case "buckets": return .plural(ObjectPath(kind: .bucket, bucket: ""))
            default: throw .missingResource
            }
        default:
            if segments[0] == "accounts", segments.count == 2 {
                guard Authenticator.isValidAccountID(segments[1]) else {
                    throw .invalidParameters(location: "path", name: "id", description: "Invalid account id (letters, digits and + . @ _ -, starting with a letter or digit)")
                }
                return .accounts(segments[1])
            }
            guard segments[0] == "buckets" else { throw .missingResource }
            let bucket = try id(segments[1])
            if segments.count == 2 { return .object(ObjectPath(kind: .bucket, bucket: bucket, id: bucket)) }
            let kind: ResourceKind
            switch segments[2] {
            case "collections": kind = .collection
            case "groups": kind = .group
            default: throw .missingResource
            }
            if segments.count == 3 { return .plural(ObjectPath(kind: kind, bucket: bucket)) }
            let child = try id(segments[3])
            if segments.count == 4 { return .object(ObjectPath(kind: kind, bucket: bucket, id: child)) }
            if kind == .collection, segments[4] == "webhooks" {
                if segments.count == 5 { return .webhooks(bucket: bucket, collection: child, id: nil, log: false) }
                let hook = try id(segments[5])
                if segments.count == 6 { return .webhooks(bucket: bucket, collection: child, id: hook, log: false) }
                guard segments.count == 7, segments[6] == "deliveries" else { throw .missingResource }
                return .webhooks(bucket: bucket, collection: child, id: hook, log: true)
            }
            guard kind == .collection, segments[4] == "records" else { throw .missingResource }
            if segments.count == 5 { return .plural(ObjectPath(kind: .record, bucket: bucket, collection: child)) }
            guard segments.count == 6 else { throw .missingResource }
            return .object(ObjectPath(kind: .record, bucket: bucket, collection: child, id: try id(segments[5])))
        }
    }

    /// Answers one request.
    public func handle(_ request: APIRequest) async -> APIResponse {
        var response: APIResponse
        var routeName = "unknown"
        do {
            let route = try Self.route(request.path)
            routeName = route.name
            guard route.allowedMethods.contains(request.method) else {
                throw KintoError.methodNotAllowed(request.method, allowed: route.allowedMethods)
            }
            switch route {
            case .heartbeat:
                let ok = await storage.ping()
                response = APIResponse(status: ok ? 200 : 503, body: .json(["storage": .bool(ok), "permission": .bool(ok), "cache": true]))
            case .batch:
                response = try await batch(request)
            case .accounts(let id):
                response = try await accounts(request, id: id)
            case .webhooks(let bucket, let collection, let id, let log):
                response = try await webhooks(request, bucket: bucket, collection: collection, id: id, log: log)
            case .permissions:
                guard request.identity.userID != nil else { throw KintoError.unauthorized }
                response = try await permissionsList(request)
            case .hello, .lbheartbeat, .version:
                response = try respond(request, route: route, session: nil)
            case .plural(let path) where path.kind == .record && request.method == "GET" && request.query.contains(where: { $0.0 == "_wait" }):
                response = try await longPoll(request, path: path, wait: request.query.last { $0.0 == "_wait" }!.1)
            case .plural, .object:
                let isRead = request.method == "GET" || request.method == "HEAD"
                if isRead, case .object = route {
                    // ResourceHandler.get reads in one statement.
                    response = try await storage.readSingle { session in try self.respond(request, route: route, session: session) }
                } else if isRead, case .plural = route, ResourceHandler.isPlainList(request) {
                    // Grants, parents, then the timestamp and the page in one statement (ResourceHandler.pluralGet).
                    response = try await storage.readSingle { session in try self.respond(request, route: route, session: session) }
                } else if isRead {
                    response = try await storage.read { session in try self.respond(request, route: route, session: session) }
                } else {
                    if settings.readonly { throw KintoError.methodNotAllowed(request.method, allowed: ["GET", "HEAD"]) }
                    response = try await write(for: request) { session in try self.respond(request, route: route, session: session) }
                }
            }
        } catch {
            response = errorResponse(error)
        }
        if request.method != "GET", request.method != "HEAD" {
            let accounts = Self.mayChangeAccountsOrGroups(request.path)
            if let authenticator, accounts { authenticator.accountsOrGroupsChanged() }
            if response.status < 400 {
                let (collection, touches) = ChangeHub.collection(ofPath: request.path)
                if touches { changeHub.changed(collection) }
            }
        }
        if let backoff = settings.backoffSeconds { response.headers.append(("Backoff", String(backoff))) }
        response.routeName = routeName
        return response
    }

    /// A write transaction for `request`: when it commits, the other server processes on the
    /// database (PostgreSQL) hear of what it may have changed (``announcements(for:)``).
    func write<T: Sendable>(for request: APIRequest, _ body: @escaping @Sendable (any StorageSession) throws -> T) async throws -> T {
        try await storage.write(announcing: Self.announcements(for: request.path), body)
    }

    /// What a write to `path` may change, for other processes: the collection (`*`: any), and
    /// ``accountsChanged`` and ``webhooksAnnounced`` when it may change those.
    static func announcements(for path: String) -> [String] {
        var announcements: [String] = []
        let (collection, touches) = ChangeHub.collection(ofPath: path)
        if touches { announcements.append(collection ?? "*") }
        if mayChangeAccountsOrGroups(path) { announcements.append(accountsChanged) }
        if path.contains("/webhooks") { announcements.append(webhooksAnnounced) }
        return announcements
    }

    /// The announcement that accounts or groups changed (identity caches must be dropped).
    public static let accountsChanged = "#accounts"
    /// The announcement that webhooks were registered, changed or removed (the process that
    /// delivers them must look again).
    public static let webhooksAnnounced = "#webhooks"

    /// Writes that can change who belongs to what: accounts, groups and buckets (which hold
    /// groups). A batch looks at each of its requests (``batch(_:)``).
    static func mayChangeAccountsOrGroups(_ path: String) -> Bool {
        let segments = path.split(separator: "/", omittingEmptySubsequences: true)
        let rest = segments.first == "v1" ? segments.dropFirst() : segments[...]
        guard let first = rest.first else { return false }
        switch first {
        case "accounts": return true
        case "buckets": return rest.count <= 2 || rest.dropFirst(2).first == "groups"
        default: return false
        }
    }

    func errorResponse(_ error: any Error) -> APIResponse {
        switch error {
        case let error as KintoError:
            return APIResponse(error: error)
        case let error as StorageError:
            metrics?.storageError()
            return APIResponse(error: .backend("The storage backend failed: \(error.message). Retry later.", retryAfter: settings.retryAfterSeconds))
        default:
            metrics?.storageError()
            return APIResponse(error: .backend("The storage backend failed: \(error). Retry later.", retryAfter: settings.retryAfterSeconds))
        }
    }

    /// Answers a request inside a transaction (`session` is nil for endpoints that need no storage).
    func respond(_ request: APIRequest, route: Route, session: (any StorageSession)?) throws -> APIResponse {
        switch route {
        case .hello: return hello(request)
        case .lbheartbeat: return APIResponse(body: .json([:]))
        case .version:
            return APIResponse(body: .json(["name": "ferry", "version": .string(settings.version), "source": "https://github.com/ferry-sync/ferry", "commit": .string(FerryVersion.commit)]))
        case .heartbeat:
            return APIResponse(body: .json(["storage": true, "permission": true, "cache": true]))
        case .batch:
            throw KintoError.invalidParameters(location: "body", name: "requests", description: "Recursive batch requests are not allowed")
        case .accounts, .permissions, .webhooks:
            throw KintoError.internalError("answered outside a session")
        case .plural(let path):
            guard let session else { throw KintoError.internalError("no storage session") }
            var handler = ResourceHandler(api: self, request: request, path: path, session: session)
            switch request.method {
            case "GET", "HEAD": return try handler.pluralGet()
            case "POST": return try handler.pluralPost()
            default: return try handler.pluralDelete()
            }
        case .object(let path):
            guard let session else { throw KintoError.internalError("no storage session") }
            var handler = ResourceHandler(api: self, request: request, path: path, session: session)
            switch request.method {
            case "GET", "HEAD": return try handler.get()
            case "PUT": return try handler.put()
            case "PATCH": return try handler.patch()
            default: return try handler.delete()
            }
        }
    }

    /// `GET /v1/`: what this server is and what it can do.
    func hello(_ request: APIRequest) -> APIResponse {
        var capabilities: [String: JSON] = [
            "permissions_endpoint": ["description": "List every object the caller holds a permission on", "url": "https://docs.kinto-storage.org/en/stable/api/1.x/permissions.html#list-every-permissions"],
            "schema": ["description": "Validates records against the JSON Schema in their collection's metadata", "url": "https://docs.kinto-storage.org/en/stable/api/1.x/collections.html#collection-json-schema"],
        ]
        capabilities["streams"] = [
            "description": "Every change of a collection as Server-Sent Events: GET its records with Accept: text/event-stream; resume with _since or Last-Event-ID",
            "url": "https://github.com/ferry-sync/ferry#real-time-streams",
        ]
        capabilities["webhooks"] = [
            "description": "POST each change of a collection to registered URLs, signed with HMAC-SHA256 (Ferry-Signature), retried with backoff; /buckets/B/collections/C/webhooks",
            "url": "https://github.com/ferry-sync/ferry#webhooks",
        ]
        capabilities["long_poll"] = [
            "description": "A records list with _since and _wait=SECONDS answers as soon as a change exists",
            "url": "https://github.com/ferry-sync/ferry#real-time-streams",
            "max_wait": .int(Int64(Self.maxWaitSeconds)),
        ]
        if authenticator?.settings.policies.contains(.account) == true {
            capabilities["accounts"] = ["description": "Manage user accounts", "url": "https://docs.kinto-storage.org/en/latest/api/1.x/accounts.html"]
        }
        var body: [String: JSON] = [
            "project_name": "ferry",
            "project_version": .string(settings.version),
            "http_api_version": "1.22",
            "project_docs": "https://github.com/ferry-sync/ferry#readme",
            "url": .string(request.baseURL + "/"),
            "settings": [
                "batch_max_requests": .int(Int64(settings.batchMaxRequests)),
                "readonly": .bool(settings.readonly),
                "explicit_permissions": true,
                "paginate_by": settings.paginateBy.map { .int(Int64($0)) } ?? .null,
                "storage_max_fetch_size": .int(Int64(settings.maxFetchSize)),
            ],
            "capabilities": .object(capabilities),
        ]
        if let user = request.identity.userID {
            body["user"] = ["id": .string(user), "principals": .array(request.identity.principals.map { .string($0) })]
        }
        return APIResponse(body: .json(.object(body)))
    }
}

/// The version of this build.
public enum FerryVersion {
    public static let current = "0.1.0"
    public static let commit = "unknown"
}
