import _CryptoExtras
import Crypto
import FerryCore
@testable import FerryServer
import FerryStore
import FerryTestSupport
import Foundation
import Testing

/// Accounts, tokens, JWTs, groups, `/permissions` and rate limits, through ``KintoAPI`` on a real SQLite file.
@Suite struct SecurityTests {
    /// A server with fast password hashing (the default 210,000 rounds would make each account take 0.1 s).
    static func server(_ configure: (inout ServerConfiguration) -> Void = { _ in }) throws -> TestServer {
        try TestServer { c in
            c.passwordRounds = 1000
            configure(&c)
        }
    }

    static func account(_ password: String) -> JSON { ["data": ["password": .string(password)]] }

    @Test func accountLifecycle() async throws {
        let server = try Self.server()
        // Anyone may create an account (Kinto's default); the answer never holds the password.
        var r = try await server.request("PUT", "/accounts/bob", json: Self.account("correct horse"), user: nil)
        #expect(r.status == 201 && r.data["id"] == "bob" && r.data["password"] == nil, "\(r.json.serialized())")
        #expect(r.json["permissions"]?["write"] == ["account:bob"])
        let dump = try await server.dump().joined(separator: "\n")
        #expect(dump.contains("pbkdf2_sha256$1000$") && !dump.contains("correct horse"))

        r = try await server.request("GET", "/", user: "bob", password: "correct horse")
        #expect(r.json["user"]?["id"] == "account:bob")
        // With an account, a wrong password is refused: no fallback to basicauth.
        r = try await server.request("GET", "/", user: "bob", password: "wrong password")
        #expect(r.status == 401 && r.json["errno"] == 105)

        // Only bob (or an admin) reads and changes bob's account.
        r = try await server.request("GET", "/accounts/bob", user: "bob", password: "correct horse")
        #expect(r.status == 200 && r.data["id"] == "bob" && r.data["password"] == nil)
        #expect(try await server.request("GET", "/accounts/bob", user: "mallory").status == 403)
        #expect(try await server.request("GET", "/accounts/bob", user: nil).status == 401)
        #expect(try await server.request("PATCH", "/accounts/bob", json: Self.account("stolen pass"), user: "mallory").status == 403)
        r = try await server.request("GET", "/accounts", user: "bob", password: "correct horse")
        #expect(r.data.arrayValue?.count == 1 && r.data[0]?["id"] == "bob")

        // Changing the password: the old one stops working at once (the cache holds the old hash).
        r = try await server.request("PATCH", "/accounts/bob", json: Self.account("battery staple"), user: "bob", password: "correct horse")
        #expect(r.status == 200, "\(r.json.serialized())")
        #expect(try await server.request("GET", "/", user: "bob", password: "correct horse").status == 401)
        #expect(try await server.request("GET", "/", user: "bob", password: "battery staple").json["user"]?["id"] == "account:bob")

        // Signed in as bob, no other account can be made; an existing one cannot be POSTed again.
        r = try await server.request("PUT", "/accounts/carol", json: Self.account("carols pass"), user: "bob", password: "battery staple")
        #expect(r.status == 400, "\(r.json.serialized())")
        r = try await server.request("POST", "/accounts", json: ["data": ["id": "bob", "password": "another one"]], user: nil)
        #expect(r.status == 409)

        r = try await server.request("DELETE", "/accounts/bob", user: "bob", password: "battery staple")
        #expect(r.status == 200 && r.data["deleted"] == true)
        // The account is gone: the same pair is now only a basicauth principal.
        r = try await server.request("GET", "/", user: "bob", password: "battery staple")
        #expect(r.json["user"]?["id"]?.stringValue?.hasPrefix("basicauth:") == true)
    }

