import CFerryMemory
import FerryCore
import FerryStore
import HTTPTypes
public import Hummingbird
import Logging
import NIOCore

/// The HTTP face of Ferry: Hummingbird middleware for what every request goes through (its id,
/// metrics and log; CORS; the load's `Backoff`; authentication and the rate limit; the body and
/// its limits), then the
/// dispatch of its path to the API, its streams, the admin pages, metrics and attachment files.
public struct FerryResponder: HTTPResponder {
    public typealias Context = FerryRequestContext

    let api: KintoAPI
    let limits: RequestLimits
    let metrics: ServerMetrics
    /// Whether a path without `/v1` is answered with a `307` to it under `/v1` (else 404).
    let versionPrefixRedirect: Bool
    let streamSlots = StreamSlots()
    /// The `/admin` pages; nil when `admin_enabled` is off.
    let admin: AdminPages?
    let log: RequestLogMiddleware
    let cors: CORSMiddleware
    let backoff: BackoffMiddleware
    let authentication: AuthenticationMiddleware
    let body: RequestBodyMiddleware

    public init(api: KintoAPI, limits: RequestLimits, metrics: ServerMetrics, scheme: String = "http",
                trustedProxies: TrustedProxies = TrustedProxies([]), cors: CORSPolicy = CORSPolicy(),
                versionPrefixRedirect: Bool = true, admin: Bool = true) {
        self.api = api
        self.admin = admin ? AdminPages(api: api, metrics: { [metrics] in metrics.exposition() }) : nil
        self.limits = limits
        self.metrics = metrics
        self.versionPrefixRedirect = versionPrefixRedirect
        log = RequestLogMiddleware(metrics: metrics)
        self.cors = CORSMiddleware(policy: cors) { path in
            Self.methods(path: path, api: api, versionPrefixRedirect: versionPrefixRedirect)
        }
        backoff = BackoffMiddleware(threshold: limits.busyThreshold, seconds: limits.busyBackoff)
        authentication = AuthenticationMiddleware(api: api, rateLimiter: limits.rateLimiter, scheme: scheme, trustedProxies: trustedProxies)
        body = RequestBodyMiddleware(limits: limits) { request, context in
            await Self.bodyAllowance(request, context: context, api: api, limits: limits)
        }
    }

    public func respond(to request: Request, context: Context) async throws -> Response {
        try await log.handle(request, context: context) { request, context in
            try await cors.handle(request, context: context) { request, context in
                try await backoff.handle(request, context: context) { request, context in
                    try await authentication.handle(request, context: context) { request, context in
                        try await body.handle(request, context: context) { request, context in
                            try await route(request, context: context)
                        }
                    }
                }
            }
        }
    }

    /// Whether `path` is the API's (under `/v1`).
    static func isAPI(_ path: String) -> Bool {
        path == "/v1" || path.hasPrefix("/v1/")
    }

    /// A request past the middleware, to the part of the server its path names.
    func route(_ request: Request, context: Context) async throws -> Response {
        let path = request.uri.path
        let outcome = context.outcome
        let answer: APIResponse
        admin?.figures.offer { metrics.exposition() }
        if path == "/metrics" {
            await refreshScrapedGauges()
            answer = APIResponse(body: .text(metrics.exposition(), contentType: "text/plain; version=0.0.4"))
            outcome.route = "/metrics"
        } else if path == "/" {
            answer = APIResponse(status: 307, headers: [("Location", "/v1/")])
            outcome.route = "/"
        } else if let admin, path == "/admin" || path.hasPrefix("/admin/") {
            if request.method == .get, let opened = admin.stream(request) {
                // The live view: the collection's event stream as the session's user, admitted
                // as the API's own requests are.
                outcome.route = "admin-stream"
                return try await authentication.handle(opened.request, context: context) { request, context in
                    await streamAnswer(request, stream: opened.stream, context: context)
                }
            } else {
                if path.hasPrefix("/admin/server") { await refreshScrapedGauges() }
                answer = await handleAdmin(request, admin: admin, context: context)
                outcome.route = "admin"
            }
        } else if request.method == .get, let stream = EventStream.target(path: path, accept: request.headers[.accept]) {
            outcome.route = "records-stream"
            return await streamAnswer(request, stream: stream, context: context)
        } else if Self.isAPI(path) {
            answer = await handleAPI(request, subpath: String(path.dropFirst(3)), context: context)
            outcome.route = answer.routeName
        } else if path.hasPrefix(Self.attachmentsPrefix), api.attachments != nil, let identity = context.identity {
            // Attachment files (kinto-attachment's base_url, served here).
            let location = String(path.dropFirst(Self.attachmentsPrefix.count))
            answer = await api.attachmentFile(location: location, identity: identity, method: request.method)
            outcome.route = "attachment-file"
        } else if versionPrefixRedirect, let location = Self.versionRedirect(path: path, query: request.uri.query) {
            // Kinto's: method and body go along (307), so a PUT is repeated under /v1.
            answer = APIResponse(status: 307, headers: [("Location", location)])
            outcome.route = "version-redirect"
        } else {
            answer = APIResponse(error: .missingResource)
        }
        return answer.response(isHead: request.method == .head)
    }

