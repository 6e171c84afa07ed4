public import FerryCore
public import FerryStore
import Foundation
import HTTPTypes

/// The Kinto HTTP API 1.x as a function from ``APIRequest`` to ``APIResponse``.
///
/// Transport-free: the HTTP layer (``FerryResponder``) and `/batch` both call
/// ``handle(_:)``; every request runs in one storage transaction, so an error
/// leaves the data as it was.
public struct KintoAPI: Sendable {
    /// Settings announced in `GET /v1/` and obeyed by every endpoint.
    public struct Settings: Sendable {
        /// Most sub-requests one `POST /batch` may hold (Kinto's default is 25; see
        /// ``ServerConfiguration/batchMaxRequests`` for why Ferry's is 1000).
        public var batchMaxRequests: Int = 1000
        /// The largest request body, announced so clients can size their batches.
        public var maxBodySize: Int = 1 << 20
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
        /// Serve `POST /__flush__`, which empties the server (Kinto's flush plugin; off by default).
        public var flushEndpoint: Bool = false
        /// `/buckets/default` is the caller's personal bucket, created with the collections named
        /// under it on first use (Kinto's `default_bucket` plugin; off by default).
        public var defaultBucket: Bool = false
        /// Where people read about this server (`project_docs` of `GET /v1/`, `source` of
        /// `__version__`, the `url` of Ferry's own capabilities); nil: not announced.
        public var projectURL: String? = nil
        /// The public version string.
        public var version: String = FerryVersion.current
        /// Attachments (the kinto-attachment API), where files go; nil: not served.
        public var attachments: AttachmentSettings? = nil
        /// How long tombstones are kept where a collection does not say (``TombstoneRetention``).
        public var tombstoneRetention: TombstoneRetention = .forever
        /// Seconds between two purges of old tombstones.
        public var tombstonePurgeInterval: Double = 3600
        /// A batch's record PUTs take the bulk path (``KintoAPI/prepareRecordWrite(_:rules:)``):
        /// off only to compare it with the path of one request at a time, answer by answer.
        var bulkRecordWrites: Bool = true

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
    /// Reconciliation items per collection timestamp (``ReconcileItemsCache``).
    let reconcileCache = ReconcileItemsCache()
    /// Change-feed reads shared by streams woken together.
    let feedReads = SharedReads()
    /// Raised when a webhook is registered, changed or deleted (the dispatcher looks again).
    public let webhooksChanged = WakeSignal()
    /// The files of attachments (nil when not served).
    let attachments: AttachmentStore?

    public init(storage: any Storage, settings: Settings = .init(), metrics: ServerMetrics? = nil, authenticator: Authenticator? = nil) {
        self.storage = storage
        self.settings = settings
        self.metrics = metrics
        self.authenticator = authenticator
        attachments = settings.attachments.map(AttachmentStore.init(settings:))
    }

    /// The identity behind an `Authorization` header (anonymous without one).
    public func authenticate(authorization: String?) async throws(KintoError) -> Identity {
        guard let authenticator else {
            return try BasicAuthenticator(secret: "").identity(authorization: authorization)
        }
        return try await authenticator.identity(authorization: authorization, storage: storage)
    }

    /// Answers one request: its route and operation are found once, then the operation runs in
    /// the transaction it asks for, and what its write may have changed is announced.
    public func handle(_ request: APIRequest) async -> APIResponse {
        var request = request
        var response: APIResponse
        var routeName = "unknown"
        var effects = WriteEffects()
        var attachmentScope: AttachmentScope?
        do {
            let personal = try personalBucket(request)
            if let personal { request = personal.request }
            let route = try Route(request.path)
            routeName = route.name
            if !request.isRead {
                effects = route.effects
                attachmentScope = Self.attachmentScope(route: route, method: request.method)
            }
            var prepared = try idempotent(try self.operation(for: request, route: route, inBatch: false), request: request)
            if let personal, !personal.implicit.isEmpty {
                // The personal bucket (and the collection named) first, in the request's own write
                // transaction; a read, or work that waits on its own, writes them first on its own.
                for path in personal.implicit { effects.formUnion(Route.object(path).effects) }
                let identity = request.identity
                switch prepared.access {
                case .none: break
                case .write, .read:
                    let inner = prepared
                    prepared = Operation(.write, session: { session, memo in
                        try self.createImplicitly(personal.implicit, for: identity, in: session)
                        return try inner.run(session, memo)
                    })
                    prepared.precheck = inner.precheck
                case .own:
                    try await storage.write(announcing: effects.announcements) { try self.createImplicitly(personal.implicit, for: identity, in: $0) }
                }
            }
            let operation = prepared
            try await operation.precheck?()
            switch operation.access {
            case .none: response = try operation.body(nil)
            case .read(let shape): response = try await storage.read(shape) { try operation.body($0) }
            case .write: response = try await storage.write(announcing: effects.announcements) { try operation.body($0) }
            case .own(let work): response = try await work()
            }
        } catch {
            response = errorResponse(error)
        }
        if !request.isRead { announce(effects, succeeded: response.status < 400) }
        if let attachmentScope, response.status < 400 { await cleanAttachments([attachmentScope]) }
        if let backoff = settings.backoffSeconds { response.headers.append(("Backoff", String(backoff))) }
        response.routeName = routeName
        return response
    }

    /// Whether this server answers `route` at all: `/__flush__` only where enabled, accounts
    /// only with an authenticator. Other routes answer even where they refuse the caller.
    func serves(_ route: Route) -> Bool {
        switch route {
        case .flush: settings.flushEndpoint
        case .accounts: authenticator != nil
        case .attachment: attachments != nil
        default: true
        }
    }

