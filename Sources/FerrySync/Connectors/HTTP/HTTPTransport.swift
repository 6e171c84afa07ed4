public import AsyncHTTPClient
import FerryCore
import Foundation
import NIOCore
import NIOHTTP1

/// HTTP requests with retries: connection errors, 408/425/429 and 5xx are tried again with
/// backoff and jitter (``RetryPolicy``), waiting at least what `Retry-After` asks; a
/// `Backoff` header makes the next request wait that long.
final class HTTPTransport {
    struct Response {
        var status: Int
        var headers: [(String, String)]
        var body: [UInt8]

        func header(_ name: String) -> String? {
            headers.first { $0.0.lowercased() == name.lowercased() }?.1
        }
    }

    let client: HTTPClient
    let policy: RetryPolicy
    let authorization: String?
    /// The origin, for messages (`http://127.0.0.1:8888`).
    let origin: String
    private var backoffUntil: Date? = nil
    /// Requests tried again, for the report.
    private(set) var retries = 0

    init(client: HTTPClient, policy: RetryPolicy, authorization: String?, origin: String) {
        self.client = client
        self.policy = policy
        self.authorization = authorization
        self.origin = origin
    }

    /// `USER:PASSWORD` → Basic, `Bearer …`/`Basic …` as given.
    static func authorizationHeader(_ auth: String?) -> String? {
        guard let auth, !auth.isEmpty else { return nil }
        if auth.hasPrefix("Bearer ") || auth.hasPrefix("Basic ") { return auth }
        return "Basic " + Data(auth.utf8).base64EncodedString()
    }

    func send(_ method: HTTPMethod, _ url: String, body: [UInt8]? = nil, headers extra: [(String, String)] = []) async throws -> Response {
        var attempt = 0
        while true {
            attempt += 1
            if let until = backoffUntil {
                let wait = until.timeIntervalSinceNow  // may have passed meanwhile
                if wait > 0 { try await Task.sleep(nanoseconds: UInt64(wait * 1e9)) }
            }
            var request = HTTPClientRequest(url: url)
            request.method = method
            request.headers.add(name: "Accept", value: "application/json")
            request.headers.add(name: "User-Agent", value: "ferry-sync")
            if let authorization { request.headers.add(name: "Authorization", value: authorization) }
            for (name, value) in extra { request.headers.add(name: name, value: value) }
            if let body {
                request.headers.add(name: "Content-Type", value: "application/json")
                request.body = .bytes(ByteBuffer(bytes: body))
            }
            let response: Response
            do {
                let answer = try await client.execute(request, timeout: .seconds(120))
                let buffer = try await answer.body.collect(upTo: 512 << 20)
                response = Response(status: Int(answer.status.code), headers: answer.headers.map { ($0.name, $0.value) }, body: Array(buffer.readableBytesView))
            } catch is CancellationError {
                throw CancellationError()
            } catch {
                guard let delay = policy.delay(afterAttempt: attempt, retryAfter: nil, random: Double.random(in: 0...1)) else {
                    throw SyncError(.unreachable, "cannot reach \(origin): \(Self.describe(error)) (tried \(attempt) time\(attempt == 1 ? "" : "s"))")
                }
                retries += 1
                try await Task.sleep(nanoseconds: UInt64(delay * 1e9))
                continue
            }
            if let backoff = RetryPolicy.seconds(fromHeader: response.header("Backoff")), backoff > 0 {
                backoffUntil = Date().addingTimeInterval(min(backoff, policy.maxDelay))
            }
            if RetryPolicy.isRetryable(status: response.status),
               let delay = policy.delay(afterAttempt: attempt, retryAfter: RetryPolicy.seconds(fromHeader: response.header("Retry-After")), random: Double.random(in: 0...1)) {
                retries += 1
                try await Task.sleep(nanoseconds: UInt64(delay * 1e9))
                continue
            }
            return response
        }
    }

    static func describe(_ error: any Error) -> String {
        let text = String(describing: error)
        if text.localizedCaseInsensitiveContains("refused") { return "connection refused" }
        if text.localizedCaseInsensitiveContains("timeout") || text.localizedCaseInsensitiveContains("timedout") { return "timed out" }
        if text.localizedCaseInsensitiveContains("resolve") || text.localizedCaseInsensitiveContains("lookup") { return "host name not found" }
        return text
    }
}

extension HTTPClient {
    /// The engine's client: a failed connection fails the request at once (``RetryPolicy``
    /// decides about trying again, and says so), connections time out after 10 s and
    /// reads after 120 s. Lives as long as the process, like `HTTPClient.shared`.
    public static let ferrySync: HTTPClient = {
        var configuration = HTTPClient.Configuration()
        configuration.connectionPool.retryConnectionEstablishment = false
        configuration.timeout = .init(connect: .seconds(10), read: .seconds(120))
        return HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
    }()
}