    /// A stream's answer: its first line, or the error that refuses it.
    func streamAnswer(_ request: Request, stream: EventStream, context: Context) async -> Response {
        switch await openStream(request, stream: stream, context: context) {
        case .opened(let response):
            context.outcome.isStream = true
            return response
        case .refused(let refusal):
            return refusal.response(isHead: false)
        }
    }

    /// The methods of the route at `path`, for a CORS preflight; nil where no route is (a path
    /// under `/v1` that names nothing, or one without `/v1` that is not redirected).
    static func methods(path: String, api: KintoAPI, versionPrefixRedirect: Bool) -> [HTTPRequest.Method]? {
        if path == "/metrics" || path == "/" || (path.hasPrefix(attachmentsPrefix) && api.attachments != nil) {
            return [.get, .head]
        }
        let below: String
        if isAPI(path) {
            below = String(path.dropFirst(3))
        } else if versionPrefixRedirect, versionRedirect(path: path, query: nil) != nil {
            // The page's request will be redirected to this route under /v1.
            below = path
        } else {
            return nil
        }
        guard let route = try? Route(below), api.serves(route) else { return nil }
        return route.allowedMethods
    }

    /// Where Kinto's version-prefix redirect sends a path without `/v1` (`/buckets?_limit=2` →
    /// `/v1/buckets?_limit=2`), or nil for a path that names a version (`/v2/…`, as Kinto). The
    /// path and query go as they came, percent-encoded where they hold what a `Location` must not.
    static func versionRedirect(path: String, query: String?) -> String? {
        guard path.hasPrefix("/") else { return nil }
        let first = path.utf8.dropFirst()
        if first.first == UInt8(ascii: "v"), let digit = first.dropFirst().first, (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(digit) {
            return nil
        }
        var location = "/v1" + percentEncoded(path, keeping: "/")
        if let query { location += "?" + percentEncoded(query, keeping: "/?") }
        return location
    }

    /// `text` with every byte outside RFC 3986's path characters (and `extra`) percent-encoded;
    /// escapes already there (`%2F`) are kept, a `%` that starts none is encoded.
    static func percentEncoded(_ text: String, keeping extra: String) -> String {
        let kept = Set("-._~!$&'()*+,;=:@".utf8).union(extra.utf8)
        let hex = Array("0123456789ABCDEF".utf8)
        let input = Array(text.utf8)
        var bytes: [UInt8] = []
        bytes.reserveCapacity(input.count)
        for (i, byte) in input.enumerated() {
            switch byte {
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"):
                bytes.append(byte)
            case UInt8(ascii: "%") where i + 2 < input.count && APIRequest.hexValue(input[i + 1]) != nil && APIRequest.hexValue(input[i + 2]) != nil:
                bytes.append(byte)
            case _ where kept.contains(byte):
                bytes.append(byte)
            default:
                bytes += [UInt8(ascii: "%"), hex[Int(byte >> 4)], hex[Int(byte & 0xF)]]
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// The request's headers by lower-case name (repeated fields joined with ", ").
    static func headerMap(_ request: Request) -> [String: String] {
        var headers: [String: String] = [:]
        for field in request.headers {
            let name = field.name.canonicalName
            if let existing = headers[name] { headers[name] = existing + ", " + field.value } else { headers[name] = field.value }
        }
        return headers
    }

    /// The API's request: what the middleware admitted and read, with the path below `/v1`.
    static func apiRequest(_ request: Request, subpath: String, context: Context) -> APIRequest {
        APIRequest(method: request.method, path: subpath, query: APIRequest.parseQuery(Substring(request.uri.query ?? "")),
                   headers: context.headers, body: context.body, identity: context.identity ?? .anonymous, baseURL: context.baseURL)
    }

    func handleAPI(_ request: Request, subpath: String, context: Context) async -> APIResponse {
        await handleInTime(Self.apiRequest(request, subpath: subpath, context: context))
    }

    /// How large a body may be: `max_body_size`, or for an attachment's upload `attachment_max_size`
    /// once the headers and the caller's permissions show it may be made (it is refused before
    /// its body is read where they do not).
    static func bodyAllowance(_ request: Request, context: Context, api: KintoAPI, limits: RequestLimits) async -> RequestBodyMiddleware.Allowance {
        let path = request.uri.path
        if api.attachments != nil, isAPI(path), path.hasSuffix("/attachment"), request.method == .post || request.method == .delete,
           case .attachment(let object)? = try? Route(String(path.dropFirst(3))) {
            if let refusal = await api.attachmentPrecheck(apiRequest(request, subpath: String(path.dropFirst(3)), context: context), path: object) {
                return .refused(refusal)
            }
            return .upTo(api.attachmentBodyLimit, else: KintoAPI.attachmentTooLarge(api.attachments!.settings.maxSize))
        }
        return .upTo(limits.maxBodySize, else: .tooLarge(limit: limits.maxBodySize))
    }

    /// The API's answer within the request timeout; past it a 503, and the request's storage work
    /// is rolled back, never committed after that answer (``StorageDeadline``).
    func handleInTime(_ request: APIRequest) async -> APIResponse {
        guard var seconds = limits.requestTimeout else { return await api.handle(request) }
        let wait = request.isRead ? request.query.last(where: { $0.0 == "_wait" }) : nil
        if let wait = wait.flatMap({ Double($0.1) }), wait.isFinite, wait > 0 {
            // A long-poll waits on purpose (KintoAPI checks the value).
            seconds += min(wait, Double(KintoAPI.maxWaitSeconds))
        } else if request.isRead, api.storage.stopsReadsAtDeadline {
            // A read commits nothing, so nothing needs to race its answer: it runs in this task,
            // the storage stops it at the deadline (SQLite's progress handler), and the API answers
            // that with the same 503. The two tasks of the race cost a GET a tenth of its throughput.
            return await read(request, within: seconds)
        }
        let api = api
        let retryAfter = api.settings.retryAfterSeconds
        let metrics = metrics
        return await StorageDeadline.answer(within: seconds, { await api.handle(request) }, timedOut: { deadline in
            metrics.storageError()
            return APIResponse(error: KintoAPI.timedOut(deadline.seconds, retryAfter: retryAfter))
        })
    }

    /// A read with a deadline its storage keeps by itself.
    func read(_ request: APIRequest, within seconds: Double) async -> APIResponse {
        let api = api
        let deadline = StorageDeadline(seconds: seconds)
        return await StorageDeadline.$current.withValue(deadline) {
            await api.handle(request)
        }
    }

    /// Reads the database's size and the memory in use into their gauges: on demand, where the
    /// figures are shown.
    func refreshScrapedGauges() async {
        if let bytes = await api.storage.sizeInBytes() { metrics.storageSize(bytes) }
        metrics.memory(heap: ferry_heap_in_use(), sqlite: SQLiteStorage.memoryInUse())
    }

    func handleAdmin(_ request: Request, admin: AdminPages, context: Context) async -> APIResponse {
        let headers = Self.headerMap(request)
        let (scheme, baseURL) = authentication.base(request, headers: headers, remoteAddress: context.remoteAddress)
        let path = request.uri.path
        return await admin.respond(AdminPages.Request(
            method: request.method, path: path == "/admin" ? "" : String(path.dropFirst("/admin".count)),
            query: APIRequest.parseQuery(Substring(request.uri.query ?? "")), headers: headers, body: context.body,
            scheme: scheme, baseURL: baseURL, remoteAddress: context.remoteAddress))
    }

    /// Where attachment files are served (the default `capabilities.attachments.base_url`).
    static let attachmentsPrefix = "/attachments/"

}
