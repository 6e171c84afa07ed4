public import AsyncHTTPClient
import FerryCore
import Foundation
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1

/// HTTP requests with retries: connection errors, 408/425/429 and 5xx are tried again with
/// backoff and jitter (``RetryPolicy``), waiting at least what `Retry-After` asks; a
/// `Backoff` header makes the next request wait that long. With `requestsPerSecond`,
/// requests are spaced so the endpoint never sees more than that.
///
/// Safe to share between concurrent requests (the REST writer sends several at once).
final class HTTPTransport: Sendable {
    struct Response: Sendable {
        var status: Int
        var headers: [(String, String)]
        var body: [UInt8]

        func header(_ name: String) -> String? {
            headers.first { $0.0.lowercased() == name.lowercased() }?.1
        }
    }

    /// How requests prove who sends them.
    enum Credentials: Sendable, Equatable {
        case none
        /// A header, e.g. `Authorization: Basic …` or `X-API-Key: …`.
        case header(name: String, value: String)
        /// A query parameter added to every request, e.g. `api_key=…`.
        case query(name: String, value: String)

        /// Parses `--source-auth`/`--target-auth`:
        /// - `USER:PASSWORD` → Basic
        /// - `Bearer TOKEN`, `Basic BASE64` → the Authorization header as given
        /// - `header:NAME=VALUE` → any header (an API key)
        /// - `query:NAME=VALUE` → a query parameter
        /// A header value with a line break would smuggle in headers of its own.
        static func isMultiline(_ text: String) -> Bool {
            text.utf8.contains { $0 == UInt8(ascii: "\r") || $0 == UInt8(ascii: "\n") || $0 == 0 }
        }

        static func parse(_ auth: String?) throws(SyncError) -> Credentials {
            guard let auth, !auth.isEmpty else { return .none }
            for (prefix, isHeader) in [("header:", true), ("query:", false)] where auth.hasPrefix(prefix) {
                let rest = auth.dropFirst(prefix.count)
                guard let eq = rest.firstIndex(of: "="), eq != rest.startIndex else {
                    throw .badInput("credentials \"\(prefix)…\" take NAME=VALUE, e.g. \(isHeader ? "header:X-API-Key=SECRET" : "query:api_key=SECRET")")
                }
                let name = String(rest[..<eq])
                let value = String(rest[rest.index(after: eq)...])
                guard name.utf8.allSatisfy({ $0 > 32 && $0 < 127 && $0 != UInt8(ascii: ":") }), !isMultiline(value) else {
                    throw .badInput("credentials \"\(prefix)\(name)=…\": the name must be printable ASCII without spaces or colons, the value on one line")
                }
                return isHeader ? .header(name: name, value: value) : .query(name: name, value: value)
            }
            guard !isMultiline(auth) else { throw .badInput("credentials cannot span lines") }
            if auth.hasPrefix("Bearer ") || auth.hasPrefix("Basic ") { return .header(name: "Authorization", value: auth) }
            return .header(name: "Authorization", value: "Basic " + Data(auth.utf8).base64EncodedString())
        }
    }

    private struct State {
        var backoffUntil: Date? = nil
        var retries = 0
        /// The earliest moment the next request may start (rate limit).
        var nextSlot = Date.distantPast
    }

    let client: HTTPClient
    let policy: RetryPolicy
    let credentials: Credentials
    /// The origin, for messages (`http://127.0.0.1:8888`).
    let origin: String
    let requestsPerSecond: Double?
    private let state = NIOLockedValueBox(State())

    init(client: HTTPClient, policy: RetryPolicy, credentials: Credentials, origin: String, requestsPerSecond: Double? = nil) {
        self.client = client
        self.policy = policy
        self.credentials = credentials
        self.origin = origin
        self.requestsPerSecond = requestsPerSecond
    }

    /// Requests tried again, for the report.
    var retries: Int { state.withLockedValue { $0.retries } }

    /// The URL as messages may show it: a query-parameter secret becomes `***`.
    func redact(_ url: String) -> String {
        guard case .query(let name, let value) = credentials, !value.isEmpty else { return url }
        let encoded = Self.queryEncode(value)
        return url.replacingOccurrences(of: "\(name)=\(encoded)", with: "\(name)=***")
            .replacingOccurrences(of: "\(name)=\(value)", with: "\(name)=***")
    }

    static func queryEncode(_ text: String) -> String {
        text.addingPercentEncoding(withAllowedCharacters: .alphanumerics.union(CharacterSet(charactersIn: "-._~"))) ?? text
    }

