import FerryCore
@testable import FerryServer
import Testing

/// `Idempotency-Key` on POST (the IETF httpapi draft): a retried create with the same key
/// creates once and answers as the first time; the key with another request is a 422.
@Suite struct IdempotencyKeyTests {
    static let records = "/buckets/main/collections/users/records"

    @Test func aRetriedCreateCreatesOnceAndAnswersTheSame() async throws {
        let server = try TestServer()
        try await server.seedUsers()
        let body: JSON = ["data": ["username": "ada"]]
        let first = try await server.request("POST", Self.records, json: body, headers: ["Idempotency-Key": "k-1"])
        #expect(first.status == 201)
        let again = try await server.request("POST", Self.records, json: body, headers: ["Idempotency-Key": "k-1"])
        #expect(again.status == 201)
        #expect(again.json == first.json)
        #expect(again.header("ETag") == first.header("ETag"))
        #expect(again.header("Idempotent-Replayed") == "true")
        #expect(try await server.request("GET", Self.records).data.arrayValue?.count == 1)
        // The structured-field form of the same key is the same key.
        let quoted = try await server.request("POST", Self.records, json: body, headers: ["Idempotency-Key": "\"k-1\""])
        #expect(quoted.data["id"] == first.data["id"])
        // Without a key, or with another, the same body creates again.
        #expect(try await server.request("POST", Self.records, json: body).status == 201)
        #expect(try await server.request("POST", Self.records, json: body, headers: ["Idempotency-Key": "k-2"]).status == 201)
        #expect(try await server.request("GET", Self.records).data.arrayValue?.count == 3)
    }

    @Test func theSameKeyWithAnotherRequestIs422AndChangesNothing() async throws {
        let server = try TestServer()
        try await server.seedUsers()
        #expect(try await server.request("POST", Self.records, json: ["data": ["username": "ada"]], headers: ["Idempotency-Key": "k"]).status == 201)
        let before = try await server.dump()
        let other = try await server.request("POST", Self.records, json: ["data": ["username": "bob"]], headers: ["Idempotency-Key": "k"])
        #expect(other.status == 422 && other.json["errno"] == 107)
        #expect((other.json["message"]?.stringValue ?? "").contains("was used for another request"))
        // Another path with the same key is another request too.
        let elsewhere = try await server.request("POST", "/buckets/main/collections", json: ["data": ["id": "x"]], headers: ["Idempotency-Key": "k"])
        #expect(elsewhere.status == 422)
        #expect(try await server.dump() == before)
    }

    @Test func keysBelongToTheirCaller() async throws {
        let server = try TestServer()
        try await server.seedUsers()
        try await server.request("PUT", "/buckets/main", json: ["permissions": ["write": ["system.Authenticated"]]])
        let body: JSON = ["data": ["username": "ada"]]
        let alice = try await server.request("POST", Self.records, json: body, headers: ["Idempotency-Key": "shared"])
        let bob = try await server.request("POST", Self.records, json: body, user: "bob", headers: ["Idempotency-Key": "shared"])
        #expect(alice.status == 201 && bob.status == 201)
        #expect(alice.data["id"] != bob.data["id"])
        #expect(bob.header("Idempotent-Replayed") == nil)
    }

    @Test func aRefusedRequestIsNotRememberedAndItsRetryRuns() async throws {
        let server = try TestServer()
        let body: JSON = ["data": ["username": "ada"]]
        // The collection does not exist yet: 403/404, nothing kept.
        let refused = try await server.request("POST", Self.records, json: body, headers: ["Idempotency-Key": "k"])
        #expect(refused.status >= 400)
        try await server.seedUsers()
        let retried = try await server.request("POST", Self.records, json: body, headers: ["Idempotency-Key": "k"])
        #expect(retried.status == 201 && retried.header("Idempotent-Replayed") == nil)
    }

    @Test(arguments: ["", "\"\"", String(repeating: "k", count: 256), "a\"b", "caf\u{E9}", "\"a\\b\"", "a b"])
    func aMalformedKeyIs400AndChangesNothing(key: String) async throws {
        let server = try TestServer()
        try await server.seedUsers()
        let before = try await server.dump()
        let r = try await server.request("POST", Self.records, json: ["data": [:]], headers: ["Idempotency-Key": key])
        #expect(r.status == 400 && r.json["errno"] == 107, "\(key): \(r.json.serialized())")
        #expect((r.json["message"]?.stringValue ?? "").contains("Idempotency-Key must be"))
        #expect(try await server.dump() == before)
    }

    @Test func aKeyOnAPostThatIsNotACreateIs400() async throws {
        let server = try TestServer()
        let r = try await server.request("POST", "/batch", json: ["requests": [["path": "/"]]], headers: ["Idempotency-Key": "k"])
        #expect(r.status == 400 && (r.json["message"]?.stringValue ?? "").contains("Idempotency-Key is taken on a POST that creates"))
    }
}
