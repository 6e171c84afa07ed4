import Crypto
public import FerryCore
public import FerryStore
import Foundation
import NIOConcurrencyHelpers

/// Who may authenticate how, and the accounts' rules.
public struct AuthSettings: Sendable {
    /// Kinto's authentication policies, tried in this order.
    public enum Policy: String, Sendable, CaseIterable {
        /// `Basic` credentials of an account (`PUT /v1/accounts/{user}`): principal `account:{user}`.
        case account
        /// Kinto's `basicauth`: any `user:password` pair is a principal of its own (`basicauth:{hmac}`).
        case basicauth
        /// `Bearer` API tokens from the configuration (stored as SHA-256): principal `token:{name}`.
        case token
        /// `Bearer` JSON Web Tokens: principal `jwt:{sub}`.
        case jwt
    }

    public var policies: [Policy] = [.account, .basicauth, .token, .jwt]
    /// SHA-256 (hex) of each API token → its principal.
    public var tokens: [String: String] = [:]
    public var jwt: JWTVerifier? = nil
    /// Who may create accounts (Kinto's `account_create_principals`; anyone by default).
    public var accountCreatePrincipals: Set<String> = [Identity.everyone]
    /// Principals that may read, change and delete every account.
    public var admins: Set<String> = []
    public var passwordMinLength = 8
    public var passwordRounds = 210_000

    public init() {}
}

/// Turns an `Authorization` header into an ``Identity``: checks account passwords (against
/// their PBKDF2 hash, remembering verified pairs so the hash is not redone on every request),
/// API tokens and JWTs, then adds the groups the principal belongs to (read on every request,
/// so membership changes count from the next one).
public final class Authenticator: Sendable {
    public let settings: AuthSettings
    let basic: BasicAuthenticator
    let hasher: PasswordHasher
    /// HMAC(secret, "user:password") → the stored hash it was verified against. A changed
    /// password changes the stored hash, so an old entry never matches again.
    private let verified = NIOLockedValueBox<[String: String]>([:])
    static let verifiedLimit = 10_000
    private let hashRuns = NIOLockedValueBox(0)
    /// Identities by an HMAC of their whole `Authorization` header, valid for one version of
    /// the accounts and groups (a password change or a membership change starts a new one).
    private let known = NIOLockedValueBox<(version: Int, identities: [String: Identity])>((0, [:]))

    /// How many times a password was checked against its PBKDF2 hash (the cache missed).
    public var passwordVerifications: Int { hashRuns.withLockedValue { $0 } }

    public init(settings: AuthSettings, secret: String) {
        self.settings = settings
        basic = BasicAuthenticator(secret: secret)
        hasher = PasswordHasher(rounds: settings.passwordRounds)
    }

    static let accounts = ResourceKey(parentID: "", resourceName: "account")

    /// Kinto's account ids: `^[a-zA-Z0-9][+.@a-zA-Z0-9_-]*$` (so an email address is one), at most 256 bytes.
    static func isValidAccountID(_ id: String) -> Bool {
        guard let first = id.utf8.first, id.utf8.count <= 256, first.isASCIIAlphanumeric else { return false }
        return id.utf8.allSatisfy { $0.isASCIIAlphanumeric || "+.@_-".utf8.contains($0) }
    }

    /// The identity of a request.
    /// - Throws: 401 for credentials that are malformed, wrong or of no enabled policy. Basic
    ///   credentials of an account that does not exist are anonymous when only the account
    ///   policy reads them (Kinto's behaviour); a wrong password of one that exists is a 401.
    public func identity(authorization: String?, storage: any Storage) async throws(KintoError) -> Identity {
        guard let authorization = authorization?.trimmingHTTPWhitespace(), !authorization.isEmpty else { return .anonymous }
        guard authorization.utf8.count <= 8192 else { throw .invalidAuth("the Authorization header is too long") }
        let parts = authorization.split(separator: " ", maxSplits: 1)
        guard parts.count == 2 else { throw .invalidAuth("the Authorization header must be \"Basic …\" or \"Bearer …\"") }
        let credentials = parts[1].trimmingHTTPWhitespace()
        // Identities already resolved since the last change to accounts or groups.
        let key = basic.userID(credentials: authorization)
        let (version, hit) = known.withLockedValue { ($0.version, $0.identities[key]) }
        if let hit { return hit }
        let identity: Identity
        switch parts[0].lowercased() {
        case "basic": identity = try await basicIdentity(credentials, storage: storage)
        case "bearer":
            let (principal, expires) = try bearerPrincipal(credentials)
            identity = .user(principal, extraPrincipals: try await read(storage) { session in try Self.groups(of: principal, session) })
            if expires { return identity }  // a JWT is checked every time (it expires)
        default: throw .invalidAuth("unknown authorization scheme \"\(parts[0].prefix(20))\" (use Basic or Bearer)")
        }
        known.withLockedValue { known in
            // Stored only if nothing changed while it was read (the version was taken first).
            guard known.version == version else { return }
            if known.identities.count >= Self.verifiedLimit { known.identities.removeAll(keepingCapacity: true) }
            known.identities[key] = identity
        }
        return identity
    }

    /// Forgets every resolved identity: called after any write that can change an account or
    /// a group membership, before its answer, so the next request sees the change.
    public func accountsOrGroupsChanged() {
        known.withLockedValue { known in
            known.version &+= 1
            known.identities.removeAll(keepingCapacity: true)
        }
    }

