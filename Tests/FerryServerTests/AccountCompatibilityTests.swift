import FerryCore
@testable import FerryServer
import Testing

/// Accounts as Kinto's accounts plugin has them, where Kinto clients notice: an account
/// created with its own credentials, and the caller's account in `/permissions`.
@Suite struct AccountCompatibilityTests {

    /// With only the account policy (the kinto-http suite's `kinto.ini`), credentials of an
    /// account that does not exist yet are anonymous, so they can create it; once it exists
    /// only its password opens it.
    @Test func anAccountIsCreatedWithItsOwnCredentials() async throws {
        let server = try TestServer { $0.authPolicies = ["account"]; $0.passwordRounds = 1000 }
        let body: JSON = ["data": ["password": "p4ssw0rd"]]
        var r = try await server.request("GET", "/", user: "user", password: "p4ssw0rd")
        #expect(r.status == 200 && r.json["user"] == nil)  // anonymous
        r = try await server.request("PUT", "/accounts/user", json: body, user: "user", password: "p4ssw0rd")
        #expect(r.status == 201 && r.data["id"] == "user", "\(r.json.serialized())")
        r = try await server.request("GET", "/", user: "user", password: "p4ssw0rd")
        #expect(r.json["user"]?["id"] == "account:user")

        // The account exists: a wrong password is refused, and changes nothing.
        let before = try await server.dump()
        r = try await server.request("PUT", "/accounts/user", json: ["data": ["password": "taken over"]], user: "user", password: "wrong password")
        #expect(r.status == 401 && r.json["errno"] == 105 && (r.json["message"]?.stringValue ?? "").contains("wrong user name or password"))
        r = try await server.request("GET", "/buckets", user: "user", password: "wrong password")
        #expect(r.status == 401)
        #expect(try await server.dump() == before)

        // Credentials of nobody reach what anonymous reaches, no more.
        #expect(try await server.request("PUT", "/buckets/b", user: "nobody", password: "whatever").status == 401)
        r = try await server.request("GET", "/buckets", user: "nobody", password: "whatever")
        let anonymous = try await server.request("GET", "/buckets", user: nil)
        #expect(r.status == anonymous.status && r.json == anonymous.json)
    }

    /// Found by Schemathesis (Tests/python/test_openapi.py): permissions in an account's body
    /// were ignored whatever they held (`[null, null]` created the account). An account's
    /// permissions are fixed, so a body that sets some is refused and creates nothing.
    @Test(arguments: [#"[null, null]"#, #"{"read": ["system.Everyone"]}"#, #""everyone""#])
    func anAccountBodyThatSetsPermissionsIsRefused(permissions: String) async throws {
        let server = try TestServer { $0.authPolicies = ["account", "basicauth"]; $0.passwordRounds = 1000 }
        let before = try await server.dump()
        let r = try await server.request("PUT", "/accounts/alice", body: #"{"data": {"password": "p4ssw0rd!"}, "permissions": "# + permissions + "}")
        #expect(r.status == 400 && r.json["errno"] == 107, "\(r.json.serialized())")
        #expect((r.json["message"]?.stringValue ?? "").contains("an account's permissions cannot be set"))
        #expect(try await server.dump() == before)
        // Empty permissions are no permissions: the account is created.
        let ok = try await server.request("PUT", "/accounts/alice", body: #"{"data": {"password": "p4ssw0rd!"}, "permissions": {}}"#)
        #expect(ok.status == 201, "\(ok.json.serialized())")
    }

    /// Password lengths are counted in code points, as JSON Schema's minLength and maxLength
    /// (which the API document gives) count them: a client that checks with the document agrees.
    @Test func passwordLengthsAreCodePoints() async throws {
        let server = try TestServer { $0.authPolicies = ["account", "basicauth"]; $0.passwordRounds = 1000 }
        var r = try await server.request("PUT", "/accounts/alice", json: ["data": ["password": .string(String(repeating: "\u{E9}", count: 1024))]])
        #expect(r.status == 201, "\(r.json.serialized())")  // 2048 bytes, 1024 code points
        let before = try await server.dump()
        r = try await server.request("PUT", "/accounts/bob", json: ["data": ["password": .string(String(repeating: "p", count: 1025))]], user: "bob")
        #expect(r.status == 400 && (r.json["message"]?.stringValue ?? "").contains("at most 1024 characters"), "\(r.json.serialized())")
        // e + combining acute: one Character, two code points; eight of them are long enough.
        r = try await server.request("PUT", "/accounts/carol", json: ["data": ["password": .string(String(repeating: "e\u{301}", count: 4))]], user: "carol")
        #expect(r.status == 201, "\(r.json.serialized())")
        r = try await server.request("PUT", "/accounts/dave", json: ["data": ["password": "short"]], user: "dave")
        #expect(r.status == 400)
        #expect(try await server.dump().count == before.count + 1)
    }

    @Test func unknownCredentialsCreateNothingWhereOnlyAdminsMay() async throws {
        let server = try TestServer { $0.authPolicies = ["account"]; $0.accountCreatePrincipals = ["account:admin"]; $0.passwordRounds = 1000 }
        let before = try await server.dump()
        let r = try await server.request("PUT", "/accounts/user", json: ["data": ["password": "p4ssw0rd"]], user: "user", password: "p4ssw0rd")
        #expect(r.status == 401 && r.json["errno"] == 104, "\(r.json.serialized())")
        #expect(try await server.dump() == before)
    }

    /// Kinto lists the caller's own account, with read and write, in `/permissions`.
    @Test func permissionsListTheCallersAccount() async throws {
        let server = try TestServer { $0.passwordRounds = 1000 }
        #expect(try await server.request("PUT", "/accounts/user", json: ["data": ["password": "p4ssw0rd"]], user: nil).status == 201)
        #expect(try await server.request("PUT", "/accounts/other", json: ["data": ["password": "p4ssw0rd"]], user: nil).status == 201)
        #expect(try await server.request("PUT", "/buckets/b", user: "user", password: "p4ssw0rd").status == 201)
        let r = try await server.request("GET", "/permissions", user: "user", password: "p4ssw0rd")
        #expect(r.status == 200)
        let entries = r.data.arrayValue ?? []
        let account = entries.filter { $0["resource_name"] == "account" }
        #expect(account == [["uri": "/accounts/user", "resource_name": "account", "id": "user", "account_id": "user", "permissions": ["read", "write"]]])
        #expect(entries.contains { $0["uri"] == "/buckets/b" })
        // A basicauth user holds no account.
        let basic = try await server.request("GET", "/permissions", user: "alice")
        #expect(basic.status == 200 && !(basic.data.arrayValue ?? []).contains { $0["resource_name"] == "account" })
    }
}
