import FerryCore
import FerryStore
import HTTPTypes
public import Hummingbird
import Logging
import NIOCore

/// A request's context: Hummingbird's, the client's address, and what the middleware learns on
/// the way in (the request id, the caller, the body), so the handlers below read it once.
public struct FerryRequestContext: RequestContext {
    public var coreContext: CoreRequestContextStorage
    /// The client's address (the rate limit of anonymous requests, the admin sign-in limit).
    public let remoteAddress: String?
    /// This request's id, sent back as `X-Request-Id` and logged (``RequestLogMiddleware``).
    public internal(set) var requestID = ""
    /// The request's headers by lower-case name, repeated fields joined with ", "
    /// (``AuthenticationMiddleware``, on the routes it guards).
    public internal(set) var headers: [String: String] = [:]
    /// Who is asking, once ``AuthenticationMiddleware`` admitted the request; nil on routes it does not guard.
    public internal(set) var identity: Identity?
    /// The API's base URL as the client reached it (scheme, host, `/v1`).
    public internal(set) var baseURL = ""
    /// The body, read whole within its limits by ``RequestBodyMiddleware`` (empty for `GET`, `HEAD`).
    public internal(set) var body: [UInt8] = []
    /// What the handler tells the log on the way out.
    let outcome = RequestOutcome()

    public init(source: ApplicationRequestContextSource) {
        coreContext = .init(source: source)
        remoteAddress = source.channel.remoteAddress?.ipAddress
    }
}

/// The route's name a handler reports to ``RequestLogMiddleware``, and whether its answer is an
/// event stream (logged when it opens, its body runs on after). One request's task writes it,
/// then reads it, in turn: nothing shares it.
final class RequestOutcome: @unchecked Sendable {
    var route = "unknown"
    var isStream = false
}

/// The outermost layer: gives the request its id, and once the answer is made, sends the id
/// back, counts the request in the metrics and logs it. Credentials never reach the log: only
/// the method, route, path, status and duration do.
public struct RequestLogMiddleware: RouterMiddleware {
    public typealias Context = FerryRequestContext
    let metrics: ServerMetrics

    public func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let start = ContinuousClock.now
        var context = context
        context.requestID = Self.makeRequestID()
        var response = try await next(request, context)
        response.headers[Self.requestIDHeader] = context.requestID
        let outcome = context.outcome
        let status = Int(response.status.code)
        let method = request.method.rawValue
        if outcome.isStream, status == 200 {
            // A stream's answer is its first line: what follows is logged when it ends.
            metrics.request(route: outcome.route, method: method, status: status, seconds: 0)
            context.logger.info("stream opened", metadata: ["ferry.request.id": .string(context.requestID), "ferry.path": .string(request.uri.path)])
            return response
        }
        let elapsed = ContinuousClock.now - start
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        metrics.request(route: outcome.route, method: method, status: status, seconds: seconds)
        context.logger.info("request", metadata: [
            "ferry.request.id": .string(context.requestID),
            "ferry.method": .string(method),
            "ferry.route": .string(outcome.route),
            "ferry.path": .string(request.uri.path),
            "ferry.status": .stringConvertible(status),
            "ferry.duration_ms": .stringConvertible((seconds * 100_000).rounded() / 100),
        ])
        return response
    }

    static let requestIDHeader = HTTPField.Name("X-Request-Id")!

    /// 16 random hex digits: one draw from the system's generator (a draw per digit was a
    /// `getrandom` system call each).
    static func makeRequestID() -> String {
        var generator = SystemRandomNumberGenerator()
        return withUnsafeBytes(of: generator.next() as UInt64) { Hex.encode($0) }
    }
}

/// Browsers' cross-origin rules: answers preflights (`OPTIONS`) with the route's methods,
/// refuses an API request from a page of an origin the policy does not allow before anything
/// runs, and adds the allowed origin's headers to every other answer.
public struct CORSMiddleware: RouterMiddleware {
    public typealias Context = FerryRequestContext
    let policy: CORSPolicy
    /// The methods a path's route takes, or nil where no route is (its preflight is a 404).
    let methods: @Sendable (_ path: String) -> [HTTPRequest.Method]?

    public func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let verdict = policy.verdict(origin: request.headers[.origin])
        if request.method == .options {
            context.outcome.route = "preflight"
            guard let methods = methods(request.uri.path) else {
                var missing = APIResponse(error: .missingResource)
                if case .allowed(let headers) = verdict { missing.headers += headers }
                return missing.response(isHead: false)
            }
            return policy.preflight(origin: request.headers[.origin], requestMethod: request.headers[.accessControlRequestMethod],
                                    requestHeaders: request.headers[values: .accessControlRequestHeaders].joined(separator: ","),
                                    methods: methods).response(isHead: false)
        }
        if FerryResponder.isAPI(request.uri.path), case .refused(let refused) = verdict {
            // Before anything runs: a page of another origin changes nothing here.
            context.outcome.route = "cors-refused"
            return APIResponse(error: CORSPolicy.refusal(origin: refused)).response(isHead: request.method == .head)
        }
        var response = try await next(request, context)
        if case .allowed(let headers) = verdict, response.headers[.accessControlAllowOrigin] == nil {
            for (name, value) in headers {
                if let field = HTTPField.Name(name) { response.headers.append(HTTPField(name: field, value: value)) }
            }
        }
        return response
    }
}

/// Kinto's `Backoff` under load: counts the API requests in flight (their bodies' reading
/// included) and, past `busy_threshold`, asks clients to wait `busy_backoff` seconds before their
/// next request.
public struct BackoffMiddleware: RouterMiddleware {
    public typealias Context = FerryRequestContext
    let threshold: Int
    let seconds: Int
    let inFlight = InFlight()