    static func groups(of principal: String, _ session: any StorageSession) throws -> [String] {
        try session.groups(containing: [principal, Identity.authenticated])
    }

    /// One read transaction; a storage failure is a 503.
    func read<T: Sendable>(_ storage: any Storage, _ body: @escaping @Sendable (any StorageSession) throws -> T) async throws(KintoError) -> T {
        do {
            return try await storage.read(body)
        } catch {
            throw .backend("The storage backend failed while checking the credentials. Retry later.", retryAfter: 5)
        }
    }

    /// Basic credentials: the account (if there is one) and the groups of both possible
    /// principals are read in one transaction; the password is checked outside it.
    func basicIdentity(_ encoded: String, storage: any Storage) async throws(KintoError) -> Identity {
        guard let data = Data(base64Encoded: encoded), let text = String(data: data, encoding: .utf8) else {
            throw .invalidAuth("the Basic credentials are not valid base64 of UTF-8 text")
        }
        guard let colon = text.firstIndex(of: ":") else { throw .invalidAuth("the Basic credentials must be user:password") }
        let user = String(text[..<colon])
        let password = String(text[text.index(after: colon)...])
        guard !user.isEmpty else { throw .invalidAuth("the user name is empty") }
        let account = settings.policies.contains(.account) && Self.isValidAccountID(user) ? "account:" + user : nil
        let fallback = settings.policies.contains(.basicauth) ? basic.userID(credentials: text) : nil
        let (stored, accountGroups, fallbackGroups) = try await read(storage) { session in
            let stored = try account.flatMap { _ in try session.get(Self.accounts, id: user, includeDeleted: false)?.parsed()["password"]?.stringValue }
            return (stored, try stored.map { _ in try Self.groups(of: account!, session) } ?? [],
                    try fallback.map { try Self.groups(of: $0, session) } ?? [])
        }
        if let account, let stored {
            // An account exists: its password decides; no fallback to another policy.
            guard checkPassword(user: user, password: password, stored: stored) else {
                throw .invalidAuth("wrong user name or password")
            }
            return .user(account, extraPrincipals: accountGroups)
        }
        if let fallback { return .user(fallback, extraPrincipals: fallbackGroups) }
        // No such account, and no other policy takes Basic credentials: anonymous, as Kinto
        // (its account check finds nobody, so no policy names a user). This is how a client
        // that already sends its future credentials creates its account with them
        // (`PUT /accounts/{user}`, allowed to everyone by `account_create_principals`).
        guard !settings.policies.contains(.account) else { return .anonymous }
        throw .invalidAuth("wrong user name or password")
    }

    func checkPassword(user: String, password: String, stored: String) -> Bool {
        let key = basic.userID(credentials: user + ":" + password)
        if verified.withLockedValue({ $0[key] }) == stored { return true }
        hashRuns.withLockedValue { $0 += 1 }
        guard hasher.verify(password, against: stored) else { return false }
        verified.withLockedValue { cache in
            if cache.count >= Self.verifiedLimit { cache.removeAll(keepingCapacity: true) }
            cache[key] = stored
        }
        return true
    }

    /// The principal of a bearer token, and whether it expires (a JWT).
    func bearerPrincipal(_ token: String) throws(KintoError) -> (String, expires: Bool) {
        if settings.policies.contains(.token), !settings.tokens.isEmpty {
            if let principal = settings.tokens[TokenHash.sha256Hex(token)] { return (principal, false) }
        }
        if settings.policies.contains(.jwt), let jwt = settings.jwt, JWTVerifier.looksLikeJWT(token) {
            return (try jwt.principal(of: token), true)
        }
        throw .invalidAuth("unknown or invalid bearer token")
    }

    /// A new password's hash, after checking it follows the rules.
    /// The longest password accepted, in Unicode code points (at most 4 KiB to hash).
    static let passwordMaxLength = 1024

    func hashNewPassword(_ value: JSON?) throws(KintoError) -> String {
        guard case .string(let password)? = value else {
            throw .invalidParameters(location: "body", name: "data.password", description: "data.password is required and must be a string")
        }
        // Characters are Unicode code points, as JSON Schema's minLength and maxLength count them
        // (the API document states both bounds), so a client's own check agrees with this one.
        let length = password.unicodeScalars.count
        guard length >= settings.passwordMinLength else {
            throw .invalidParameters(location: "body", name: "data.password", description: "data.password must be at least \(settings.passwordMinLength) characters long")
        }
        guard length <= Self.passwordMaxLength else {
            throw .invalidParameters(location: "body", name: "data.password", description: "data.password must be at most \(Self.passwordMaxLength) characters long")
        }
        return hasher.hash(password)
    }
}

/// How API tokens are kept: only their SHA-256 (tokens are long and random, so no salt or
/// slow hash is needed; a leaked configuration does not leak them).
public enum TokenHash {
    public static func sha256Hex(_ token: String) -> String {
        Hex.encode(SHA256.hash(data: Array(token.utf8)))
    }
}

extension UInt8 {
    var isASCIIAlphanumeric: Bool {
        (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(self) || (UInt8(ascii: "A")...UInt8(ascii: "Z")).contains(self)
            || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(self)
    }
}
