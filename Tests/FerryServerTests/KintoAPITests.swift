import FerryCore
@testable import FerryServer
import Foundation
import Testing

@Suite struct KintoAPITests {
    @Test func helloAnnouncesSettingsAndUser() async throws {
        let server = try TestServer { $0.batchMaxRequests = 7 }
        let anonymous = try await server.request("GET", "/", user: nil)
        #expect(anonymous.status == 200)
        #expect(anonymous.json["project_name"] == "ferry")
        #expect(anonymous.json["settings"]?["batch_max_requests"] == 7)
        #expect(anonymous.json["settings"]?["readonly"] == false)
        #expect(anonymous.json["user"] == nil)
        let alice = try await server.request("GET", "/")
        #expect(alice.json["user"]?["id"] == .string(server.userID("alice")))
        #expect(try await server.request("GET", "/__heartbeat__").status == 200)
        #expect(try await server.request("GET", "/__lbheartbeat__").status == 200)
        #expect(try await server.request("GET", "/__version__").json["name"] == "ferry")
        // No link to an address nobody published: the project's URL is the deployment's to give.
        let version = try await server.request("GET", "/__version__").json
        #expect(anonymous.json["project_docs"] == nil && version["source"] == nil)
        #expect(anonymous.json["capabilities"]?["streams"]?["url"] == nil)
        #expect(!String(decoding: anonymous.json.serializedBytes() + version.serializedBytes(), as: UTF8.self).contains("ferry-sync"))
        let documented = try TestServer { $0.projectURL = "https://docs.example.com/ferry" }
        let hello = try await documented.request("GET", "/", user: nil).json
        #expect(hello["project_docs"] == "https://docs.example.com/ferry" && hello["capabilities"]?["webhooks"]?["url"] == "https://docs.example.com/ferry")
        #expect(try await documented.request("GET", "/__version__").json["source"] == "https://docs.example.com/ferry")
    }

    @Test func recordLifecycleAndChangeFeed() async throws {
        let server = try TestServer()
        try await server.seedUsers()
        let records = "/buckets/main/collections/users/records"
        let emptyETag = try await server.request("GET", records).etag!
        let created = try await server.request("POST", records, json: ["data": ["username": "ada", "age": 36, "address": ["city": "London"]]])
        #expect(created.status == 201)
        let id = created.data["id"]!.stringValue!
        #expect(ObjectID.isValid(id) && id.count == 36)
        let t1 = created.data["last_modified"]!.intValue!
        #expect(t1 > emptyETag)
        #expect(created.json["permissions"]?["write"] == [.string(server.userID("alice"))])

        let put = try await server.request("PUT", "\(records)/bob", json: ["data": ["username": "bob", "age": 25]])
        #expect(put.status == 201 && put.data["id"] == "bob")
        let replaced = try await server.request("PUT", "\(records)/bob", json: ["data": ["username": "bob", "age": 26]])
        #expect(replaced.status == 200 && replaced.data["age"] == 26)

        let fetched = try await server.request("GET", "\(records)/\(id)")
        #expect(fetched.data["username"] == "ada" && fetched.etag == t1)
        #expect(fetched.header("Last-Modified") != nil)

        let deleted = try await server.request("DELETE", "\(records)/bob")
        #expect(deleted.data["deleted"] == true && deleted.data["id"] == "bob")
        #expect(try await server.request("GET", "\(records)/bob").status == 404)

        let feed = try await server.request("GET", "\(records)?_since=\(t1)")
        #expect(feed.data.arrayValue?.count == 1)
        #expect(feed.data[0]?["deleted"] == true)
        let list = try await server.request("GET", records)
        #expect(list.data.arrayValue?.map { $0["id"] } == [.string(id)])
        #expect(list.etag == deleted.data["last_modified"]?.intValue)
        let before = try await server.request("GET", "\(records)?_before=\(t1 + 1)")
        #expect(before.data.arrayValue?.map { $0["id"] } == [.string(id)])
        let to = try await server.request("GET", "\(records)?_to=\(t1 + 1)")
        #expect(to.data.arrayValue?.count == 1)
        let head = try await server.request("HEAD", "\(records)?_since=0")
        #expect(head.header("Total-Objects") == "2")
    }

