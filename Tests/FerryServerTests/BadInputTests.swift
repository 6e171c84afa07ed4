import FerryCore
@testable import FerryServer
import HTTPTypes
import Foundation
import Testing

/// Invariant 4: bad input gets a clear error in Kinto's format and changes nothing.
@Suite struct BadInputTests {
    struct Case: Sendable, CustomTestStringConvertible {
        let method: String
        let path: String
        let body: String?
        var headers: [String: String] = [:]
        let status: Int
        let errno: Int
        let message: String
        var testDescription: String { "\(method) \(path) → \(status)" }
    }

    static let records = "/buckets/main/collections/users/records"

    static let cases: [Case] = [
        Case(method: "POST", path: records, body: #"{"data": {"username": "x""#, status: 400, errno: 106, message: "Invalid JSON"),
        Case(method: "PUT", path: records + "/r9", body: "not json at all", status: 400, errno: 106, message: "Invalid JSON"),
        Case(method: "POST", path: records, body: #"{"data": [1, 2]}"#, status: 400, errno: 107, message: "data must be an object"),
        Case(method: "POST", path: records, body: #"{"data": "text"}"#, status: 400, errno: 107, message: "data must be an object"),
        Case(method: "POST", path: records, body: #"[1]"#, status: 400, errno: 107, message: "must be a JSON object"),
        Case(method: "PUT", path: records + "/r1", body: #"{"data": {"id": "other"}}"#, status: 400, errno: 107, message: "does not match"),
        Case(method: "PUT", path: records + "/r1", body: #"{"permissions": {"delete": ["x"]}}"#, status: 400, errno: 107, message: "'delete' is not a permission"),
        Case(method: "PUT", path: records + "/r1", body: #"{"permissions": {"read": "everyone"}}"#, status: 400, errno: 107, message: "list of principals"),
        Case(method: "PUT", path: records + "/bad%20id", body: "{}", status: 400, errno: 107, message: "Invalid object id"),
        Case(method: "PUT", path: records + "/-leading", body: "{}", status: 400, errno: 107, message: "Invalid object id"),
        Case(method: "PUT", path: records + "/" + String(repeating: "a", count: 300), body: "{}", status: 400, errno: 107, message: "Invalid object id"),
        Case(method: "PUT", path: "/buckets/..%2F..%2Fetc", body: "{}", status: 400, errno: 107, message: "Invalid object id"),
        Case(method: "POST", path: records, body: #"{"data": {"id": "b@d"}}"#, status: 400, errno: 107, message: "Invalid object id"),
        Case(method: "GET", path: records + "?_limit=abc", body: nil, status: 400, errno: 107, message: "_limit"),
        Case(method: "GET", path: records + "?_limit=-3", body: nil, status: 400, errno: 107, message: "_limit"),
        Case(method: "GET", path: records + "?_sort=a%20b", body: nil, status: 400, errno: 107, message: "Invalid sort field"),
        Case(method: "GET", path: records + "?_sort=--age", body: nil, status: 400, errno: 107, message: "Invalid sort field"),
        Case(method: "GET", path: records + "?_since=yesterday", body: nil, status: 400, errno: 107, message: "_since"),
        Case(method: "GET", path: records + "?gt_last_modified=abc", body: nil, status: 400, errno: 107, message: "last_modified"),
        Case(method: "GET", path: records + "?_token=garbage", body: nil, status: 400, errno: 107, message: "_token has invalid content"),
        Case(method: "GET", path: records + "?na%22me=1", body: nil, status: 400, errno: 107, message: "Unknown filter field"),
        Case(method: "GET", path: records + "?_fields=a%27b", body: nil, status: 400, errno: 107, message: "Invalid field"),
        Case(method: "DELETE", path: records + "?_limit=x", body: nil, status: 400, errno: 107, message: "_limit"),
        Case(method: "PUT", path: records + "/r1", body: "{}", headers: ["If-Match": "yesterday"], status: 400, errno: 107, message: "If-Match"),
        Case(method: "PATCH", path: records + "/r1", body: #"{"op": "add"}"#, headers: ["Content-Type": "application/json-patch+json"], status: 400, errno: 107, message: "JSON Patch"),
        Case(method: "PATCH", path: records + "/nope", body: #"{"data": {}}"#, status: 404, errno: 110, message: "does not exist"),
        Case(method: "DELETE", path: records + "/nope", body: nil, status: 404, errno: 110, message: "does not exist"),
        Case(method: "DELETE", path: records + "/r1?last_modified=abc", body: nil, status: 400, errno: 107, message: "last_modified"),
        Case(method: "GET", path: "/buckets/main/nothing", body: nil, status: 404, errno: 111, message: "could not be found"),
        Case(method: "GET", path: "/nowhere", body: nil, status: 404, errno: 111, message: "could not be found"),
        Case(method: "POST", path: records + "/r1", body: "{}", status: 405, errno: 115, message: "Method not allowed"),
        Case(method: "PUT", path: records, body: "{}", status: 405, errno: 115, message: "Method not allowed"),
        Case(method: "DELETE", path: "/", body: nil, status: 405, errno: 115, message: "Method not allowed"),
        Case(method: "POST", path: "/batch", body: #"{"requests": "all"}"#, status: 400, errno: 107, message: "requests must be a non-empty list"),
        Case(method: "POST", path: "/batch", body: #"{"requests": [{"path": "no-slash"}]}"#, status: 400, errno: 107, message: "path"),
        Case(method: "POST", path: "/batch", body: #"{"requests": [{"method": "BREW", "path": "/"}]}"#, status: 400, errno: 107, message: "method"),
        Case(method: "POST", path: "/batch", body: "{", status: 400, errno: 106, message: "Invalid JSON"),
        // defaults are checked even where every request overrides them (found by Schemathesis).
        Case(method: "POST", path: "/batch", body: #"{"defaults": {"headers": null}, "requests": [{"path": "/", "headers": {}}]}"#, status: 400, errno: 107, message: "defaults.headers must be an object of strings"),
        Case(method: "POST", path: "/batch", body: #"{"defaults": {"body": "text"}, "requests": [{"path": "/", "body": {}}]}"#, status: 400, errno: 107, message: "defaults.body must be an object"),
        Case(method: "POST", path: "/batch", body: #"{"defaults": {"method": "BREW"}, "requests": [{"path": "/", "method": "GET"}]}"#, status: 400, errno: 107, message: "defaults.method"),
        Case(method: "POST", path: "/batch", body: #"{"defaults": {"path": 7}, "requests": [{"path": "/"}]}"#, status: 400, errno: 107, message: "defaults.path"),
        // Found by Schemathesis (Tests/python/test_openapi.py): a last_modified that is no
        // timestamp was dropped silently, and the write went through.
        Case(method: "POST", path: records, body: #"{"data": {"last_modified": {}}}"#, status: 400, errno: 107, message: "data.last_modified must be an integer timestamp"),
        Case(method: "PUT", path: records + "/r2", body: #"{"data": {"last_modified": "soon"}}"#, status: 400, errno: 107, message: "not string"),
        Case(method: "PATCH", path: records + "/r1", body: #"{"data": {"last_modified": [1]}}"#, status: 400, errno: 107, message: "data.last_modified"),
        Case(method: "PATCH", path: records + "/r1", body: #"{"data": {"last_modified": 1.5}}"#, headers: ["Content-Type": "application/merge-patch+json"], status: 400, errno: 107, message: "data.last_modified"),
        Case(method: "PUT", path: "/buckets/main", body: #"{"data": {"last_modified": true}}"#, status: 400, errno: 107, message: "data.last_modified"),
        // Found by Schemathesis: a timestamp at Int64.max was stored, and the next write to the
        // collection overflowed computing the one after it, which killed the server.
        Case(method: "PUT", path: records + "/r2", body: #"{"data": {"last_modified": 9223372036854775807}}"#, status: 400, errno: 107, message: "at most 9007199254740991"),
        Case(method: "POST", path: "/buckets", body: #"{"data": {"last_modified": 9007199254740992}}"#, status: 400, errno: 107, message: "at most 9007199254740991"),
        Case(method: "DELETE", path: records + "/r1?last_modified=9223372036854775807", body: nil, status: 400, errno: 107, message: "at most 9007199254740991"),
        Case(method: "POST", path: records, body: String(repeating: "[", count: 5000) + String(repeating: "]", count: 5000), status: 400, errno: 106, message: "nesting deeper"),
    ]

    @Test(arguments: cases)
    func answersKintoErrorAndChangesNothing(_ c: Case) async throws {
        let server = try TestServer()
        try await server.seedUsers()
        try await server.request("PUT", Self.records + "/r1", json: ["data": ["username": "ada"]])
        let before = try await server.dump()
        let response = try await server.request(c.method, c.path, body: c.body, headers: c.headers)
        #expect(response.status == c.status)
        #expect(response.json["code"] == .int(Int64(c.status)))
        #expect(response.json["errno"] == .int(Int64(c.errno)))
        #expect(response.json["error"]?.stringValue?.isEmpty == false)
        let message = response.json["message"]?.stringValue ?? ""
        #expect(message.contains(c.message), "message was: \(message)")
        #expect(try await server.dump() == before)
    }

    /// The largest timestamp a client may ask for is kept, and writes after it go on.
    @Test func theLargestRequestedTimestampLeavesRoomForTheNextWrites() async throws {
        let server = try TestServer()
        try await server.seedUsers()
        let r = try await server.request("PUT", Self.records + "/r1", json: ["data": ["last_modified": .int(Timestamp.maxRequested)]])
        #expect(r.status == 201 && r.data["last_modified"] == .int(Timestamp.maxRequested))
        let next = try await server.request("PUT", Self.records + "/r2", json: ["data": [:]])
        #expect(next.status == 201 && next.data["last_modified"] == .int(Timestamp.maxRequested + 1))
        // A PUT without data keeps the fields; the stored timestamp (past the bound now) is not
        // read as one the request asks for (Schemathesis: `PUT -d '{}'` was answered 400).
        try await server.request("PUT", Self.records + "/r2", json: ["data": ["name": "ada"]])
        let again = try await server.request("PUT", Self.records + "/r2", json: [:])
        #expect(again.status == 200, "\(again.json.serialized())")
        #expect(again.data["name"] == "ada" && (again.data["last_modified"]?.intValue ?? 0) > Timestamp.maxRequested + 1)
        // Where a store already holds Int64.max (written before the bound), the next one stays there, no trap.
        #expect(Timestamp.next(after: .max, now: 5) == .max)
        #expect(Timestamp.next(after: 10, now: 5) == 11)
    }

    /// `_fields` items that are blank are skipped like empty ones (Schemathesis sent `_fields= \t `).
    @Test func blankFieldsItemsAreSkipped() async throws {
        let server = try TestServer()
        try await server.seedUsers()
        try await server.request("PUT", Self.records + "/r1", json: ["data": ["username": "ada", "age": 36]])
        for query in ["_fields=%20%09", "_fields=username,%20,", "_fields=,username"] {
            let r = try await server.request("GET", Self.records + "?" + query)
            #expect(r.status == 200, "\(query): \(r.json.serialized())")
            #expect(r.data[0]?["age"] == nil, "\(query)")
        }
    }

    @Test func invalidUTF8InBodyIsRefused() async throws {
        let server = try TestServer()
        try await server.seedUsers()
        let before = try await server.dump()
        var bytes = Array(#"{"data": {"name": ""#.utf8)
        bytes += [0xC3, 0x28]
        bytes += Array(#""}}"#.utf8)
        let identity = try await server.parts.api.authenticate(authorization: TestServer.basic("alice"))
        let response = await server.parts.api.handle(APIRequest(method: .post, path: Self.records, body: bytes, identity: identity))
        #expect(response.status == 400 && response.json["errno"] == 106)
        #expect(try await server.dump() == before)
    }

    @Test(arguments: ["Bearer abc", "Basic !!!notbase64", "Basic " + Data("nocolon".utf8).base64EncodedString(), "Basic " + Data(":pw".utf8).base64EncodedString(), "Digest x",
                       "Basic " + String(repeating: "A", count: 10_000), "Basic YWxpY2U6c2VjcmV0, Basic Ym9iOnNlY3JldA==", "Bearer ", "Bearer a.b.c",
                       "Basic " + Data("alice\u{0}:secret".utf8).base64EncodedString().replacingOccurrences(of: "=", with: "") + "!"])
    func malformedAuthorizationIsRefused(header: String) async throws {
        let server = try TestServer()
        let before = try await server.dump()
        let response = try await server.request("PUT", "/buckets/x", authorization: header)
        #expect(response.status == 401 && response.json["errno"] == 105, "\(response.json.serialized())")
        #expect(try await server.dump() == before)
    }

    @Test func failedBatchSubrequestIsRolledBackAlone() async throws {
        let server = try TestServer()
        try await server.seedUsers()
        let response = try await server.request("POST", "/batch", json: ["requests": [
            ["method": "PUT", "path": .string(Self.records + "/ok"), "body": ["data": ["v": 1]]],
            ["method": "PUT", "path": .string(Self.records + "/ok2"), "body": ["data": ["id": "mismatch"]]],
        ]])
        #expect(response.json["responses"]?[0]?["status"] == 201)
        #expect(response.json["responses"]?[1]?["status"] == 400)
        #expect(try await server.request("GET", Self.records + "/ok2").status == 404)
        #expect(try await server.request("GET", Self.records + "/ok").status == 200)
    }
}
