import FerryCore
@testable import FerryServer
import Foundation
import Testing

/// A collection's `schema` and `unique_fields` guard every record write.
@Suite struct SchemaTests {
    static let users = "/buckets/main/collections/users"
    static let schema: JSON = try! JSON.parse(#"""
        {"type": "object", "required": ["username"], "additionalProperties": false,
         "properties": {"username": {"type": "string", "minLength": 1, "pattern": "^[a-z0-9_]+$"},
                        "age": {"type": "integer", "minimum": 0, "maximum": 150},
                        "address": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
        """#)

    static func seeded() async throws -> TestServer {
        let server = try TestServer()
        try await server.request("PUT", "/buckets/main")
        let r = try await server.request("PUT", users, json: ["data": ["schema": schema, "unique_fields": ["username"]]])
        #expect(r.status == 201, "\(r.json.serialized())")
        return server
    }

    @Test func recordsAreValidatedAgainstTheCollectionSchema() async throws {
        let server = try await Self.seeded()
        var r = try await server.request("POST", Self.users + "/records", json: ["data": ["username": "ada", "age": 36, "address": ["city": "London"]]])
        #expect(r.status == 201)
        let before = try await server.dump()
        let refused: [(JSON, String, String)] = [
            (["username": "bob", "age": "old"], "data.age", "integer"),
            (["age": 3], "data.username", "required"),
            (["username": "Bob!"], "data.username", "pattern"),
            (["username": "bob", "age": 200], "data.age", "150"),
            (["username": "bob", "address": [:]], "data.address.city", "required"),
            (["username": "bob", "admin": true], "data.admin", ""),
        ]
        for (data, name, words) in refused {
            r = try await server.request("POST", Self.users + "/records", json: ["data": data])
            let detail = r.json["details"]?[0]
            #expect(r.status == 400 && r.json["errno"] == 107 && detail?["name"] == .string(name), "\(data.serialized()): \(r.json.serialized())")
            #expect(words.isEmpty || (detail?["description"]?.stringValue ?? "").contains(words), "\(r.json.serialized())")
        }
        // PATCH merges first, then validates the result.
        let id = try #require(try await server.request("GET", Self.users + "/records").data[0]?["id"]?.stringValue)
        r = try await server.request("PATCH", Self.users + "/records/" + id, json: ["data": ["age": -1]])
        #expect(r.status == 400 && r.json["details"]?[0]?["name"] == "data.age")
        #expect(try await server.dump() == before)
        // id and last_modified are the server's, not the schema's business.
        r = try await server.request("PUT", Self.users + "/records/cy", json: ["data": ["id": "cy", "username": "cy", "last_modified": 5]])
        #expect(r.status == 201, "\(r.json.serialized())")
    }

    /// A collection schema with a catastrophic pattern (ReDoS) cannot hold the writer: the
    /// record is refused once the pattern budget is spent, and nothing is written.
    @Test func aCatastrophicPatternRefusesTheRecordInsteadOfHanging() async throws {
        let server = try TestServer()
        try await server.request("PUT", "/buckets/main")
        var r = try await server.request("PUT", "/buckets/main/collections/evil",
                                         json: ["data": ["schema": ["type": "object", "properties": ["name": ["type": "string", "pattern": "^(a+)+$"]]]]])
        #expect(r.status == 201)
        let before = try await server.dump()
        r = try await server.request("POST", "/buckets/main/collections/evil/records", json: ["data": ["name": .string(String(repeating: "a", count: 40) + "b")]])
        #expect(r.status == 400 && r.json["errno"] == 107, "\(r.json.serialized())")
        #expect((r.json["message"]?.stringValue ?? "").contains("too costly to validate"), "\(r.json.serialized())")
        #expect(try await server.dump() == before)
        r = try await server.request("POST", "/buckets/main/collections/evil/records", json: ["data": ["name": "aaaa"]])
        #expect(r.status == 201)
    }

    @Test func aChangedSchemaAppliesToTheNextWrite() async throws {
        let server = try await Self.seeded()
        #expect(try await server.request("POST", Self.users + "/records", json: ["data": ["username": "ann", "nick": "a"]]).status == 400)
        var open = Self.schema
        if case .object(var members) = open { members["additionalProperties"] = true; open = .object(members) }
        #expect(try await server.request("PATCH", Self.users, json: ["data": ["schema": open]]).status == 200)
        #expect(try await server.request("POST", Self.users + "/records", json: ["data": ["username": "ann", "nick": "a"]]).status == 201)
    }

    @Test func anInvalidSchemaOrUniqueListIsRefused() async throws {
        let server = try await Self.seeded()
        let before = try await server.dump()
        let cases: [(JSON, String)] = [
            (["schema": ["type": "strnig"]], "data.schema"),
            (["schema": ["minimum": "3"]], "data.schema"),
            (["schema": ["pattern": "(unclosed"]], "data.schema"),
            (["schema": ["$ref": "https://elsewhere.example/schema.json"]], "data.schema"),
            (["schema": "not an object"], "data.schema"),
            (["unique_fields": "username"], "data.unique_fields"),
            (["unique_fields": ["a.b"]], "data.unique_fields"),
            (["unique_fields": [1]], "data.unique_fields"),
        ]
        for (data, name) in cases {
            let r = try await server.request("PATCH", Self.users, json: ["data": data])
            #expect(r.status == 400 && r.json["details"]?[0]?["name"] == .string(name), "\(data.serialized()): \(r.json.serialized())")
        }
        // A schema nested 1,000 levels deep is refused, not a crash.
        var deep: JSON = ["type": "object"]
        for _ in 0..<1000 { deep = ["type": "object", "properties": ["x": deep]] }
        #expect(try await server.request("PATCH", Self.users, json: ["data": ["schema": deep]]).status == 400)
        #expect(try await server.dump() == before)
    }

    @Test func uniqueFieldsRefuseDuplicatesWith409() async throws {
        let server = try await Self.seeded()
        #expect(try await server.request("PUT", Self.users + "/records/a", json: ["data": ["username": "ann"]]).status == 201)
        #expect(try await server.request("PUT", Self.users + "/records/b", json: ["data": ["username": "bob"]]).status == 201)
        let before = try await server.dump()
        var r = try await server.request("PUT", Self.users + "/records/c", json: ["data": ["username": "ann"]])
        #expect(r.status == 409 && r.json["errno"] == 122 && r.json["details"]?["field"] == "username", "\(r.json.serialized())")
        r = try await server.request("PATCH", Self.users + "/records/b", json: ["data": ["username": "ann"]])
        #expect(r.status == 409)
        // In a batch, only the duplicate is refused.
        r = try await server.request("POST", "/batch", json: ["requests": [
            ["method": "PUT", "path": "/buckets/main/collections/users/records/d", "body": ["data": ["username": "ann"]]],
        ]])
        #expect(r.json["responses"]?[0]?["status"] == 409)
        #expect(try await server.dump() == before)
        // A record keeps its own value; a freed value can be taken.
        #expect(try await server.request("PUT", Self.users + "/records/a", json: ["data": ["username": "ann", "age": 5]]).status == 200)
        #expect(try await server.request("DELETE", Self.users + "/records/a").status == 200)
        #expect(try await server.request("PUT", Self.users + "/records/c", json: ["data": ["username": "ann"]]).status == 201)
    }
}