    @Test func everyChangeGetsAStrictlyGreaterTimestamp() async throws {
        let server = try TestServer()
        try await server.seedUsers()
        var last: Int64 = 0
        for i in 0..<50 {
            let r = try await server.request("PUT", "/buckets/main/collections/users/records/r\(i % 5)", json: ["data": ["i": .int(Int64(i))]])
            let ts = r.data["last_modified"]!.intValue!
            #expect(ts > last)
            last = ts
        }
        #expect(try await server.request("GET", "/buckets/main/collections/users/records").etag == last)
    }

    @Test func filtersSortFieldsAndPagination() async throws {
        let server = try TestServer()
        try await server.seedUsers()
        let records = "/buckets/main/collections/users/records"
        for i in 0..<25 {
            try await server.request("PUT", "\(records)/u\(i)", json: ["data": [
                "username": .string("user\(i)"), "age": .int(Int64(20 + i % 10)), "address": ["city": i % 2 == 0 ? "Paris" : "Oslo"],
                "tags": i % 5 == 0 ? ["vip"] : [],
            ]])
        }
        func ids(_ query: String) async throws -> [String] {
            try await server.request("GET", "\(records)?\(query)").data.arrayValue!.map { $0["id"]!.stringValue! }
        }
        #expect(try await ids("age=21").sorted() == ["u1", "u11", "u21"])
        #expect(try await ids("min_age=28&address.city=Oslo").sorted() == ["u19", "u9"])
        #expect(try await ids("in_id=u1,u2,nope").sorted() == ["u1", "u2"])
        #expect(try await ids("exclude_age=20,21,22,23,24,25,26,27,28").count == 2)
        #expect(try await ids("like_username=user2*").count == 6)
        #expect(try await ids("contains_tags=vip").count == 5)
        #expect(try await ids("has_tags=false").isEmpty)
        #expect(try await ids("not_address.city=Paris").count == 12)
        #expect(try await ids("lt_age=21").count == 3)
        #expect(try await ids("gt_age=28").count == 2)
        #expect(try await ids("max_age=20").count == 3)
        let sorted = try await server.request("GET", "\(records)?_sort=-age,username").data.arrayValue!
        #expect(sorted.first?["id"] == "u19" && sorted[1]["id"] == "u9")
        let fields = try await server.request("GET", "\(records)/u3?_fields=address.city")
        #expect(fields.data == ["id": "u3", "last_modified": fields.data["last_modified"]!, "address": ["city": "Oslo"]])

        // Follow Next-Page through every page: each record exactly once.
        var url: String? = "\(records)?_limit=4&_sort=age"
        var seen: [String] = []
        var pages = 0
        while let next = url {
            let page = try await server.request("GET", next)
            #expect(page.status == 200)
            seen += page.data.arrayValue!.map { $0["id"]!.stringValue! }
            pages += 1
            url = page.header("Next-Page").map { String($0[$0.range(of: "/v1")!.upperBound...]) }
        }
        #expect(pages == 7 && seen.count == 25 && Set(seen).count == 25)
    }

    @Test func preconditionsAnswer412And304() async throws {
        let server = try TestServer()
        try await server.seedUsers()
        let path = "/buckets/main/collections/users/records/r1"
        let created = try await server.request("PUT", path, json: ["data": ["v": 1]], headers: ["If-None-Match": "*"])
        #expect(created.status == 201)
        let again = try await server.request("PUT", path, json: ["data": ["v": 2]], headers: ["If-None-Match": "*"])
        #expect(again.status == 412 && again.json["errno"] == 114)
        #expect(again.json["details"]?["existing"]?["v"] == 1)
        let stale = try await server.request("PUT", path, json: ["data": ["v": 3]], headers: ["If-Match": "\"1\""])
        #expect(stale.status == 412)
        let etag = created.etag!
        let fresh = try await server.request("PATCH", path, json: ["data": ["v": 4]], headers: ["If-Match": "\"\(etag)\""])
        #expect(fresh.status == 200 && fresh.data["v"] == 4)
        let notModified = try await server.request("GET", path, headers: ["If-None-Match": "\"\(fresh.etag!)\""])
        #expect(notModified.status == 304)
        let list = try await server.request("GET", "/buckets/main/collections/users/records")
        #expect(try await server.request("GET", "/buckets/main/collections/users/records", headers: ["If-None-Match": "\"\(list.etag!)\""]).status == 304)
        #expect(try await server.request("DELETE", path, headers: ["If-Match": "\"\(etag)\""]).status == 412)
        #expect(try await server.request("GET", path).data["v"] == 4)
    }

