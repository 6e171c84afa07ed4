import FerryCore
@testable import FerryServer
import Testing

/// Kinto's `default_bucket` plugin: `/buckets/default` is the caller's personal bucket.
@Suite struct DefaultBucketTests {
    static let tasks = "/buckets/default/collections/tasks/records"

    @Test func offByDefaultDefaultIsAnOrdinaryBucketName() async throws {
        let server = try TestServer()
        let before = try await server.dump()
        // A bucket nobody created: refused as any other (403: nothing grants alice a read), not made.
        #expect(try await server.request("GET", Self.tasks).status == 403)
        #expect(try await server.dump() == before)
        let hello = try await server.request("GET", "/")
        #expect(hello.json["capabilities"]?["default_bucket"] == nil && hello.json["user"]?["bucket"] == nil)
        let created = try await server.request("PUT", "/buckets/default")
        #expect(created.status == 201 && created.data["id"] == "default")
    }

    @Test func eachUserHasAPersonalBucketCreatedOnFirstUse() async throws {
        let server = try TestServer { $0.defaultBucket = true }
        let hello = try await server.request("GET", "/")
        #expect(hello.json["capabilities"]?["default_bucket"] != nil)
        let aliceBucket = try #require(hello.json["user"]?["bucket"]?.stringValue)
        #expect(ObjectID.isValid(aliceBucket) && aliceBucket.count == 36 && aliceBucket != "default")

        // A read creates the bucket and the collection it names, owned by the caller.
        let empty = try await server.request("GET", Self.tasks)
        #expect(empty.status == 200 && empty.json["data"] == [])
        let bucket = try await server.request("GET", "/buckets/\(aliceBucket)")
        #expect(bucket.status == 200 && bucket.data["id"] == .string(aliceBucket))
        #expect(bucket.json["permissions"]?["write"] == [.string(server.userID("alice"))])
        #expect(try await server.request("GET", "/buckets/\(aliceBucket)/collections/tasks").status == 200)

        // Writes land in it; the alias and the real id are the same place.
        let created = try await server.request("POST", Self.tasks, json: ["data": ["title": "milk"]])
        #expect(created.status == 201)
        let id = try #require(created.data["id"]?.stringValue)
        #expect(try await server.request("GET", "/buckets/\(aliceBucket)/collections/tasks/records/\(id)").data["title"] == "milk")
        // A second collection is created on first write too.
        #expect(try await server.request("PUT", "/buckets/default/collections/notes/records/n1", json: ["data": ["x": 1]]).status == 201)

        // Bob's is another bucket, and alice's is not his to read.
        let bobBucket = try #require(try await server.request("GET", "/", user: "bob").json["user"]?["bucket"]?.stringValue)
        #expect(bobBucket != aliceBucket)
        #expect(try await server.request("GET", Self.tasks, user: "bob").json["data"] == [])
        #expect(try await server.request("GET", "/buckets/\(aliceBucket)/collections/tasks/records", user: "bob").status == 403)
        // The same user gets the same bucket on another server with the same secret, never a new one.
        #expect(try await server.request("GET", "/").json["user"]?["bucket"] == .string(aliceBucket))
    }

    @Test func creatingTheBucketItselfNamesItDefaultOrItsId() async throws {
        let server = try TestServer { $0.defaultBucket = true }
        let put = try await server.request("PUT", "/buckets/default", json: ["data": ["id": "default", "theme": "dark"]])
        let bucket = try #require(try await server.request("GET", "/").json["user"]?["bucket"]?.stringValue)
        #expect(put.status == 201 && put.data["id"] == .string(bucket) && put.data["theme"] == "dark")
        // Another id in the body is refused as for any bucket: the path names the bucket.
        let other = try await server.request("PUT", "/buckets/default", json: ["data": ["id": "someone-else"]])
        #expect(other.status == 400)
    }

    @Test func anonymousCallersAndReadOnlyServersCreateNothing() async throws {
        let server = try TestServer { $0.defaultBucket = true }
        let before = try await server.dump()
        let anonymous = try await server.request("GET", Self.tasks, user: nil)
        #expect(anonymous.status == 401 && anonymous.json["errno"] == 104)
        #expect(try await server.request("POST", Self.tasks, json: ["data": [:]], user: nil).status == 401)
        // An invalid collection id is refused before anything is created.
        #expect(try await server.request("GET", "/buckets/default/collections/bad%20id/records").status == 400)
        #expect(try await server.dump() == before)

        let readonly = try TestServer { $0.defaultBucket = true; $0.readonly = true }
        let beforeReadonly = try await readonly.dump()
        #expect(try await readonly.request("GET", Self.tasks).status == 403)
        #expect(try await readonly.dump() == beforeReadonly)
    }

    @Test func batchSubRequestsUseThePersonalBucket() async throws {
        let server = try TestServer { $0.defaultBucket = true }
        let batch = try await server.request("POST", "/batch", json: [
            "requests": [
                ["method": "PUT", "path": "/buckets/default/collections/tasks/records/a", "body": ["data": ["n": 1]]],
                ["method": "PUT", "path": "/v1/buckets/default/collections/tasks/records/b", "body": ["data": ["n": 2]]],
                ["method": "GET", "path": "/buckets/default/collections/other/records"],
            ],
        ])
        #expect(batch.status == 200)
        let statuses = batch.json["responses"]?.arrayValue?.map { $0["status"] }
        #expect(statuses == [201, 201, 200])
        let bucket = try #require(try await server.request("GET", "/").json["user"]?["bucket"]?.stringValue)
        let ids = try await server.request("GET", "/buckets/\(bucket)/collections/tasks/records?_sort=id").json["data"]?.arrayValue?.map { $0["id"] }
        #expect(ids == ["a", "b"])
        #expect(try await server.request("GET", "/buckets/\(bucket)/collections/other").status == 200)
        // Anonymous in a batch: that sub-request is a 401, the batch still answers.
        let anonymous = try await server.request("POST", "/batch", json: ["requests": [["path": .string(Self.tasks)]]], user: nil)
        #expect(anonymous.json["responses"]?.arrayValue?.first?["status"] == 401)
    }
}
