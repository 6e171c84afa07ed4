import FerryCore
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
    let inFlight = InFlight()
    let streamSlots = StreamSlots()

    public init(api: KintoAPI, limits: RequestLimits, metrics: ServerMetrics, scheme: String = "http",
                trustedProxies: TrustedProxies = TrustedProxies([])) {
        self.api = api
        self.limits = limits
        self.metrics = metrics
        self.scheme = scheme
        self.trustedProxies = trustedProxies
    }

    public func respond(to request: Request, context: Context) async throws -> Response {
        let start = ContinuousClock.now
        let requestID = Self.makeRequestID()
        let path = request.uri.path
        let method = request.method.rawValue
        var routeName = "unknown"
        let apiResponse: APIResponse
        if path == "/metrics" {
            apiResponse = APIResponse(body: .text(metrics.exposition(), contentType: "text/plain; version=0.0.4"))
            routeName = "/metrics"
        } else if path == "/" {
            apiResponse = APIResponse(status: 307, headers: [("Location", "/v1/")])
            routeName = "/"
        } else if request.method == .get, let stream = EventStream.target(path: path, accept: request.headers[.accept]) {
            // A stream's answer is its first line: what follows is logged when it ends.
            switch await openStream(request, stream: stream, context: context, requestID: requestID) {
            case .opened(let response):
                metrics.request(route: "records-stream", method: method, status: 200, seconds: 0)
                context.logger.info("stream opened", metadata: ["ferry.request.id": .string(requestID), "ferry.path": .string(path)])
                return response
            case .refused(let answer):
                apiResponse = answer
                routeName = "records-stream"
            }
        } else if path == "/v1" || path.hasPrefix("/v1/") {
            let load = inFlight.enter()
            var answer = await handleAPI(request, subpath: String(path.dropFirst(3)), context: context)
            inFlight.leave()
            if load > limits.busyThreshold, answer.header("Backoff") == nil {
                answer.headers.append(("Backoff", String(limits.busyBackoff)))
            }
            apiResponse = answer
            routeName = apiResponse.routeName
        } else {
            apiResponse = APIResponse(error: .missingResource)
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
        let maxBodySize = limits.maxBodySize
        if let length = headers["content-length"].flatMap(Int.init), length > maxBodySize {
            return APIResponse(error: .tooLarge(limit: maxBodySize))
        }
        var bodyBytes: [UInt8] = []
        if request.method != .get && request.method != .head {
            let body = request.body
            let timeout = limits.bodyTimeout
            // A client that trickles its body must not hold a connection and a task forever.
            let collected: Result<[UInt8], KintoError> = await withTaskGroup(of: Result<[UInt8], KintoError>?.self) { group in
                group.addTask {
                    do {
                        return .success(Array(try await body.collect(upTo: maxBodySize).readableBytesView))
                    } catch {
                        return .failure(.tooLarge(limit: maxBodySize))
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
            switch collected {
            case .success(let bytes): bodyBytes = bytes
            case .failure(let error): return APIResponse(error: error)
            }
        }
        let host = request.head.authority ?? headers["host"] ?? "localhost"
        let scheme = trustedProxies.scheme(served: self.scheme, remoteAddress: context.remoteAddress) { headers[$0] }
        let apiRequest = APIRequest(
            method: request.method, path: subpath,
            query: APIRequest.parseQuery(Substring(request.uri.query ?? "")),
            headers: headers, body: bodyBytes, identity: identity, baseURL: "\(scheme)://\(host)/v1")
        return await api.handle(apiRequest)
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

    static func makeRequestID() -> String {
        let hex = Array("0123456789abcdef")
        var generator = SystemRandomNumberGenerator()
        return String((0..<16).map { _ in hex[Int(generator.next() % 16)] })
    }
}
