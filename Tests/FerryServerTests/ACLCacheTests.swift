import FerryCore
@testable import FerryServer
import Testing

/// The SQLite backend keeps grant checks and permissions read between writes (`ACLCache`): every
/// change of who may do what must show on the very next request, whichever way it was made.
@Suite struct ACLCacheTests {
    static let record = "/buckets/b/collections/c/records/r"

    /// alice owns bucket b, collection c and record r; nobody else is granted anything.
    static func server() async throws -> TestServer {
        let server = try TestServer()
        #expect(try await server.request("PUT", "/buckets/b").status == 201)
        #expect(try await server.request("PUT", "/buckets/b/collections/c").status == 201)
        #expect(try await server.request("PUT", record, json: ["data": ["x": 1]]).status == 201)
        return server
    }

    @Test func grantingAndRevokingShowAtOnce() async throws {
        let server = try await Self.server()
        let bob = JSON.string(server.userID("bob"))
        // Asked twice, so the refusal is remembered if anything is.
        for _ in 0..<2 { #expect(try await server.request("GET", Self.record, user: "bob").status == 403) }
        #expect(try await server.request("PATCH", "/buckets/b/collections/c", json: ["permissions": ["read": [bob]]]).status == 200)
        for _ in 0..<2 { #expect(try await server.request("GET", Self.record, user: "bob").status == 200) }
        #expect(try await server.request("PATCH", "/buckets/b/collections/c", json: ["permissions": ["read": []]]).status == 200)
        #expect(try await server.request("GET", Self.record, user: "bob").status == 403)
        // On the record itself, and its list.
        #expect(try await server.request("PATCH", Self.record, json: ["permissions": ["read": [bob]]]).status == 200)
        #expect(try await server.request("GET", Self.record, user: "bob").status == 200)
        #expect(try await server.request("GET", "/buckets/b/collections/c/records", user: "bob").data.arrayValue?.count == 1)
        #expect(try await server.request("DELETE", Self.record).status == 200)
        #expect(try await server.request("PUT", Self.record, json: ["data": ["x": 2]]).status == 201)
        // A deleted object's permissions go with it: the new r is alice's only.
        #expect(try await server.request("GET", Self.record, user: "bob").status == 403)
    }

    @Test func theAnswerShowsTheCurrentPermissions() async throws {
        let server = try await Self.server()
        let before = try await server.request("GET", Self.record)
        #expect(before.json["permissions"]?["read"] == nil)
        #expect(try await server.request("PATCH", Self.record, json: ["permissions": ["read": ["system.Everyone"]]]).status == 200)
        let after = try await server.request("GET", Self.record)
        #expect(after.json["permissions"]?["read"] == ["system.Everyone"])
        #expect(try await server.request("GET", Self.record, user: nil).status == 200)
    }

    @Test func groupMembershipAndBatchesShowAtOnce() async throws {
        let server = try await Self.server()
        let bob = JSON.string(server.userID("bob"))
        #expect(try await server.request("PUT", "/buckets/b/groups/g", json: ["data": ["members": []]]).status == 201)
        #expect(try await server.request("PATCH", "/buckets/b/collections/c", json: ["permissions": ["read": ["/buckets/b/groups/g"]]]).status == 200)
        for _ in 0..<2 { #expect(try await server.request("GET", Self.record, user: "bob").status == 403) }
        #expect(try await server.request("PATCH", "/buckets/b/groups/g", json: ["data": ["members": [bob]]]).status == 200)
        #expect(try await server.request("GET", Self.record, user: "bob").status == 200)
        #expect(try await server.request("PATCH", "/buckets/b/groups/g", json: ["data": ["members": []]]).status == 200)
        #expect(try await server.request("GET", Self.record, user: "bob").status == 403)
        // Granted inside a batch; the batch's own later read and the next request both see it.
        let batch = try await server.request("POST", "/batch", json: ["requests": [
            ["method": "PATCH", "path": "/buckets/b/collections/c/records/r", "body": ["permissions": ["read": [bob]]]],
            ["method": "GET", "path": "/buckets/b/collections/c/records/r"],
        ]])
        #expect(batch.json["responses"]?[1]?["body"]?["permissions"]?["read"] == [bob])
        #expect(try await server.request("GET", Self.record, user: "bob").status == 200)
    }

    @Test func aFailedWriteLeavesTheAnswersRight() async throws {
        let server = try await Self.server()
        let bob = JSON.string(server.userID("bob"))
        #expect(try await server.request("GET", Self.record, user: "bob").status == 403)
        // A batch whose grant succeeds beside a sub-request that fails: the grant stands.
        let batch = try await server.request("POST", "/batch", json: ["requests": [
            ["method": "PATCH", "path": "/buckets/b/collections/c", "body": ["permissions": ["read": [bob]]]],
            ["method": "PUT", "path": "/buckets/missing/collections/c"],
        ]])
        #expect(batch.json["responses"]?[0]?["status"] == 200)
        #expect((batch.json["responses"]?[1]?["status"]?.intValue ?? 0) >= 400)
        #expect(try await server.request("GET", Self.record, user: "bob").status == 200)
    }

    /// A read sees one state of the database: the grant it checks and the record it returns come
    /// from the same commit. A writer flips, in one transaction each time, bob's read permission
    /// on r together with r's content ("granted" with the grant, "revoked" without it); bob's GETs
    /// meanwhile must answer 403 or r as granted, never r as revoked (a grant check answered from
    /// before a commit and a record read after it).
    @Test func aReadNeverMixesTheStatesOfTwoCommits() async throws {
        let server = try await Self.server()
        let bob = JSON.string(server.userID("bob"))
        let flips = 300
        try await withThrowingTaskGroup(of: [String].self) { group in
            group.addTask {
                for flip in 0..<flips {
                    let granted = flip % 2 == 0
                    let body: JSON = ["data": ["v": .string(granted ? "granted" : "revoked")],
                                      "permissions": ["read": granted ? [bob] : []]]
                    let status = try await server.request("PATCH", Self.record, json: body).status
                    if status != 200 { return ["the flip answered \(status)"] }
                }
                return []
            }
            for _ in 0..<2 {
                group.addTask {
                    var wrong: [String] = []
                    for _ in 0..<(flips * 3) {
                        let answer = try await server.request("GET", Self.record, user: "bob")
                        if answer.status == 200, answer.data["v"]?.stringValue != "granted" {
                            wrong.append("200 with \(answer.data)")
                        } else if answer.status != 200 && answer.status != 403 {
                            wrong.append("status \(answer.status)")
                        }
                    }
                    return wrong
                }
            }
            var wrong: [String] = []
            for try await found in group { wrong += found }
            #expect(wrong.isEmpty, "\(wrong.count) mixed reads, first: \(wrong.first ?? "")")
        }
    }
}
