import FerryCore
import FerryStore
import HTTPTypes
public import Hummingbird
import Logging
import NIOCore

/// A request's context: Hummingbird's, plus the client's address (the rate limit of anonymous requests).
public struct FerryRequestContext: RequestContext {
    public var coreContext: CoreRequestContextStorage
    public let remoteAddress: String?

    public init(source: ApplicationRequestContextSource) {
        coreContext = .init(source: source)
        remoteAddress = source.channel.remoteAddress?.ipAddress
    }
}

/// The HTTP face of Ferry: turns Hummingbird requests into ``APIRequest``s, authenticates,
/// enforces the limits (body size and time, request rate), logs and measures every request.
/// Credentials never reach the log: only the method, route, path, status and duration do.
public struct FerryResponder: HTTPResponder {
    public typealias Context = FerryRequestContext

    let api: KintoAPI
    let limits: RequestLimits
    let metrics: ServerMetrics
    /// `https` when the server serves TLS, else `http`: the scheme of the links it writes.
    let scheme: String
    let trustedProxies: TrustedProxies
    /// Which browser pages may call the API.
    let cors: CORSPolicy
    /// Whether a path without `/v1` is answered with a `307` to it under `/v1` (else 404).
    let versionPrefixRedirect: Bool
    let inFlight = InFlight()
    let streamSlots = StreamSlots()
    /// The `/admin` pages; nil when `admin_enabled` is off.
    let admin: AdminPages?

    public init(api: KintoAPI, limits: RequestLimits, metrics: ServerMetrics, scheme: String = "http",
                trustedProxies: TrustedProxies = TrustedProxies([]), cors: CORSPolicy = CORSPolicy(),
                versionPrefixRedirect: Bool = true, admin: Bool = true) {
        self.api = api
        self.admin = admin ? AdminPages(api: api, metrics: { [metrics] in metrics.exposition() }) : nil
        self.limits = limits
        self.metrics = metrics
        self.scheme = scheme
        self.trustedProxies = trustedProxies
        self.cors = cors
        self.versionPrefixRedirect = versionPrefixRedirect
    }

    public func respond(to request: Request, context: Context) async throws -> Response {
        let start = ContinuousClock.now
        let requestID = Self.makeRequestID()
        let path = request.uri.path
        let method = request.method.rawValue
        var routeName = "unknown"
        var apiResponse: APIResponse
        let isAPI = path == "/v1" || path.hasPrefix("/v1/")
        admin?.figures.offer { metrics.exposition() }
        let origin = cors.verdict(origin: request.headers[.origin])
        if request.method == .options {
            apiResponse = preflight(request, path: path)
            routeName = "preflight"
        } else if isAPI, case .refused(let refused) = origin {
            // Before anything runs: a page of another origin changes nothing here.
            apiResponse = APIResponse(error: CORSPolicy.refusal(origin: refused))
            routeName = "cors-refused"
        } else if path == "/metrics" {
            await refreshStorageSize()
            apiResponse = APIResponse(body: .text(metrics.exposition(), contentType: "text/plain; version=0.0.4"))
            routeName = "/metrics"
        } else if path == "/" {
            apiResponse = APIResponse(status: 307, headers: [("Location", "/v1/")])
            routeName = "/"
        } else if let admin, path == "/admin" || path.hasPrefix("/admin/") {
            if request.method == .get, let opened = admin.stream(request) {
                // The live view: the collection's event stream as the session's user.
                switch await openStream(opened.request, stream: opened.stream, context: context, requestID: requestID) {
                case .opened(let response):
                    metrics.request(route: "admin-stream", method: method, status: 200, seconds: 0)
                    return response
                case .refused(let answer):
                    apiResponse = answer
                }
                routeName = "admin-stream"
            } else {
                if path.hasPrefix("/admin/server") { await refreshStorageSize() }
                apiResponse = await handleAdmin(request, admin: admin, context: context)
                routeName = "admin"
            }
        } else if request.method == .get, let stream = EventStream.target(path: path, accept: request.headers[.accept]) {
            // A stream's answer is its first line: what follows is logged when it ends.
            switch await openStream(request, stream: stream, context: context, requestID: requestID) {
            case .opened(var response):
                if case .allowed(let headers) = origin {
                    for (name, value) in headers {
                        if let field = HTTPField.Name(name) { response.headers.append(HTTPField(name: field, value: value)) }
                    }
                }
                metrics.request(route: "records-stream", method: method, status: 200, seconds: 0)
                context.logger.info("stream opened", metadata: ["ferry.request.id": .string(requestID), "ferry.path": .string(path)])
                return response
            case .refused(let answer):
                apiResponse = answer
                routeName = "records-stream"
            }
        } else if isAPI {
            let load = inFlight.enter()
            var answer = await handleAPI(request, subpath: String(path.dropFirst(3)), context: context)
            inFlight.leave()
            if load > limits.busyThreshold, answer.header("Backoff") == nil {
                answer.headers.append(("Backoff", String(limits.busyBackoff)))
            }
            apiResponse = answer
            routeName = apiResponse.routeName
        } else if path.hasPrefix(Self.attachmentsPrefix), api.attachments != nil {
            // Attachment files (kinto-attachment's base_url, served here).
            switch await admit(Self.headerMap(request), context: context) {
            case .admitted(let identity):
                let location = String(path.dropFirst(Self.attachmentsPrefix.count))
                apiResponse = await api.attachmentFile(location: location, identity: identity, method: request.method)
            case .refused(let answer):
                apiResponse = answer
            }
            routeName = "attachment-file"
        } else if versionPrefixRedirect, let location = Self.versionRedirect(path: path, query: request.uri.query) {
            // Kinto's: method and body go along (307), so a PUT is repeated under /v1.
            apiResponse = APIResponse(status: 307, headers: [("Location", location)])
            routeName = "version-redirect"
        } else {
            apiResponse = APIResponse(error: .missingResource)
        }
        if case .allowed(let headers) = origin, apiResponse.header("Access-Control-Allow-Origin") == nil {
            apiResponse.headers += headers
        }
        let response = makeResponse(apiResponse, requestID: requestID, isHead: request.method == .head)
        let elapsed = ContinuousClock.now - start
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        metrics.request(route: routeName, method: method, status: apiResponse.status, seconds: seconds)
        context.logger.info("request", metadata: [
            "ferry.request.id": .string(requestID),
            "ferry.method": .string(method),
            "ferry.route": .string(routeName),
            "ferry.path": .string(path),
            "ferry.status": .stringConvertible(apiResponse.status),
            "ferry.duration_ms": .stringConvertible((seconds * 100_000).rounded() / 100),
        ])
        return response
    }

