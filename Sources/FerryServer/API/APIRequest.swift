public import FerryCore
public import HTTPTypes
import Foundation

/// A request as the Kinto API sees it: an HTTP request or one sub-request of a batch.
public struct APIRequest: Sendable {
    public var method: HTTPRequest.Method
    /// The path below the `/v1` prefix, e.g. `/buckets/main`.
    public var path: String
    /// Decoded query parameters, in order.
    public var query: [(String, String)]
    /// Headers, names in lower case.
    public var headers: [String: String]
    /// The body bytes, if any.
    public var body: [UInt8]
    /// The body already parsed (a batch's sub-request, or a request whose body was parsed before
    /// its transaction): ``jsonBody(emptyIsNil:)`` answers it instead of parsing `body` again.
    public var parsedBody: JSON?
    /// A record write's data, checked and serialized before the transaction (a batch's record
    /// writes, ``PreparedRecord``); nil for every other request.
    var preparedRecord: PreparedRecord?
    /// Who is asking.
    public var identity: Identity
    /// `scheme://host/v1`, to build `Next-Page` URLs.
    public var baseURL: String

    public init(method: HTTPRequest.Method, path: String, query: [(String, String)] = [], headers: [String: String] = [:], body: [UInt8] = [],
                identity: Identity = .anonymous, baseURL: String = "http://localhost:8888/v1") {
        self.method = method
        self.path = path
        self.query = query
        self.headers = headers
        self.body = body
        self.identity = identity
        self.baseURL = baseURL
    }

    public func header(_ name: String) -> String? { headers[name.lowercased()] }

    /// Whether the method only reads (GET or HEAD).
    public var isRead: Bool { method == .get || method == .head }

    /// Whether the client asks for successful answers without their body (RFC 7240
    /// `Prefer: return=minimal`), which a `/batch` honours for each sub-request.
    public var prefersMinimal: Bool {
        guard let prefer = headers["prefer"] else { return false }
        return Self.preferences(prefer).contains { $0.name == "return" && $0.value == "minimal" }
    }

    /// The preferences of a `Prefer` header (RFC 7240 §2): names in lower case, values without
    /// their quotes; each preference's parameters (after `;`) are ignored, as is an empty one.
    static func preferences(_ header: String) -> [(name: String, value: String)] {
        header.split(separator: ",").compactMap { element in
            guard let preference = element.split(separator: ";", maxSplits: 1).first else { return nil }
            let parts = preference.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            let name = parts[0].trimmingCharacters(in: .whitespaces).lowercased()
            guard !name.isEmpty else { return nil }
            var value = parts.count > 1 ? parts[1].trimmingCharacters(in: .whitespaces) : ""
            if value.count >= 2, value.hasPrefix("\""), value.hasSuffix("\"") { value = String(value.dropFirst().dropLast()) }
            return (name, value.lowercased())
        }
    }

    /// The body as JSON, parsed once: ``parsedBody`` when set. A body of only whitespace is nil
    /// when `emptyIsNil`, else malformed JSON like any other.
    /// - Throws: ``KintoError/badJSON(_:)`` with the parser's message.
    public func jsonBody(emptyIsNil: Bool = true) throws(KintoError) -> JSON? {
        if let parsedBody { return parsedBody }
        if emptyIsNil, body.allSatisfy({ $0 == 0x20 || $0 == 0x0A || $0 == 0x0D || $0 == 0x09 }) { return nil }
        do {
            return try JSON.parse(bytes: body)
        } catch let error as JSONParseError {
            throw .badJSON(error.description)
        } catch {
            throw .badJSON("\(error)")
        }
    }

    /// Splits a raw query string (`a=1&b=%20x`) into decoded pairs.
    public static func parseQuery(_ raw: Substring) -> [(String, String)] {
        raw.split(separator: "&", omittingEmptySubsequences: true).map { pair in
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            let name = percentDecode(parts[0])
            let value = parts.count > 1 ? percentDecode(parts[1]) : ""
            return (name, value)
        }
    }

