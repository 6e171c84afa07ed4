import _CryptoExtras
import Crypto
public import FerryCore
import Foundation

/// Checks JSON Web Tokens (RFC 7519) signed with HS256 (a shared secret) or RS256 (an RSA
/// public key): signature, `exp`, `nbf`, and when configured `iss` and `aud`. The `sub`
/// claim becomes the principal `PREFIX + sub`.
public struct JWTVerifier: Sendable {
    public enum Key: Sendable {
        case hs256(secret: [UInt8])
        case rs256(publicKeyPEM: String)
    }

    let hmacSecret: [UInt8]?
    let rsaKey: _RSA.Signing.PublicKey?
    public var issuer: String? = nil
    public var audience: String? = nil
    public var principalPrefix = "jwt:"
    /// Seconds of clock difference tolerated for `exp` and `nbf`.
    public var leeway: Int64 = 30

    public init(_ key: Key) throws {
        switch key {
        case .hs256(let secret):
            hmacSecret = secret
            rsaKey = nil
        case .rs256(let pem):
            hmacSecret = nil
            rsaKey = try _RSA.Signing.PublicKey(pemRepresentation: pem)
        }
    }

    /// Whether a bearer token looks like a JWT (three base64url parts).
    static func looksLikeJWT(_ token: String) -> Bool { token.split(separator: ".", omittingEmptySubsequences: false).count == 3 }

    /// The principal of a valid token.
    /// - Throws: a message saying what is wrong (never the token itself).
    func principal(of token: String, now: Int64 = Int64(Date().timeIntervalSince1970)) throws(KintoError) -> String {
        let parts = token.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 3, token.utf8.count <= 8192,
              let headerBytes = Self.base64URL(parts[0]), let payloadBytes = Self.base64URL(parts[1]), let signature = Self.base64URL(parts[2]),
              case .object(let header)? = try? JSON.parse(bytes: headerBytes, maxDepth: 8),
              case .object(let claims)? = try? JSON.parse(bytes: payloadBytes, maxDepth: 8)
        else { throw .invalidAuth("the bearer token is not a well-formed JWT") }
        let signed = Array(token.utf8.prefix(parts[0].utf8.count + 1 + parts[1].utf8.count))
        switch header["alg"]?.stringValue {
        case "HS256"?:
            guard let hmacSecret, HMAC<SHA256>.isValidAuthenticationCode(signature, authenticating: signed, using: SymmetricKey(data: hmacSecret)) else {
                throw .invalidAuth("the JWT signature is not valid")
            }
        case "RS256"?:
            guard let rsaKey, rsaKey.isValidSignature(_RSA.Signing.RSASignature(rawRepresentation: signature), for: SHA256.hash(data: signed), padding: .insecurePKCS1v1_5) else {
                throw .invalidAuth("the JWT signature is not valid")
            }
        default:
            // "none" and every algorithm not configured are refused.
            throw .invalidAuth("the JWT algorithm is not accepted (use \(hmacSecret != nil ? "HS256" : "RS256"))")
        }
        if let exp = claims["exp"] {
            guard let t = exp.intValue ?? exp.doubleValue.map({ Int64($0) }), now <= t + leeway else { throw .invalidAuth("the JWT has expired") }
        }
        if let nbf = claims["nbf"] {
            guard let t = nbf.intValue ?? nbf.doubleValue.map({ Int64($0) }), now + leeway >= t else { throw .invalidAuth("the JWT is not valid yet") }
        }
        if let issuer, claims["iss"]?.stringValue != issuer { throw .invalidAuth("the JWT issuer is not accepted") }
        if let audience {
            let accepted: Bool
            switch claims["aud"] {
            case .string(let a)?: accepted = a == audience
            case .array(let list)?: accepted = list.contains(.string(audience))
            default: accepted = false
            }
            guard accepted else { throw .invalidAuth("the JWT audience is not accepted") }
        }
        guard let sub = claims["sub"]?.stringValue, !sub.isEmpty, sub.utf8.count <= 256 else { throw .invalidAuth("the JWT has no sub claim") }
        return principalPrefix + sub
    }

    static func base64URL(_ text: Substring) -> [UInt8]? {
        var base = text.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        guard !base.contains("=") else { return nil }
        while base.utf8.count % 4 != 0 { base += "=" }
        return Data(base64Encoded: base).map(Array.init)
    }
}

extension JSON {
    var doubleValue: Double? { if case .double(let d) = self { d } else { nil } }
}