    /// Tells this process what a write may have changed: identity caches are dropped after any
    /// write to accounts or groups (even a refused one: it costs a re-read, never a stale
    /// answer); streams and the webhook dispatcher wake only for a write that succeeded.
    func announce(_ effects: WriteEffects, succeeded: Bool) {
        if effects.accountsOrGroups { authenticator?.accountsOrGroupsChanged() }
        guard succeeded else { return }
        if effects.allCollections {
            changeHub.changed(nil)
        } else {
            for collection in effects.collections { changeHub.changed(collection) }
        }
        if effects.webhooks { webhooksChanged.raise() }
    }

    /// What a write to `path` may change, for other processes (see ``WriteEffects/announcements``).
    static func announcements(for path: String) -> [String] {
        (try? Route(path))?.effects.announcements ?? []
    }

    /// The announcement that accounts or groups changed (identity caches must be dropped).
    public static let accountsChanged = "#accounts"
    /// The announcement that webhooks were registered, changed or removed (the process that
    /// delivers them must look again).
    public static let webhooksAnnounced = "#webhooks"

    func errorResponse(_ error: any Error) -> APIResponse {
        switch error {
        case let error as KintoError:
            return APIResponse(error: error)
        case let error as StorageError where error.isTimedOut:
            metrics?.storageError()
            return APIResponse(error: Self.timedOut(error.message, retryAfter: settings.retryAfterSeconds))
        case let error as StorageError:
            metrics?.storageError()
            return APIResponse(error: .backend("The storage backend failed: \(error.message). Retry later.", retryAfter: settings.retryAfterSeconds))
        default:
            metrics?.storageError()
            return APIResponse(error: .backend("The storage backend failed: \(error). Retry later.", retryAfter: settings.retryAfterSeconds))
        }
    }

    /// The 503 of a request that ran out of time (`request_timeout`): nothing it asked was done.
    static func timedOut(_ seconds: Double, retryAfter: Int) -> KintoError {
        timedOut(StorageError.timedOut(seconds: seconds).message, retryAfter: retryAfter)
    }

    static func timedOut(_ message: String, retryAfter: Int) -> KintoError {
        .backend("Request timed out: \(message). Retry later.", retryAfter: retryAfter)
    }

    /// `GET /v1/`: what this server is and what it can do.
    func hello(_ request: APIRequest) -> APIResponse {
        var capabilities: [String: JSON] = [
            "permissions_endpoint": ["description": "List every object the caller holds a permission on", "url": "https://docs.kinto-storage.org/en/stable/api/1.x/permissions.html#list-every-permissions"],
            "schema": ["description": "Validates records against the JSON Schema in their collection's metadata", "url": "https://docs.kinto-storage.org/en/stable/api/1.x/collections.html#collection-json-schema"],
        ]
        // Ferry's own capabilities link to the project only when the settings say where it is.
        let projectURL: JSON? = settings.projectURL.map(JSON.string)
        capabilities["streams"] = .object([
            "description": "Every change of a collection as Server-Sent Events: GET its records with Accept: text/event-stream; resume with _since or Last-Event-ID",
            "url": projectURL,
        ].compactMapValues { $0 })
        capabilities["webhooks"] = .object([
            "description": "POST each change of a collection to registered URLs, signed with HMAC-SHA256 (Ferry-Signature), retried with backoff; /buckets/B/collections/C/webhooks",
            "url": projectURL,
        ].compactMapValues { $0 })
        capabilities["long_poll"] = .object([
            "description": "A records list with _since and _wait=SECONDS answers as soon as a change exists",
            "url": projectURL,
            "max_wait": .int(Int64(Self.maxWaitSeconds)),
        ].compactMapValues { $0 })
        capabilities["reconcile"] = reconcileCapability(projectURL: projectURL)
        capabilities["tombstone_retention"] = retentionCapability(projectURL: projectURL)
        if let attachments = attachmentCapability(request) { capabilities["attachments"] = attachments }
        if settings.flushEndpoint {
            capabilities["flush_endpoint"] = ["description": "The __flush__ endpoint can be used to remove all data from all backends.",
                                              "url": "https://docs.kinto-storage.org/en/stable/api/1.x/flush.html"]
        }
        if settings.defaultBucket {
            capabilities["default_bucket"] = ["description": "The default bucket is an alias for a personal bucket where collections are created implicitly.",
                                              "url": "https://docs.kinto-storage.org/en/stable/api/1.x/buckets.html#personal-bucket-default"]
        }
        if authenticator?.settings.policies.contains(.account) == true {
            capabilities["accounts"] = ["description": "Manage user accounts", "url": "https://docs.kinto-storage.org/en/latest/api/1.x/accounts.html"]
        }
        var body: [String: JSON] = [
            "project_name": "ferry",
            "project_version": .string(settings.version),
            "http_api_version": "1.22",
            "url": .string(request.baseURL + "/"),
            "settings": [
                "batch_max_requests": .int(Int64(settings.batchMaxRequests)),
                "max_body_size": .int(Int64(settings.maxBodySize)),
                "readonly": .bool(settings.readonly),
                "explicit_permissions": true,
                "paginate_by": settings.paginateBy.map { .int(Int64($0)) } ?? .null,
                "storage_max_fetch_size": .int(Int64(settings.maxFetchSize)),
            ],
            "capabilities": .object(capabilities),
        ]
        if let projectURL = settings.projectURL { body["project_docs"] = .string(projectURL) }
        if let user = request.identity.userID {
            body["user"] = ["id": .string(user), "principals": .array(request.identity.principals.map { .string($0) })]
            if settings.defaultBucket, let authenticator { body["user"]?["bucket"] = .string(authenticator.personalBucketID(of: user)) }
        }
        return APIResponse(body: .json(.object(body)))
    }
}