    /// The answer to `OPTIONS` on `path`: a CORS preflight on the route's methods, or 404 where
    /// no route is (a path under `/v1` that names nothing, or one without `/v1` that is not redirected).
    func preflight(_ request: Request, path: String) -> APIResponse {
        let methods: [HTTPRequest.Method]
        if path == "/metrics" || path == "/" || (path.hasPrefix(Self.attachmentsPrefix) && api.attachments != nil) {
            methods = [.get, .head]
        } else {
            let below: String
            if path == "/v1" || path.hasPrefix("/v1/") {
                below = String(path.dropFirst(3))
            } else if versionPrefixRedirect, Self.versionRedirect(path: path, query: nil) != nil {
                // The page's request will be redirected to this route under /v1.
                below = path
            } else {
                return APIResponse(error: .missingResource)
            }
            guard let route = try? Route(below), api.serves(route) else { return APIResponse(error: .missingResource) }
            methods = route.allowedMethods
        }
        return cors.preflight(origin: request.headers[.origin], requestMethod: request.headers[.accessControlRequestMethod],
                              requestHeaders: request.headers[values: .accessControlRequestHeaders].joined(separator: ","), methods: methods)
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

    /// Who is asking (within the request rate limit), or the answer that refuses the request.
    enum Admission {
        case admitted(Identity)
        case refused(APIResponse)
    }

    func admit(_ headers: [String: String], context: Context) async -> Admission {
        let identity: Identity
        do {
            identity = try await api.authenticate(authorization: headers["authorization"])
        } catch {
            return .refused(APIResponse(error: error))
        }
        if let limiter = limits.rateLimiter,
           let wait = limiter.admit(identity.userID ?? "anonymous@" + (context.remoteAddress ?? "?")) {
            return .refused(APIResponse(error: .tooManyRequests(retryAfter: wait, limit: limiter.requests, seconds: limiter.seconds)))
        }
        return .admitted(identity)
    }

    func handleAPI(_ request: Request, subpath: String, context: Context) async -> APIResponse {
        let headers = Self.headerMap(request)
        let identity: Identity
        switch await admit(headers, context: context) {
        case .admitted(let admitted): identity = admitted
        case .refused(let answer): return answer
        }
        let host = request.head.authority ?? headers["host"] ?? "localhost"
        let scheme = trustedProxies.scheme(served: self.scheme, remoteAddress: context.remoteAddress) { headers[$0] }
        var apiRequest = APIRequest(
            method: request.method, path: subpath,
            query: APIRequest.parseQuery(Substring(request.uri.query ?? "")),
            headers: headers, identity: identity, baseURL: "\(scheme)://\(host)/v1")
        var bodyLimit = limits.maxBodySize
        var overLimit = KintoError.tooLarge(limit: bodyLimit)
        if api.attachments != nil, subpath.hasSuffix("/attachment"), case .attachment(let path)? = try? Route(subpath), request.method == .post || request.method == .delete {
            // An upload is refused before its body is read where the headers and the caller's
            // permissions already say so; its body may hold a file up to attachment_max_size.
            if let refusal = await api.attachmentPrecheck(apiRequest, path: path) { return refusal }
            bodyLimit = api.attachmentBodyLimit
            overLimit = KintoAPI.attachmentTooLarge(api.attachments!.settings.maxSize)
        }
        let maxBodySize = bodyLimit
        let tooLarge = overLimit
        if let length = headers["content-length"].flatMap(Int.init), length > maxBodySize {
            return APIResponse(error: tooLarge)
        }
        var bodyBytes: [UInt8] = []
        if request.method != .get && request.method != .head {
            switch await collectBody(request, maxBodySize: maxBodySize, tooLarge: tooLarge) {
            case .success(let bytes): bodyBytes = bytes
            case .failure(let error): return APIResponse(error: error)
            }
        }
        apiRequest.body = bodyBytes
        return await handleInTime(apiRequest)
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

    /// A request's body, up to `maxBodySize` bytes and within the body timeout: a client that
    /// trickles its body must not hold a connection and a task forever.
    func collectBody(_ request: Request, maxBodySize: Int, tooLarge: KintoError) async -> Result<[UInt8], KintoError> {
        let body = request.body
        let timeout = limits.bodyTimeout
        return await withTaskGroup(of: Result<[UInt8], KintoError>?.self) { group in
            group.addTask {
                do {
                    return .success(Array(try await body.collect(upTo: maxBodySize).readableBytesView))
                } catch {
                    return .failure(tooLarge)
                }
            }
            group.addTask {
                try? await Task.sleep(nanoseconds: UInt64(timeout * 1e9))
                return Task.isCancelled ? nil : .failure(.requestTimeout(seconds: timeout))
            }
            var outcome: Result<[UInt8], KintoError> = .failure(.requestTimeout(seconds: timeout))
            while let next = await group.next() {
                if let next {
                    outcome = next
                    break
                }
            }
            group.cancelAll()
            return outcome
        }
    }

    /// A page of `/admin` (its forms' bodies read as the API's are).
    /// Reads the database's size into its gauge: on demand, where the figures are shown.
    func refreshStorageSize() async {
        if let bytes = await api.storage.sizeInBytes() { metrics.storageSize(bytes) }
    }

    func handleAdmin(_ request: Request, admin: AdminPages, context: Context) async -> APIResponse {
        let headers = Self.headerMap(request)
        let maxBodySize = limits.maxBodySize
        if let length = headers["content-length"].flatMap(Int.init), length > maxBodySize { return APIResponse(error: .tooLarge(limit: maxBodySize)) }
        var body: [UInt8] = []
        if request.method == .post {
            switch await collectBody(request, maxBodySize: maxBodySize, tooLarge: .tooLarge(limit: maxBodySize)) {
            case .success(let bytes): body = bytes
            case .failure(let error): return APIResponse(error: error)
            }
        }
        let host = request.head.authority ?? headers["host"] ?? "localhost"
        let scheme = trustedProxies.scheme(served: self.scheme, remoteAddress: context.remoteAddress) { headers[$0] }
        let path = request.uri.path
        return await admin.respond(AdminPages.Request(
            method: request.method, path: path == "/admin" ? "" : String(path.dropFirst("/admin".count)),
            query: APIRequest.parseQuery(Substring(request.uri.query ?? "")), headers: headers, body: body,
            scheme: scheme, baseURL: "\(scheme)://\(host)/v1", remoteAddress: context.remoteAddress))
    }

    func makeResponse(_ response: APIResponse, requestID: String, isHead: Bool) -> Response {
        var fields = HTTPFields()
        var bytes: [UInt8] = []
        switch response.body {
        case .empty:
            if response.status != 304 && response.status != 307 { fields[.contentType] = "application/json" }
        case .json(let json):
            fields[.contentType] = "application/json"
            bytes = json.serializedBytes()
        case .raw(let raw):
            fields[.contentType] = "application/json"
            bytes = raw
        case .text(let text, let contentType):
            fields[.contentType] = contentType
            bytes = Array(text.utf8)
        case .bytes(let raw, let contentType):
            fields[.contentType] = contentType
            bytes = raw
        }
        for (name, value) in response.headers {
            if let field = HTTPField.Name(name) { fields.append(HTTPField(name: field, value: value)) }
        }
        fields[Self.requestIDHeader] = requestID
        if isHead {
            fields[.contentLength] = String(bytes.count)
            return Response(status: .init(code: response.status), headers: fields, body: .init())
        }
        return Response(status: .init(code: response.status), headers: fields, body: .init(byteBuffer: ByteBuffer(bytes: bytes)))
    }

    static let requestIDHeader = HTTPField.Name("X-Request-Id")!
    /// Where attachment files are served (the default `capabilities.attachments.base_url`).
    static let attachmentsPrefix = "/attachments/"

    /// 16 random hex digits: one draw from the system's generator (a draw per digit was a
    /// `getrandom` system call each).
    static func makeRequestID() -> String {
        var generator = SystemRandomNumberGenerator()
        return withUnsafeBytes(of: generator.next() as UInt64) { Hex.encode($0) }
    }
}