    public func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        guard FerryResponder.isAPI(request.uri.path) else { return try await next(request, context) }
        let load = inFlight.enter()
        defer { inFlight.leave() }
        var response = try await next(request, context)
        if load > threshold, response.headers[Self.backoff] == nil {
            response.headers[Self.backoff] = String(seconds)
        }
        return response
    }

    static let backoff = HTTPField.Name("Backoff")!
}

/// Who is asking, within the request rate: on the API and attachment files, authenticates the
/// `Authorization` header (an unknown scheme or a wrong password is refused here, before any
/// handler runs), applies the rate limit to the caller (or to the client's address when
/// anonymous), and puts the caller, the headers and the base URL in the context.
public struct AuthenticationMiddleware: RouterMiddleware {
    public typealias Context = FerryRequestContext
    let api: KintoAPI
    let rateLimiter: RateLimiter?
    /// `https` when the server serves TLS, else `http`: the scheme of the links it writes.
    let scheme: String
    let trustedProxies: TrustedProxies

    public func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let path = request.uri.path
        guard FerryResponder.isAPI(path) || (path.hasPrefix(FerryResponder.attachmentsPrefix) && api.attachments != nil) else {
            return try await next(request, context)
        }
        var context = context
        context.headers = FerryResponder.headerMap(request)
        let identity: Identity
        do {
            identity = try await api.authenticate(authorization: context.headers["authorization"])
        } catch {
            return APIResponse(error: error).response(isHead: request.method == .head)
        }
        if let rateLimiter, let wait = rateLimiter.admit(identity.userID ?? "anonymous@" + (context.remoteAddress ?? "?")) {
            let error = KintoError.tooManyRequests(retryAfter: wait, limit: rateLimiter.requests, seconds: rateLimiter.seconds)
            return APIResponse(error: error).response(isHead: request.method == .head)
        }
        context.identity = identity
        context.baseURL = base(request, headers: context.headers, remoteAddress: context.remoteAddress).url
        return try await next(request, context)
    }

    /// The scheme the client used (the served one, or a trusted proxy's word) and the API's base URL as it reached it.
    func base(_ request: Request, headers: [String: String], remoteAddress: String?) -> (scheme: String, url: String) {
        let host = request.head.authority ?? headers["host"] ?? "localhost"
        let scheme = trustedProxies.scheme(served: self.scheme, remoteAddress: remoteAddress) { headers[$0] }
        return (scheme, "\(scheme)://\(host)/v1")
    }
}

/// Reads the body of a request to the API or the admin pages whole, within its size limit
/// (refused at once when `Content-Length` says it is over) and within the body timeout (a client
/// that trickles its body must not hold a connection and a task forever), into the context.
public struct RequestBodyMiddleware: RouterMiddleware {
    public typealias Context = FerryRequestContext
    let limits: RequestLimits
    /// The limit of a request's body and the error past it, or the answer that refuses the
    /// request before its body is read (an upload the caller may not make).
    let allowance: @Sendable (Request, Context) async -> Allowance

    public enum Allowance: Sendable {
        case upTo(Int, else: KintoError)
        case refused(APIResponse)
    }

    public func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let path = request.uri.path
        guard request.method != .get, request.method != .head,
              FerryResponder.isAPI(path) || path == "/admin" || path.hasPrefix("/admin/") else {
            return try await next(request, context)
        }
        let (limit, tooLarge): (Int, KintoError)
        switch await allowance(request, context) {
        case .upTo(let bytes, let error): (limit, tooLarge) = (bytes, error)
        case .refused(let answer): return answer.response(isHead: false)
        }
        if let length = request.headers[.contentLength].flatMap(Int.init), length > limit {
            return APIResponse(error: tooLarge).response(isHead: false)
        }
        var context = context
        switch await collect(request.body, upTo: limit, tooLarge: tooLarge) {
        case .success(let bytes): context.body = bytes
        case .failure(let error): return APIResponse(error: error).response(isHead: false)
        }
        return try await next(request, context)
    }

    /// The body, read in a task of its own so an alarm (``Alarms``) can stop it at the body
    /// timeout: a client that sends its body slowly (or never) gets a 408 and holds nothing.
    func collect(_ body: RequestBody, upTo maxBodySize: Int, tooLarge: KintoError) async -> Result<[UInt8], KintoError> {
        let timeout = limits.bodyTimeout
        let reading = Task { () -> Result<[UInt8], KintoError> in
            do {
                return .success(Array(try await body.collect(upTo: maxBodySize).readableBytesView))
            } catch {
                return .failure(tooLarge)
            }
        }
        let alarm = Alarms.shared.set(in: timeout) { reading.cancel() }
        let outcome = await withTaskCancellationHandler { await reading.value } onCancel: { reading.cancel() }
        if case .success = outcome { Alarms.shared.cancel(alarm); return outcome }
        // A failed read: the body was too large, or the alarm stopped it.
        return Alarms.shared.cancel(alarm) ? outcome : .failure(.requestTimeout(seconds: timeout))
    }
}

extension APIResponse {
    /// This answer as Hummingbird's response (a `HEAD` gets the headers and the length only).
    func response(isHead: Bool) -> Response {
        var fields = HTTPFields()
        var bytes: [UInt8] = []
        switch body {
        case .empty:
            if status != 304 && status != 307 { fields[.contentType] = "application/json" }
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
        for (name, value) in headers {
            if let field = HTTPField.Name(name) { fields.append(HTTPField(name: field, value: value)) }
        }
        if isHead {
            fields[.contentLength] = String(bytes.count)
            return Response(status: .init(code: status), headers: fields, body: .init())
        }
        return Response(status: .init(code: status), headers: fields, body: .init(byteBuffer: ByteBuffer(bytes: bytes)))
    }
}