    @Test func badAccountRequestsChangeNothing() async throws {
        let server = try Self.server()
        try await server.request("PUT", "/accounts/bob", json: Self.account("correct horse"), user: nil)
        let before = try await server.dump()
        let cases: [(String, String, String?, Int, String)] = [
            ("PUT", "/accounts/eve", #"{"data": {"password": "short"}}"#, 400, "at least 8 characters"),
            ("PUT", "/accounts/eve", #"{"data": {"password": 12345678}}"#, 400, "must be a string"),
            ("PUT", "/accounts/eve", #"{"data": {}}"#, 400, "data.password is required"),
            ("PUT", "/accounts/eve", #"{"data": {"password": "long enough", "admin": true}}"#, 400, "holds only id and password"),
            ("PUT", "/accounts/eve", #"{"data": {"id": "bob", "password": "long enough"}}"#, 400, "does not match"),
            ("PUT", "/accounts/eve", "not json", 400, "JSON"),
            ("PUT", "/accounts/eve", #"["data"]"#, 400, "data must be an object"),
            ("POST", "/accounts", #"{"data": {"password": "long enough"}}"#, 400, "data.id"),
            ("POST", "/accounts", #"{"data": {"id": "../etc", "password": "long enough"}}"#, 400, "letters, digits"),
            ("PUT", "/accounts/a%2Fb", #"{"data": {"password": "long enough"}}"#, 400, "Invalid account id"),
            ("PUT", "/accounts/.hidden", #"{"data": {"password": "long enough"}}"#, 400, "Invalid account id"),
            // Anonymous callers learn nothing about which accounts exist.
            ("PATCH", "/accounts/nobody", #"{"data": {"password": "long enough"}}"#, 401, "authenticate"),
            ("PATCH", "/accounts/bob", #"{"data": {"password": "long enough"}}"#, 401, "authenticate"),
            ("DELETE", "/accounts/bob", nil, 401, "authenticate"),
            ("DELETE", "/accounts/nobody", nil, 401, "authenticate"),
        ]
        for (method, path, body, status, message) in cases {
            let r = try await server.request(method, path, body: body, user: nil)
            #expect(r.status == status && (r.json["message"]?.stringValue ?? "").contains(message), "\(method) \(path) \(body ?? ""): \(r.status) \(r.json.serialized())")
        }
        #expect(try await server.dump() == before)
    }

    @Test func anEmailAddressIsAnAccountID() async throws {
        let server = try Self.server()
        #expect(try await server.request("PUT", "/accounts/ada.l%2Bferry@example.org", json: Self.account("correct horse"), user: nil).status == 201)
        let r = try await server.request("GET", "/", user: "ada.l+ferry@example.org", password: "correct horse")
        #expect(r.json["user"]?["id"] == "account:ada.l+ferry@example.org", "\(r.json.serialized())")
    }

    @Test func accountCreationAndAdminsFollowTheSettings() async throws {
        let server = try Self.server { c in
            c.accountCreatePrincipals = ["account:admin"]
            c.admins = ["account:admin"]
        }
        // Nobody can create the first admin over the API: it is created through storage, as an operator would.
        let hash = PasswordHasher(rounds: 1000).hash("admin password")
        _ = try await server.parts.storage.write { session in
            try session.put(Authenticator.accounts, id: "admin", data: ["password": .string(hash)], requestedTimestamp: nil)
        }
        #expect(try await server.request("PUT", "/accounts/bob", json: Self.account("bobs password"), user: nil).status == 401)
        #expect(try await server.request("PUT", "/accounts/bob", json: Self.account("bobs password"), user: "someone").status == 403)
        #expect(try await server.request("PUT", "/accounts/bob", json: Self.account("bobs password"), user: "admin", password: "admin password").status == 201)
        // The admin sees and deletes every account.
        let list = try await server.request("GET", "/accounts", user: "admin", password: "admin password")
        #expect(list.data.arrayValue?.compactMap { $0["id"]?.stringValue }.sorted() == ["admin", "bob"])
        #expect(try await server.request("DELETE", "/accounts/bob", user: "admin", password: "admin password").status == 200)
    }

    @Test func verifiedPasswordsAreNotHashedAgain() async throws {
        let server = try Self.server()
        try await server.request("PUT", "/accounts/bob", json: Self.account("correct horse"), user: nil)
        let auth = try #require(server.parts.api.authenticator)
        let before = auth.passwordVerifications
        for _ in 0..<20 {
            #expect(try await server.request("GET", "/", user: "bob", password: "correct horse").status == 200)
        }
        #expect(auth.passwordVerifications == before + 1)
        // A wrong password is always checked (and never remembered).
        for _ in 0..<3 { _ = try await server.request("GET", "/", user: "bob", password: "not the one") }
        #expect(auth.passwordVerifications == before + 4)
    }

    @Test func apiTokens() async throws {
        let token = "fy_0123456789abcdef0123456789abcdef"
        let server = try Self.server { c in c.tokens = ["etl:" + TokenHash.sha256Hex(token)] }
        var r = try await server.request("GET", "/", authorization: "Bearer " + token)
        #expect(r.json["user"]?["id"] == "token:etl")
        r = try await server.request("PUT", "/buckets/etl", authorization: "Bearer " + token)
        #expect(r.status == 201 && r.json["permissions"]?["write"] == ["token:etl"])
        r = try await server.request("GET", "/", authorization: "Bearer fy_wrong")
        #expect(r.status == 401 && r.json["errno"] == 105)
        // The configuration holds only the hash.
        #expect(!server.configuration.tokens.joined().contains(token))
    }

    static func base64URL(_ bytes: some DataProtocol) -> String {
        Data(bytes).base64EncodedString().replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_").replacingOccurrences(of: "=", with: "")
    }

    static func jwt(_ claims: JSON, alg: String = "HS256", sign: (String) -> [UInt8]) -> String {
        let header = base64URL(JSON.object(["alg": .string(alg), "typ": "JWT"]).serializedBytes())
        let payload = base64URL(claims.serializedBytes())
        let input = header + "." + payload
        return input + "." + base64URL(sign(input))
    }

    @Test func jsonWebTokens() async throws {
        let secret = "a shared secret of at least 32 bytes!"
        let server = try Self.server { c in
            c.jwtHS256Secret = secret
            c.jwtIssuer = "https://issuer.example"
        }
        func hs256(_ input: String) -> [UInt8] { Array(HMAC<SHA256>.authenticationCode(for: Array(input.utf8), using: SymmetricKey(data: Array(secret.utf8)))) }
        let now = Int64(Date().timeIntervalSince1970)
        let good = Self.jwt(["sub": "svc-42", "iss": "https://issuer.example", "exp": .int(now + 600)], sign: hs256)
        #expect(try await server.request("GET", "/", authorization: "Bearer " + good).json["user"]?["id"] == "jwt:svc-42")
        let refused: [(String, String)] = [
            (Self.jwt(["sub": "svc-42", "iss": "https://issuer.example", "exp": .int(now - 600)], sign: hs256), "expired"),
            (Self.jwt(["sub": "svc-42", "iss": "https://elsewhere", "exp": .int(now + 600)], sign: hs256), "issuer"),
            (Self.jwt(["sub": "svc-42", "iss": "https://issuer.example"], sign: { _ in Array("forged".utf8) }), "signature"),
            (Self.jwt(["sub": "svc-42", "iss": "https://issuer.example"], alg: "none", sign: { _ in [] }), "algorithm"),
            (Self.jwt(["iss": "https://issuer.example"], sign: hs256), "sub"),
            ("a.b.c", "well-formed"),
        ]
        for (token, why) in refused {
            let r = try await server.request("GET", "/", authorization: "Bearer " + token)
            #expect(r.status == 401 && (r.json["message"]?.stringValue ?? "").contains(why), "\(why): \(r.json.serialized())")
        }

        // RS256 with a key pair made here; the server has only the public key.
        let key = try _RSA.Signing.PrivateKey(keySize: .bits2048)
        let pem = try temporaryDirectory() + "/jwt.pem"
        try key.publicKey.pemRepresentation.write(toFile: pem, atomically: true, encoding: .utf8)
        let rsaServer = try Self.server { c in c.jwtRS256PublicKey = pem }
        // Its expiry counts from now: making a 2048-bit key took over a minute on a loaded machine,
        // and a token made to expire a minute after the test began was expired by then.
        let rs = Self.jwt(["sub": "robot", "exp": .int(Int64(Date().timeIntervalSince1970) + 600)], alg: "RS256") { input in
            Array((try! key.signature(for: SHA256.hash(data: Array(input.utf8)), padding: .insecurePKCS1v1_5)).rawRepresentation)
        }
        #expect(try await rsaServer.request("GET", "/", authorization: "Bearer " + rs).json["user"]?["id"] == "jwt:robot")
        // An HS256 token signed with the public key's text (the classic confusion attack) is refused.
        let confused = Self.jwt(["sub": "robot"]) { input in
            Array(HMAC<SHA256>.authenticationCode(for: Array(input.utf8), using: SymmetricKey(data: Array(key.publicKey.pemRepresentation.utf8))))
        }
        #expect(try await rsaServer.request("GET", "/", authorization: "Bearer " + confused).status == 401)
    }

    @Test func groupMembersGetTheGroupsPermissionsFromTheNextRequest() async throws {
        let server = try Self.server()
        let bob = server.userID("bob")
        try await server.request("PUT", "/buckets/b")
        try await server.request("PUT", "/buckets/b/groups/readers", json: ["data": ["members": [.string(bob)]]])
        try await server.request("PUT", "/buckets/b/collections/c", json: ["permissions": ["read": ["/buckets/b/groups/readers"]]])
        try await server.request("PUT", "/buckets/b/collections/c/records/r1", json: ["data": ["x": 1]])
        var r = try await server.request("GET", "/", user: "bob")
        #expect(r.json["user"]?["principals"]?.arrayValue?.contains("/buckets/b/groups/readers") == true)
        #expect(try await server.request("GET", "/buckets/b/collections/c/records/r1", user: "bob").status == 200)
        #expect(try await server.request("GET", "/buckets/b/collections/c/records/r1", user: "carol").status == 403)
        // A reader is not told who owns the collection; the owner is.
        r = try await server.request("GET", "/buckets/b/collections/c", user: "bob")
        #expect(r.status == 200 && r.json["permissions"] == .object([:]), "\(r.json.serialized())")
        r = try await server.request("GET", "/buckets/b/collections/c", user: "alice")
        #expect(r.json["permissions"]?["write"]?.arrayValue?.isEmpty == false)

        // bob leaves the group: refused from the next request on.
        r = try await server.request("PATCH", "/buckets/b/groups/readers", json: ["data": ["members": []]])
        #expect(r.status == 200)
        #expect(try await server.request("GET", "/buckets/b/collections/c/records/r1", user: "bob").status == 403)

        // Back in through a batch: the batch's group write counts as well.
        r = try await server.request("POST", "/batch", json: ["requests": [
            ["method": "PUT", "path": "/buckets/b/collections/c/records/r2", "body": ["data": ["x": 2]]],
            ["method": "PATCH", "path": "/buckets/b/groups/readers", "body": ["data": ["members": [.string(bob)]]]],
        ]])
        #expect(r.status == 200 && r.json["responses"]?[1]?["status"] == 200, "\(r.json.serialized())")
        #expect(try await server.request("GET", "/buckets/b/collections/c/records/r1", user: "bob").status == 200)
    }

    /// What a write tells other server processes (PostgreSQL) it may have changed.
    @Test func writesAnnounceWhatTheyMayChange() {
        #expect(KintoAPI.announcements(for: "/v1/buckets/b/collections/c/records/r") == ["/buckets/b/collections/c"])
        #expect(KintoAPI.announcements(for: "/buckets/b/collections/c/webhooks/h") == ["/buckets/b/collections/c", KintoAPI.webhooksAnnounced])
        #expect(KintoAPI.announcements(for: "/buckets/b/groups/g") == [KintoAPI.accountsChanged])
        #expect(KintoAPI.announcements(for: "/buckets/b") == ["*", KintoAPI.accountsChanged])
        #expect(KintoAPI.announcements(for: "/accounts/alice") == [KintoAPI.accountsChanged])
        #expect(KintoAPI.announcements(for: "/batch") == [])  // a batch announces what its sub-requests change
    }

    @Test func permissionsEndpointListsWhatTheCallerMayDo() async throws {
        let server = try Self.server()
        let bob = server.userID("bob")
        try await server.request("PUT", "/buckets/b")
        try await server.request("PUT", "/buckets/b/collections/mine")
        try await server.request("PUT", "/buckets/b/collections/shared", json: ["permissions": ["read": [.string(bob)]]])
        var r = try await server.request("GET", "/permissions", user: "alice")
        let alice = Dictionary(uniqueKeysWithValues: (r.data.arrayValue ?? []).map { ($0["uri"]!.stringValue!, $0["permissions"]!) })
        #expect(alice["/buckets/b"] == ["collection:create", "group:create", "read", "write"], "\(r.json.serialized())")
        #expect(alice["/buckets/b/collections/mine"] == ["read", "record:create", "write"])
        r = try await server.request("GET", "/permissions", user: "bob")
        #expect(r.data == [["bucket_id": "b", "collection_id": "shared", "id": "shared", "permissions": ["read"], "resource_name": "collection", "uri": "/buckets/b/collections/shared"]], "\(r.json.serialized())")
        #expect(try await server.request("GET", "/permissions", user: nil).status == 401)
    }

    @Test func rateLimitAnswers429PerPrincipal() async throws {
        let server = try Self.server()
        let limiter = RateLimiter(requests: 3, seconds: 60)
        #expect(limiter.admit("alice", now: 0) == nil && limiter.admit("alice", now: 0) == nil && limiter.admit("alice", now: 0) == nil)
        #expect(limiter.admit("alice", now: 0) == 20)   // one request comes back every 20 s
        #expect(limiter.admit("bob", now: 0) == nil)
        #expect(limiter.admit("alice", now: 20.5) == nil)
        _ = server
    }
}