    /// Waits for the rate limit's next slot and any `Backoff` the server asked for.
    private func waitForTurn() async throws {
        let now = Date()
        let until: Date? = state.withLockedValue { state in
            var until = state.backoffUntil
            if let rate = requestsPerSecond, rate > 0 {
                let slot = max(now, state.nextSlot)
                state.nextSlot = slot.addingTimeInterval(1 / rate)
                until = max(until ?? slot, slot)
            }
            return until
        }
        if let until {
            let wait = until.timeIntervalSince(now)  // may have passed meanwhile
            if wait > 0 { try await Task.sleep(nanoseconds: UInt64(wait * 1e9)) }
        }
    }

    /// The URL with a query-parameter credential added.
    func authorized(_ url: String) -> String {
        guard case .query(let name, let value) = credentials, !url.contains("?\(name)=") && !url.contains("&\(name)=") else { return url }
        return url + (url.contains("?") ? "&" : "?") + name + "=" + Self.queryEncode(value)
    }

    /// - Parameter anonymous: send no credentials (a file on another origin, such as a CDN).
    func makeRequest(_ method: HTTPMethod, _ url: String, body: [UInt8]?, headers extra: [(String, String)], accept: String = "application/json",
                     anonymous: Bool = false) -> HTTPClientRequest {
        var request = HTTPClientRequest(url: url)
        request.method = method
        request.headers.add(name: "Accept", value: accept)
        request.headers.add(name: "User-Agent", value: "ferry-sync")
        if !anonymous, case .header(let name, let value) = credentials { request.headers.add(name: name, value: value) }
        for (name, value) in extra { request.headers.add(name: name, value: value) }
        if let body {
            if !extra.contains(where: { $0.0.lowercased() == "content-type" }) { request.headers.add(name: "Content-Type", value: "application/json") }
            request.body = .bytes(ByteBuffer(bytes: body))
        }
        return request
    }

    /// A GET whose body is read as it arrives (an event stream): no retries, no collecting.
    /// The connection stays open up to a day; a silent peer is dropped after the client's read timeout.
    func openStream(_ url: String, accept: String) async throws -> HTTPClientResponse {
        try await client.execute(makeRequest(.GET, authorized(url), body: nil, headers: [], accept: accept), timeout: .hours(24))
    }

    func send(_ method: HTTPMethod, _ url: String, body: [UInt8]? = nil, headers extra: [(String, String)] = [],
              accept: String = "application/json", anonymous: Bool = false) async throws -> Response {
        let target = anonymous ? url : authorized(url)
        var attempt = 0
        while true {
            attempt += 1
            try await waitForTurn()
            let request = makeRequest(method, target, body: body, headers: extra, accept: accept, anonymous: anonymous)
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
                state.withLockedValue { $0.retries += 1 }
                try await Task.sleep(nanoseconds: UInt64(delay * 1e9))
                continue
            }
            if let backoff = RetryPolicy.seconds(fromHeader: response.header("Backoff")), backoff > 0 {
                let until = Date().addingTimeInterval(min(backoff, policy.maxDelay))
                state.withLockedValue { $0.backoffUntil = until }
            }
            if RetryPolicy.isRetryable(status: response.status),
               let delay = policy.delay(afterAttempt: attempt, retryAfter: RetryPolicy.seconds(fromHeader: response.header("Retry-After")), random: Double.random(in: 0...1)) {
                state.withLockedValue { $0.retries += 1 }
                try await Task.sleep(nanoseconds: UInt64(delay * 1e9))
                continue
            }
            return response
        }
    }

    /// A failed answer as one line: who said what about which request, and what to do.
    /// - Parameters:
    ///   - peer: `server` or `API`.
    ///   - context: `while reading changes since 5`, `for GET http://…`.
    ///   - said: the answer's message or body, if any.
    static func failure(status: Int, endpoint: String, peer: String, context: String, said: String?) -> SyncError {
        let said = said.map { ": \($0)" } ?? ""
        switch status {
        case 401:
            return SyncError(.unauthorized, "\(endpoint): the \(peer) refused the credentials (401) \(context)\(said); check --source-auth/--target-auth")
        case 403:
            return SyncError(.unauthorized, "\(endpoint): not allowed (403) \(context)\(said)")
        case 404:
            return SyncError(.notFound, "\(endpoint): not found (404) \(context)\(said)")
        default:
            return SyncError(.protocolError, "\(endpoint): the \(peer) answered \(status) \(context)\(said)")
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