    /// Decodes `%XX` and `+` (as a space); invalid escapes are kept as they are.
    public static func percentDecode(_ text: Substring) -> String {
        guard text.utf8.contains(where: { $0 == UInt8(ascii: "%") || $0 == UInt8(ascii: "+") }) else { return String(text) }
        var bytes: [UInt8] = []
        bytes.reserveCapacity(text.utf8.count)
        var iterator = Array(text.utf8)[...]
        while let byte = iterator.popFirst() {
            if byte == UInt8(ascii: "+") {
                bytes.append(UInt8(ascii: " "))
            } else if byte == UInt8(ascii: "%"), iterator.count >= 2,
                      let hi = hexValue(iterator[iterator.startIndex]), let lo = hexValue(iterator[iterator.startIndex + 1]) {
                bytes.append(hi << 4 | lo)
                iterator = iterator.dropFirst(2)
            } else {
                bytes.append(byte)
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    static func hexValue(_ byte: UInt8) -> UInt8? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): byte - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): byte - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): byte - UInt8(ascii: "A") + 10
        default: nil
        }
    }

    /// Percent-encodes a query component.
    public static func percentEncode(_ text: String) -> String {
        func plain(_ byte: UInt8) -> Bool {
            switch byte {
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
                UInt8(ascii: "-"), UInt8(ascii: "_"), UInt8(ascii: "."), UInt8(ascii: "~"), UInt8(ascii: ","):
                true
            default:
                false
            }
        }
        // Most names and values (and every page token) need no escape: the text as it is.
        if text.utf8.allSatisfy(plain) { return text }
        let hex = Array("0123456789ABCDEF".utf8)
        var out: [UInt8] = []
        out.reserveCapacity(text.utf8.count * 3)
        for byte in text.utf8 {
            if plain(byte) {
                out.append(byte)
            } else {
                out.append(UInt8(ascii: "%"))
                out.append(hex[Int(byte >> 4)])
                out.append(hex[Int(byte & 0xF)])
            }
        }
        return String(decoding: out, as: UTF8.self)
    }
}

/// Who a request comes from.
public struct Identity: Sendable, Hashable {
    /// The user id (`basicauth:…`, later `account:…`), `nil` when anonymous.
    public var userID: String?
    /// Every principal the request holds, most specific first.
    public var principals: [String]

    public static let everyone = "system.Everyone"
    public static let authenticated = "system.Authenticated"

    /// No credentials.
    public static let anonymous = Identity(userID: nil, principals: [everyone])

    /// An authenticated user.
    public static func user(_ id: String, extraPrincipals: [String] = []) -> Identity {
        Identity(userID: id, principals: [id] + extraPrincipals + [authenticated, everyone])
    }
}

/// The answer to an ``APIRequest``.
public struct APIResponse: Sendable {
    /// How the body is held.
    public enum Body: Sendable {
        case empty
        case json(JSON)
        /// Already-serialized JSON (records are stored as canonical JSON text and sent as is).
        case raw([UInt8])
        /// Plain text (metrics).
        case text(String, contentType: String)
        /// Bytes of any type (an attachment's file).
        case bytes([UInt8], contentType: String)
    }

    public var status: Int
    public var headers: [(String, String)]
    public var body: Body
    /// The route's name without ids (`records`, `/batch` …), for logs and metrics.
    public var routeName = "unknown"

    public init(status: Int = 200, headers: [(String, String)] = [], body: Body = .empty) {
        self.status = status
        self.headers = headers
        self.body = body
    }

    init(error: KintoError) {
        self.init(status: error.status, headers: error.headers, body: .json(error.body))
    }

    /// The body as JSON (parsing raw bodies), for batch responses and tests.
    public var jsonBody: JSON? {
        switch body {
        case .empty, .text, .bytes: return nil
        case .json(let json): return json
        case .raw(let bytes): return try? JSON.parse(bytes: bytes, maxDepth: 1000)
        }
    }

    /// The body bytes.
    public var bodyBytes: [UInt8] {
        switch body {
        case .empty: return []
        case .json(let json): return json.serializedBytes()
        case .raw(let bytes): return bytes
        case .text(let text, _): return Array(text.utf8)
        case .bytes(let bytes, _): return bytes
        }
    }

    public func header(_ name: String) -> String? {
        headers.last { $0.0.lowercased() == name.lowercased() }?.1
    }
}
