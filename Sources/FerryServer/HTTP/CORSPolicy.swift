import Foundation
public import HTTPTypes

/// Which browser pages may call the API from another origin, and the CORS headers that tell
/// the browser so (Kinto's `cors_origins`, `cors_max_age_seconds`).
///
/// As Kinto (through Cornice) does:
/// - a request whose `Origin` is allowed gets `Access-Control-Allow-Origin` (`*` when every
///   origin is, else its own origin, with `Vary: Origin`) and `Access-Control-Expose-Headers`
///   on every answer, errors included;
/// - a request to the API from an origin that is not allowed is refused (400) before it does
///   anything;
/// - a preflight (`OPTIONS` with `Origin` and `Access-Control-Request-Method`) is answered with
///   the route's methods, the headers it asked for and how long to keep the answer.
///
/// Pure: no I/O, tested without sockets.
public struct CORSPolicy: Sendable {
    /// `*`, origins (`https://app.example.com`) and patterns (`https://*.example.com`), lower case.
    public let origins: [String]
    public let maxAgeSeconds: Int

    public init(origins: [String] = ["*"], maxAgeSeconds: Int = 3600) {
        self.origins = origins.map { $0.lowercased() }
        self.maxAgeSeconds = maxAgeSeconds
    }

    /// What clients read from answers (Kinto's list: pagination, concurrency, back-off).
    static let exposedHeaders = "ETag, Last-Modified, Next-Page, Total-Objects, Total-Records, Backoff, Retry-After, Alert, Content-Length, Preference-Applied"
    /// Request headers a preflight is always told are allowed, beside those it asks for.
    static let allowedHeaders = ["Authorization", "Content-Type", "If-Match", "If-None-Match", "Idempotency-Key", "Prefer"]

    /// Why `entry` cannot be a `cors_origins` entry, or nil when it can.
    public static func problem(withOrigin entry: String) -> String? {
        if entry == "*" { return nil }
        let example = "an origin such as https://app.example.com, a pattern such as https://*.example.com, or *"
        if entry.contains(where: { $0 == " " || $0 == "\t" }) {
            return "\"\(entry.prefix(80))\" holds a space: separate origins with commas (\(example))"
        }
        let lower = entry.lowercased()
        guard let schemeEnd = lower.range(of: "://"), ["http", "https", "*"].contains(String(lower[..<schemeEnd.lowerBound])) else {
            return "\"\(entry.prefix(80))\" is not \(example)"
        }
        let authority = lower[schemeEnd.upperBound...]
        if authority.hasSuffix("/") {
            return "\"\(entry.prefix(80))\" ends with /: an origin has no path (write \(entry.dropLast()))"
        }
        guard !authority.isEmpty, authority.count <= 253,
              authority.unicodeScalars.allSatisfy({ $0.isASCII && (Self.isHostCharacter($0) || "*:[]".unicodeScalars.contains($0)) })
        else {
            return "\"\(entry.prefix(80))\" is not \(example)"
        }
        return nil
    }

    static func isHostCharacter(_ c: Unicode.Scalar) -> Bool {
        ("a"..."z").contains(c) || ("0"..."9").contains(c) || c == "." || c == "-"
    }

    /// Whether a request's `Origin` may call the API.
    public func allows(_ origin: String) -> Bool {
        let origin = origin.lowercased()
        guard Self.looksLikeOrigin(origin) else { return false }
        return origins.contains { $0 == "*" || Self.glob($0, matches: origin) }
    }

    /// `scheme://host[:port]` as browsers send it: anything else (a path, spaces, `null`) is no
    /// origin that a pattern could allow.
    static func looksLikeOrigin(_ origin: String) -> Bool {
        guard origin.utf8.count <= 300, let schemeEnd = origin.range(of: "://") else { return false }
        let scheme = origin[..<schemeEnd.lowerBound]
        let authority = origin[schemeEnd.upperBound...]
        return !scheme.isEmpty && scheme.unicodeScalars.allSatisfy { ("a"..."z").contains($0) || ("0"..."9").contains($0) || "+.-".unicodeScalars.contains($0) }
            && !authority.isEmpty && authority.unicodeScalars.allSatisfy { $0.isASCII && (isHostCharacter($0) || ":[]".unicodeScalars.contains($0)) }
    }

    /// `*` matches any run of characters (Kinto matches with `fnmatch`; only `*` is a wildcard here).
    static func glob(_ pattern: String, matches text: String) -> Bool {
        let p = Array(pattern.utf8), t = Array(text.utf8)
        var pi = 0, ti = 0
        var star = -1, mark = 0
        while ti < t.count {
            if pi < p.count, p[pi] != UInt8(ascii: "*"), p[pi] == t[ti] {
                pi += 1
                ti += 1
            } else if pi < p.count, p[pi] == UInt8(ascii: "*") {
                star = pi
                mark = ti
                pi += 1
            } else if star >= 0 {
                pi = star + 1
                mark += 1
                ti = mark
            } else {
                return false
            }
        }
        while pi < p.count, p[pi] == UInt8(ascii: "*") { pi += 1 }
        return pi == p.count
    }