    @Test func patchFlavours() async throws {
        let server = try TestServer()
        try await server.seedUsers()
        let path = "/buckets/main/collections/users/records/r1"
        try await server.request("PUT", path, json: ["data": ["a": 1, "o": ["x": 1, "y": 2]]])
        let merge = try await server.request("PATCH", path, json: ["data": ["o": ["y": .null], "b": 2]])
        #expect(merge.data["o"] == ["y": .null] && merge.data["b"] == 2 && merge.data["a"] == 1)
        let mergePatch = try await server.request("PATCH", path, json: ["data": ["o": ["z": 3], "a": .null]],
                                                  headers: ["Content-Type": "application/merge-patch+json"])
        #expect(mergePatch.data["o"] == ["y": .null, "z": 3] && mergePatch.data["a"] == nil)
        let jsonPatch = try await server.request("PATCH", path, body: #"[{"op":"add","path":"/data/c","value":[1]},{"op":"remove","path":"/data/b"},{"op":"add","path":"/permissions/read/system.Everyone"}]"#,
                                                 headers: ["Content-Type": "application/json-patch+json"])
        #expect(jsonPatch.status == 200)
        #expect(jsonPatch.data["c"] == [1] && jsonPatch.data["b"] == nil)
        #expect(jsonPatch.json["permissions"]?["read"] == ["system.Everyone"])
        #expect(try await server.request("GET", path, user: nil).status == 200)
        let light = try await server.request("PATCH", path, json: ["data": ["c": [2], "d": 1]], headers: ["Response-Behavior": "light"])
        #expect(light.data == ["c": [2], "d": 1])
        let failed = try await server.request("PATCH", path, body: #"[{"op":"test","path":"/data/d","value":99}]"#,
                                              headers: ["Content-Type": "application/json-patch+json"])
        #expect(failed.status == 400)
        let empty = try await server.request("PATCH", path, json: [:])
        #expect(empty.status == 400)
    }

    @Test func pluralDeleteWithFiltersReturnsTombstones() async throws {
        let server = try TestServer()
        try await server.seedUsers()
        let records = "/buckets/main/collections/users/records"
        for i in 0..<6 { try await server.request("PUT", "\(records)/r\(i)", json: ["data": ["even": .bool(i % 2 == 0)]]) }
        let deleted = try await server.request("DELETE", "\(records)?even=true")
        #expect(deleted.status == 200)
        #expect(Set(deleted.data.arrayValue!.map { $0["id"]!.stringValue! }) == ["r0", "r2", "r4"])
        #expect(deleted.data.arrayValue!.allSatisfy { $0["deleted"] == true })
        #expect(try await server.request("GET", records).data.arrayValue?.count == 3)
        #expect(try await server.request("GET", "\(records)?_since=0").data.arrayValue?.count == 6)
    }

    @Test func batchRunsSubrequestsWithDefaults() async throws {
        let server = try TestServer { $0.batchMaxRequests = 25 }
        try await server.seedUsers()
        var requests: [JSON] = []
        for i in 0..<5 { requests.append(["path": .string("/buckets/main/collections/users/records/b\(i)"), "body": ["data": ["i": .int(Int64(i))]]]) }
        requests.append(["method": "GET", "path": "/v1/buckets/main/collections/users/records?_sort=i"])
        requests.append(["path": "/buckets/main/collections/users/records/bad@id"])
        let response = try await server.request("POST", "/batch", json: ["defaults": ["method": "PUT"], "requests": .array(requests)])
        #expect(response.status == 200)
        let responses = response.json["responses"]!.arrayValue!
        #expect(responses.prefix(5).allSatisfy { $0["status"] == 201 })
        #expect(responses[5]["body"]?["data"]?.arrayValue?.count == 5)
        #expect(responses[6]["status"] == 400)
        let tooMany = try await server.request("POST", "/batch", json: ["requests": .array(Array(repeating: ["path": "/"], count: 26))])
        #expect(tooMany.status == 400 && tooMany.json["message"]?.stringValue?.contains("limited to 25") == true)
        let nested = try await server.request("POST", "/batch", json: ["requests": [["method": "POST", "path": "/batch", "body": ["requests": []]]]])
        #expect(nested.json["responses"]?[0]?["status"] == 400)
    }

