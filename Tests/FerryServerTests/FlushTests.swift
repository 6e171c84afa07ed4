import FerryCore
@testable import FerryServer
import Testing

/// Kinto's flush plugin: `POST /v1/__flush__` empties the server where `flush_endpoint_enabled`
/// says so, and is absent (404) elsewhere.
@Suite struct FlushTests {
    @Test func flushIsAbsentUnlessEnabledAndChangesNothing() async throws {
        let server = try TestServer()
        try await server.seedUsers()
        try await server.request("PUT", "/buckets/main/collections/users/records/r1", json: ["data": ["v": 1]])
        let before = try await server.dump()
        for method in ["POST", "GET", "DELETE"] {
            let r = try await server.request(method, "/__flush__", user: nil)
            #expect(r.status == 404 && r.json["errno"] == 111, "\(method)")
        }
        let batch = try await server.request("POST", "/batch", json: ["requests": [["method": "POST", "path": "/__flush__"]]])
        #expect(batch.json["responses"]?[0]?["status"] == 404)
        #expect(try await server.dump() == before)
        #expect(try await server.request("GET", "/").json["capabilities"]?["flush_endpoint"] == nil)
    }

    @Test func flushEmptiesEverythingAndForgetsWhoWasSignedIn() async throws {
        let server = try TestServer { $0.flushEndpoint = true; $0.passwordRounds = 1000 }
        #expect(try await server.request("GET", "/").json["capabilities"]?["flush_endpoint"] != nil)
        #expect(try await server.request("PUT", "/accounts/user", json: ["data": ["password": "p4ssw0rd"]], user: nil).status == 201)
        #expect(try await server.request("GET", "/", user: "user", password: "p4ssw0rd").json["user"]?["id"] == "account:user")
        try await server.seedUsers()
        try await server.request("PUT", "/buckets/main/groups/g", json: ["data": ["members": ["account:user"]]])
        try await server.request("PUT", "/buckets/main/collections/users/records/r1", json: ["data": ["v": 1]])
        try await server.request("DELETE", "/buckets/main/collections/users/records/r1")
        #expect(try await server.dump().count > 5)

        #expect(try await server.request("GET", "/__flush__", user: nil).status == 405)
        let r = try await server.request("POST", "/__flush__", user: nil)  // no permission needed, as Kinto
        #expect(r.status == 202 && r.json == [:])
        #expect(try await server.dump() == [])
        // The account is gone: the same pair is a basicauth principal again (the cache was dropped).
        let hello = try await server.request("GET", "/", user: "user", password: "p4ssw0rd")
        #expect(hello.json["user"]?["id"]?.stringValue?.hasPrefix("basicauth:") == true)
        #expect(try await server.request("GET", "/buckets/main").status == 403)  // alice may not read an absent bucket
        // The server goes on.
        #expect(try await server.request("PUT", "/buckets/main").status == 201)
    }

    @Test func flushOnAReadOnlyServerIsRefused() async throws {
        let server = try TestServer { $0.flushEndpoint = true }
        try await server.seedUsers()
        let before = try await server.dump()
        let readonly = try TestServer { $0.flushEndpoint = true; $0.readonly = true; $0.dataDirectory = server.directory }
        let r = try await readonly.request("POST", "/__flush__", user: nil)
        #expect(r.status == 405 && r.json["errno"] == 115)
        #expect(try await server.dump() == before)
    }
}