    /// What a request's `Origin` header means.
    public enum Verdict: Equatable, Sendable {
        /// No `Origin`: not a cross-origin call (curl, servers, same-origin GETs).
        case noOrigin
        /// Allowed: add these headers to the answer.
        case allowed([(String, String)])
        /// Not allowed: no CORS header, and the API refuses the request.
        case refused(origin: String)

        public static func == (a: Verdict, b: Verdict) -> Bool {
            switch (a, b) {
            case (.noOrigin, .noOrigin): true
            case (.allowed(let x), .allowed(let y)): x.map { "\($0.0): \($0.1)" } == y.map { "\($0.0): \($0.1)" }
            case (.refused(let x), .refused(let y)): x == y
            default: false
            }
        }
    }

    /// The verdict on a request from `origin`, with the headers of an allowed one's answer.
    public func verdict(origin: String?) -> Verdict {
        guard let origin, !origin.isEmpty else { return .noOrigin }
        guard allows(origin) else { return .refused(origin: origin) }
        return .allowed(allowOrigin(origin) + [("Access-Control-Expose-Headers", Self.exposedHeaders)])
    }

    /// `Access-Control-Allow-Origin` for an allowed origin: `*` when any origin is allowed (the
    /// answer is the same for every page), else the origin itself and `Vary: Origin` so that
    /// caches keep one answer per origin.
    func allowOrigin(_ origin: String) -> [(String, String)] {
        origins.contains("*") ? [("Access-Control-Allow-Origin", "*")]
            : [("Access-Control-Allow-Origin", origin), ("Vary", "Origin")]
    }

    /// The 400 that refuses a request from an origin not allowed (before it does anything).
    static func refusal(origin: String) -> KintoError {
        .invalidParameters(location: "header", name: "Origin",
                           description: "Origin \(origin.prefix(120)) is not allowed to call this server: cors_origins lists the pages that may")
    }

    /// The answer to a preflight (`OPTIONS`) on a route that takes `methods`.
    /// - Parameters:
    ///   - origin: its `Origin` header.
    ///   - requestMethod: its `Access-Control-Request-Method`: the method the page wants to send.
    ///   - requestHeaders: its `Access-Control-Request-Headers`: the headers the page wants to send.
    public func preflight(origin: String?, requestMethod: String?, requestHeaders: String?, methods: [HTTPRequest.Method]) -> APIResponse {
        let allow = ("Allow", (methods + [.options]).map(\.rawValue).joined(separator: ", "))
        guard let origin, !origin.isEmpty, let requestMethod, !requestMethod.isEmpty else {
            let missing = origin?.isEmpty == false ? "Access-Control-Request-Method" : "Origin"
            var error = KintoError.invalidParameters(
                location: "header", name: missing,
                description: "\(missing) is missing: OPTIONS answers CORS preflights, which send Origin and Access-Control-Request-Method")
            error.headers.append(allow)
            return APIResponse(error: error)
        }
        guard allows(origin) else { return APIResponse(error: Self.refusal(origin: origin)) }
        let allowOrigin = allowOrigin(origin)
        func refuse(_ error: KintoError) -> APIResponse {
            var response = APIResponse(error: error)
            response.headers += allowOrigin + [allow]
            return response
        }
        guard methods.contains(where: { $0.rawValue == requestMethod }) else {
            return refuse(.invalidParameters(
                location: "header", name: "Access-Control-Request-Method",
                description: "Access-Control-Request-Method: \(requestMethod.prefix(40)) is not allowed here (allowed: \(methods.map(\.rawValue).joined(separator: ", ")))"))
        }
        var headers = Self.allowedHeaders
        for name in (requestHeaders ?? "").split(separator: ",").map({ $0.trimmingCharacters(in: .whitespaces) }) where !name.isEmpty {
            guard name.utf8.count <= 100, name.utf8.allSatisfy(Self.isTokenByte) else {
                return refuse(.invalidParameters(
                    location: "header", name: "Access-Control-Request-Headers",
                    description: "Access-Control-Request-Headers: \"\(name.prefix(40))\" is not a header name"))
            }
            if !headers.contains(where: { $0.lowercased() == name.lowercased() }) { headers.append(name) }
        }
        return APIResponse(status: 200, headers: allowOrigin + [
            ("Access-Control-Allow-Methods", methods.map(\.rawValue).joined(separator: ", ")),
            ("Access-Control-Allow-Headers", headers.joined(separator: ", ")),
            ("Access-Control-Max-Age", String(maxAgeSeconds)),
            allow,
        ])
    }

    /// A byte of an RFC 9110 token (a header name).
    static func isTokenByte(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"): true
        default: "!#$%&'*+-.^_`|~".utf8.contains(byte)
        }
    }
}
