import FerryCore
@testable import FerryServer
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import NIOCore
import Synchronization
import Testing

/// Ferry's middleware on a plain Hummingbird `Router`, as any Hummingbird application would use
/// them: what each puts in the context, and that what it refuses never reaches the handler.
@Suite struct MiddlewareTests {
    /// Counts the handler's runs: a refused request must leave it at zero.
    final class Runs: Sendable {
        let count = Mutex(0)
        func add() { count.withLock { $0 += 1 } }
        var value: Int { count.withLock { $0 } }
    }

    /// A router whose one handler (on `/v1/echo` and `/elsewhere`) answers what the context holds.
    func router(_ server: TestServer, limits: RequestLimits = RequestLimits(), metrics: ServerMetrics = ServerMetrics(),
                cors: CORSPolicy = CORSPolicy(), runs: Runs) -> Router<FerryRequestContext> {
        let router = Router(context: FerryRequestContext.self)
        let api = server.parts.api
        router.middlewares.add(RequestLogMiddleware(metrics: metrics))
        router.middlewares.add(CORSMiddleware(policy: cors) { _ in [.get, .post] })
        router.middlewares.add(AuthenticationMiddleware(api: api, rateLimiter: limits.rateLimiter, scheme: "http", trustedProxies: TrustedProxies([])))
        router.middlewares.add(RequestBodyMiddleware(limits: limits) { _, _ in .upTo(limits.maxBodySize, else: .tooLarge(limit: limits.maxBodySize)) })
        let echo: @Sendable (Request, FerryRequestContext) async throws -> Response = { _, context in
            runs.add()
            context.outcome.route = "echo"
            let answer: JSON = .object([
                "user": context.identity?.userID.map(JSON.string) ?? .null,
                "request_id": .string(context.requestID),
                "base_url": .string(context.baseURL),
                "body": .string(String(decoding: context.body, as: UTF8.self)),
            ])
            return Response(status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(bytes: answer.serializedBytes())))
        }
        router.get("/v1/echo", use: echo)
        router.post("/v1/echo", use: echo)
        router.get("/elsewhere", use: echo)
        return router
    }

    @Test func authenticationPutsTheCallerInTheContextAndRefusesBadCredentialsBeforeTheHandler() async throws {
        let server = try TestServer()
        let runs = Runs()
        try await Application(router: router(server, runs: runs)).test(.router) { client in
            try await client.execute(uri: "/v1/echo", method: .get, headers: [.authorization: TestServer.basic("alice")]) { response in
                #expect(response.status == .ok)
                let body = Wire.json(response)
                #expect(body["user"]?.stringValue == server.userID("alice"))
                #expect(body["base_url"]?.stringValue?.hasSuffix("/v1") == true)
            }
            #expect(runs.value == 1)
            // An unknown scheme and a malformed Basic header: Kinto's 401, and the handler never runs.
            for authorization in ["Digest abc", "Basic !!!not-base64!!!"] {
                try await client.execute(uri: "/v1/echo", method: .get, headers: [.authorization: authorization]) { response in
                    #expect(response.status == .unauthorized)
                    #expect(Wire.json(response)["message"]?.stringValue?.hasPrefix("Invalid Authorization header:") == true)
                    #expect(response.headers[.init("X-Request-Id")!] != nil)
                }
            }
            #expect(runs.value == 1)
            // Outside the API nobody is authenticated: no caller in the context.
            try await client.execute(uri: "/elsewhere", method: .get, headers: [.authorization: "Digest abc"]) { response in
                #expect(response.status == .ok)
                #expect(Wire.json(response)["user"] == .null)
            }
            #expect(runs.value == 2)
        }
    }

    @Test func theRateLimitRefusesPastItsBudgetWithRetryAfter() async throws {
        let server = try TestServer()
        let runs = Runs()
        var limits = RequestLimits()
        // A budget that refills one request in half an hour: a loaded machine never refills it mid-test.
        limits.rateLimiter = RateLimiter(requests: 2, seconds: 3600)
        try await Application(router: router(server, limits: limits, runs: runs)).test(.router) { client in
            for _ in 0..<2 {
                try await client.execute(uri: "/v1/echo", method: .get, headers: [.authorization: TestServer.basic("bob")]) { response in
                    #expect(response.status == .ok)
                }
            }
            try await client.execute(uri: "/v1/echo", method: .get, headers: [.authorization: TestServer.basic("bob")]) { response in
                #expect(response.status == .tooManyRequests)
                #expect(Int(response.headers[.retryAfter] ?? "") ?? 0 > 0)
            }
            // Another caller has a budget of its own.
            try await client.execute(uri: "/v1/echo", method: .get, headers: [.authorization: TestServer.basic("carol")]) { response in
                #expect(response.status == .ok)
            }
        }
        #expect(runs.value == 3)
    }

    @Test func theBodyIsReadIntoTheContextWithinItsLimit() async throws {
        let server = try TestServer()
        let runs = Runs()
        var limits = RequestLimits()
        limits.maxBodySize = 16
        try await Application(router: router(server, limits: limits, runs: runs)).test(.router) { client in
            try await client.execute(uri: "/v1/echo", method: .post, headers: [.authorization: TestServer.basic("alice")],
                                     body: ByteBuffer(string: "0123456789abcdef")) { response in
                #expect(response.status == .ok)
                #expect(Wire.json(response)["body"]?.stringValue == "0123456789abcdef")
            }
            #expect(runs.value == 1)
            // One byte over: 413 with Kinto's errno, and the handler never runs.
            try await client.execute(uri: "/v1/echo", method: .post, headers: [.authorization: TestServer.basic("alice")],
                                     body: ByteBuffer(string: "0123456789abcdefX")) { response in
                #expect(response.status.code == 413)
                #expect(Wire.json(response)["code"]?.intValue == 413)
            }
            #expect(runs.value == 1)
        }
    }

    @Test func everyAnswerCarriesItsOwnRequestIDAndIsCountedUnderTheHandlersRoute() async throws {
        let server = try TestServer()
        let runs = Runs()
        let metrics = ServerMetrics()
        let ids = Mutex(Set<String>())
        try await Application(router: router(server, metrics: metrics, runs: runs)).test(.router) { client in
            for _ in 0..<3 {
                try await client.execute(uri: "/v1/echo", method: .get) { response in
                    let id = try #require(response.headers[.init("X-Request-Id")!])
                    #expect(id.count == 16 && id.allSatisfy(\.isHexDigit))
                    #expect(Wire.json(response)["request_id"]?.stringValue == id)
                    _ = ids.withLock { $0.insert(id) }
                }
            }
        }
        #expect(ids.withLock { $0.count } == 3)
        #expect(metrics.exposition().contains(#"ferry_http_requests_total{route="echo",method="GET",status="200"} 3"#))
    }

    @Test func aPageOfAnOriginTheServerDoesNotAllowChangesNothing() async throws {
        let server = try TestServer()
        let runs = Runs()
        try await Application(router: router(server, cors: CORSPolicy(origins: ["https://app.example"]), runs: runs)).test(.router) { client in
            try await client.execute(uri: "/v1/echo", method: .post, headers: [.origin: "https://evil.example"], body: ByteBuffer(string: "{}")) { response in
                #expect(response.status == .badRequest)
                #expect(Wire.json(response)["details"]?["name"]?.stringValue == "Origin" || Wire.json(response)["message"]?.stringValue?.contains("Origin") == true)
            }
            #expect(runs.value == 0)
            try await client.execute(uri: "/v1/echo", method: .get, headers: [.origin: "https://app.example"]) { response in
                #expect(response.status == .ok)
                #expect(response.headers[.accessControlAllowOrigin] == "https://app.example")
            }
            #expect(runs.value == 1)
        }
    }
}