    /// Accounts, permissions and webhooks answer in a batch as they do outside one (they used
    /// to answer 500 "answered outside a session"); what waits on its own is refused with 400.
    @Test func batchAnswersEveryEndpointAsOutside() async throws {
        let server = try TestServer { $0.webhookAllowHosts = ["127.0.0.1"] }
        try await server.seedUsers()
        let hook: JSON = ["data": ["url": "http://127.0.0.1:9/hook", "secret": "0123456789abcdef"]]
        let response = try await server.request("POST", "/batch", json: ["requests": [
            ["method": "PUT", "path": "/accounts/carol", "body": ["data": ["password": "carol's long password"]]],
            ["method": "GET", "path": "/permissions"],
            ["method": "PUT", "path": "/buckets/main/collections/users/webhooks/h1", "body": hook],
            ["method": "GET", "path": "/buckets/main/collections/users/webhooks"],
            ["method": "PUT", "path": "/accounts/dave", "body": ["data": ["password": 42]]],
            ["method": "GET", "path": "/__heartbeat__"],
            ["method": "GET", "path": "/buckets/main/collections/users/records?_since=0&_wait=1"],
            ["method": "PUT", "path": "/buckets/main/collections/users/webhooks/h2", "body": ["data": ["url": "ftp://x"]]],
        ]])
        #expect(response.status == 200, "\(response.json.serialized())")
        let answers = response.json["responses"]?.arrayValue ?? []
        #expect(answers.map { $0["status"]?.intValue ?? 0 } == [201, 200, 201, 200, 400, 200, 400, 400], "\(response.json.serialized())")
        #expect(answers.first?["body"]?["data"]?["id"] == "carol")
        let uris = answers[1]["body"]?["data"]?.arrayValue?.compactMap { $0["uri"]?.stringValue } ?? []
        #expect(uris.contains("/buckets/main/collections/users"))
        #expect(answers[3]["body"]?["data"]?.arrayValue?.map { $0["id"] } == ["h1"])
        #expect(answers[2]["body"]?["data"]?["secret"] == nil)
        // What the batch wrote is there, as if written one by one; what it refused is not.
        #expect(try await server.request("GET", "/accounts/carol", user: "carol", password: "carol's long password").status == 200)
        #expect(try await server.request("GET", "/buckets/main/collections/users/webhooks/h1").status == 200)
        #expect(try await server.request("GET", "/accounts/dave", user: "dave").status == 403)
        #expect(try await server.request("GET", "/buckets/main/collections/users/webhooks/h2").status == 404)
    }

    /// What a batch remembers of earlier sub-requests (grants, parents, a collection's rules) is
    /// forgotten when one of them writes a collection: later ones see the change.
    @Test func aBatchSeesItsOwnCollectionWrites() async throws {
        let server = try TestServer()
        try await server.seedUsers()
        let records = "/buckets/main/collections/users/records"
        let schema: JSON = ["type": "object", "properties": ["age": ["type": "integer"]]]
        let response = try await server.request("POST", "/batch", json: ["requests": [
            ["method": "PUT", "path": .string(records + "/r1"), "body": ["data": ["age": "old"]]],
            ["method": "PATCH", "path": "/buckets/main/collections/users", "body": ["data": ["schema": schema]]],
            ["method": "PUT", "path": .string(records + "/r2"), "body": ["data": ["age": "young"]]],
            ["method": "PUT", "path": .string(records + "/r3"), "body": ["data": ["age": 3]]],
            ["method": "DELETE", "path": "/buckets/main/collections/users"],
            ["method": "PUT", "path": .string(records + "/r4"), "body": ["data": ["age": 4]]],
        ]])
        let statuses = response.json["responses"]?.arrayValue?.map { $0["status"]?.intValue ?? 0 }
        #expect(statuses == [201, 200, 400, 201, 200, 404], "\(response.json.serialized())")
        #expect(try await server.request("GET", records).status == 404)
    }

    @Test func permissionsFollowKintoBasicAuth() async throws {
        let server = try TestServer()
        try await server.seedUsers()
        let records = "/buckets/main/collections/users/records"
        try await server.request("PUT", "\(records)/r1", json: ["data": ["v": 1]])
        // Anonymous: 401; another user: 403; neither can write or learn whether things exist.
        #expect(try await server.request("GET", records, user: nil).status == 401)
        #expect(try await server.request("GET", records, user: "eve").status == 403)
        #expect(try await server.request("PUT", "\(records)/r2", json: ["data": [:]], user: "eve").status == 403)
        #expect(try await server.request("GET", "/buckets/nothere/collections/users/records", user: "eve").status == 403)
        #expect(try await server.request("PUT", "/buckets/anon", user: nil).status == 401)
        // Alice shares the collection for reading with everyone.
        try await server.request("PATCH", "/buckets/main/collections/users", json: ["permissions": ["read": ["system.Everyone"]]])
        #expect(try await server.request("GET", records, user: nil).data.arrayValue?.count == 1)
        #expect(try await server.request("PUT", "\(records)/r2", json: ["data": [:]], user: nil).status == 401)
        // Record-level sharing: bob may write one record, and sees only it in the list of another collection.
        try await server.request("PUT", "/buckets/main/collections/private")
        try await server.request("PUT", "/buckets/main/collections/private/records/mine", json: ["data": ["x": 1]])
        try await server.request("PUT", "/buckets/main/collections/private/records/shared", json: ["data": ["x": 2], "permissions": ["write": .array([.string(server.userID("bob"))])]])
        let bobList = try await server.request("GET", "/buckets/main/collections/private/records", user: "bob")
        #expect(bobList.data.arrayValue?.map { $0["id"] } == ["shared"])
        #expect(try await server.request("PATCH", "/buckets/main/collections/private/records/shared", json: ["data": ["x": 3]], user: "bob").status == 200)
        #expect(try await server.request("PATCH", "/buckets/main/collections/private/records/mine", json: ["data": ["x": 3]], user: "bob").status == 403)
        // Missing parents are 404 for those who may read the bucket.
        #expect(try await server.request("GET", "/buckets/main/collections/nothere/records").status == 404)
        // Bob creates his own bucket and only sees his in the bucket list.
        #expect(try await server.request("PUT", "/buckets/bobs", user: "bob").status == 201)
        #expect(try await server.request("GET", "/buckets", user: "bob").data.arrayValue?.map { $0["id"] } == ["bobs"])
    }

    @Test func deletingABucketPurgesItsChildren() async throws {
        let server = try TestServer()
        try await server.seedUsers()
        try await server.request("PUT", "/buckets/main/collections/users/records/r1", json: ["data": [:]])
        let deleted = try await server.request("DELETE", "/buckets/main")
        #expect(deleted.data["deleted"] == true)
        #expect(try await server.request("PUT", "/buckets/main").status == 201)
        #expect(try await server.request("GET", "/buckets/main/collections/users").status == 404)
        let dump = try await server.dump()
        #expect(!dump.contains { $0.hasPrefix("object /buckets/main/collections/users record") })
    }

    @Test func readonlyRefusesWrites() async throws {
        let server = try TestServer { $0.readonly = true }
        let r = try await server.request("PUT", "/buckets/main")
        #expect(r.status == 405 && r.json["errno"] == 115)
        #expect(try await server.request("GET", "/").json["settings"]?["readonly"] == true)
    }

    @Test func backoffHeaderWhenConfigured() async throws {
        let server = try TestServer { $0.backoffSeconds = 60 }
        #expect(try await server.request("GET", "/").header("Backoff") == "60")
    }
}
