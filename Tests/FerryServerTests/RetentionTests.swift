import FerryCore
@testable import FerryServer
import FerryStore
import Foundation
import Testing

/// Tombstone retention through ``KintoAPI``: the purge (server rules and a collection's own),
/// the horizon clients see, the 410 for every change feed that starts before it, and the
/// settings' bad values.
@Suite struct RetentionTests {
    let records = "/buckets/main/collections/users/records"
    static let records = "/buckets/main/collections/users/records"

    /// Alice's `main/users` with records r0…r4, of which r0, r1, r2 are deleted (in that order):
    /// the tombstones' timestamps.
    static func seed(_ server: TestServer, collection: JSON = [:]) async throws -> [Int64] {
        try await server.request("PUT", "/buckets/main")
        #expect(try await server.request("PUT", "/buckets/main/collections/users", json: ["data": collection]).status == 201)
        for i in 0..<5 { try await server.request("PUT", Self.records + "/r\(i)", json: ["data": ["n": .int(Int64(i))]]) }
        var tombstones: [Int64] = []
        for i in 0..<3 {
            let deleted = try await server.request("DELETE", Self.records + "/r\(i)")
            tombstones.append(try #require(deleted.data["last_modified"]?.intValue))
        }
        return tombstones
    }

    static func horizon(_ response: APIResponse) -> Int64? {
        response.header(KintoAPI.tombstoneHorizonHeader).flatMap { Int64($0) }
    }

    @Test func purgeRaisesTheHorizonAndOlderFeedsGetA410() async throws {
        let server = try TestServer { $0.tombstoneMaxCount = 1 }
        let tombstones = try await Self.seed(server)
        let hello = try await server.request("GET", "/", user: nil).json
        #expect(hello["capabilities"]?["tombstone_retention"]?["max_count"] == 1)
        #expect(hello["capabilities"]?["tombstone_retention"]?["errno"] == 124)
        // Nothing purged yet: the horizon is 0 and every feed answers.
        #expect(Self.horizon(try await server.request("GET", records)) == 0)
        #expect(try await server.request("GET", records + "?_since=1").status == 200)

        #expect(try await server.parts.purger.purgeOnce(now: Timestamp.now()) == 2)
        let horizon = tombstones[1]
        #expect(Self.horizon(try await server.request("GET", records)) == horizon)
        #expect(Self.horizon(try await server.request("GET", "/buckets/main/collections/users")) == horizon)
        #expect(Self.horizon(try await server.request("HEAD", records)) == horizon)

        // A feed from before the horizon: 410, errno 124, the horizon in details and header.
        for query in ["_since=\(horizon - 1)", "_since=\(tombstones[0])", "gt_last_modified=\(horizon - 1)", "min_last_modified=\(horizon)",
                      "_since=%22\(horizon - 1)%22", "_since=\(horizon - 1)&_wait=1", "_since=1&_limit=1"] {
            let gone = try await server.request("GET", records + "?" + query)
            #expect(gone.status == 410 && gone.json["errno"] == 124, "\(query): \(gone.json)")
            #expect(gone.json["details"]?["horizon"] == .int(horizon) && Self.horizon(gone) == horizon, "\(query)")
            #expect(gone.json["message"]?.stringValue?.contains("tombstone horizon \(horizon)") == true)
        }
        let head = try await server.request("HEAD", records + "?_since=1", headers: ["If-None-Match": "\"1\""])
        #expect(head.status == 410)
        // From the horizon on, the feed is complete: r2's tombstone is there.
        let since = try await server.request("GET", records + "?_since=\(horizon)")
        #expect(since.status == 200 && since.data.arrayValue?.compactMap { $0["id"]?.stringValue } == ["r2"])
        #expect(try await server.request("GET", records + "?min_last_modified=\(horizon + 1)").status == 200)
        // Not feeds: a full list, _since=0 (a client that holds nothing), _before (what exists before T).
        #expect(try await server.request("GET", records).data.arrayValue?.count == 2)
        #expect(try await server.request("GET", records + "?_since=0").data.arrayValue?.count == 3)
        #expect(try await server.request("GET", records + "?_before=\(horizon)").status == 200)

        // Streams and webhooks read the same feed: refused from before the horizon.
        let identity = try await server.parts.api.authenticate(authorization: TestServer.basic("alice"))
        await #expect {
            _ = try await server.parts.api.changes(bucket: "main", collection: "users", since: horizon - 1, identity: identity)
        } throws: { error in
            (error as? KintoError)?.status == 410 && (error as? KintoError)?.errno == 124
        }
        #expect(try await server.parts.api.changes(bucket: "main", collection: "users", since: horizon, identity: identity).changes.count == 1)
        // A batch's sub-request gets the same answer.
        let batch = try await server.request("POST", "/batch", json: ["requests": [["method": "GET", "path": .string("/v1" + records + "?_since=1")]]])
        #expect(batch.json["responses"]?[0]?["status"] == 410)
    }

    @Test func aCollectionsOwnRulesOverrideTheServers() async throws {
        // The server keeps 1; this collection keeps every one.
        let server = try TestServer { $0.tombstoneMaxCount = 1 }
        _ = try await Self.seed(server, collection: ["tombstones": ["max_count": .null]])
        #expect(try await server.parts.purger.purgeOnce(now: Timestamp.now()) == 0)
        #expect(try await server.request("GET", records + "?_since=1").status == 200)

        // The server keeps all; this collection keeps them 1 s (all three purged 10 s after the last),
        // another keeps all. "Now" is the first tombstone's time, not the last's: on a loaded machine the
        // three DELETEs can take over a second, and the first would then be old enough already.
        let other = try TestServer()
        let tombstones = try await Self.seed(other, collection: ["tombstones": ["max_age": "1s"]])
        try await other.request("PUT", "/buckets/main/collections/kept")
        try await other.request("PUT", "/buckets/main/collections/kept/records/a")
        try await other.request("DELETE", "/buckets/main/collections/kept/records/a")
        #expect(try await other.parts.purger.purgeOnce(now: tombstones[0]) == 0)
        #expect(try await other.parts.purger.purgeOnce(now: tombstones[0] + 1_000) == 0)
        #expect(try await other.parts.purger.purgeOnce(now: tombstones[2] + 10_000) == 3)
        #expect(Self.horizon(try await other.request("GET", records)) == tombstones[2])
        #expect(Self.horizon(try await other.request("GET", "/buckets/main/collections/kept/records")) == 0)
    }

    @Test(arguments: [
        (JSON.string("30d"), "data.tombstones must be an object"), (JSON.array([]), "data.tombstones must be an object"),
        (["max_age": "soon"], "data.tombstones.max_age must be"), (["max_age": 0], "data.tombstones.max_age must be"),
        (["max_age": -5], "data.tombstones.max_age must be"), (["max_age": true], "data.tombstones.max_age must be"),
        (["max_age": "-1d"], "data.tombstones.max_age must be"), (["max_age": "1e400"], "data.tombstones.max_age must be"),
        (["max_age": "nan"], "data.tombstones.max_age must be"), (["max_age": "999999999d"], "data.tombstones.max_age must be"),
        (["max_count": -1], "data.tombstones.max_count must be"), (["max_count": 1.5], "data.tombstones.max_count must be"),
        (["max_count": "10"], "data.tombstones.max_count must be"), (["max_count": 1e12], "data.tombstones.max_count must be"),
        (["max_count": ["n": 1]], "data.tombstones.max_count must be"), (["keep": "forever"], "takes max_age and max_count, not keep"),
    ] as [(JSON, String)])
    func badCollectionRulesAreRefusedAndChangeNothing(rules: JSON, message: String) async throws {
        let server = try TestServer()
        _ = try await Self.seed(server, collection: ["tombstones": ["max_count": 100]])
        let before = try await server.dump()
        for method in ["PUT", "PATCH"] {
            let refused = try await server.request(method, "/buckets/main/collections/users", json: ["data": ["tombstones": rules]])
            #expect(refused.status == 400 && refused.json["errno"] == 107, "\(method) \(rules): \(refused.json)")
            #expect(refused.json["message"]?.stringValue?.contains(message) == true, "\(refused.json)")
        }
        #expect(try await server.request("PUT", "/buckets/main/collections/new", json: ["data": ["tombstones": rules]]).status == 400)
        #expect(try await server.dump() == before)
    }

    @Test(arguments: [
        ("tombstone_max_age", "soon"), ("tombstone_max_age", "0"), ("tombstone_max_age", "-1d"), ("tombstone_max_age", "1e400"),
        ("tombstone_max_age", "nan"), ("tombstone_max_age", ""), ("tombstone_max_age", "999999999d"),
        ("tombstone_max_count", "-1"), ("tombstone_max_count", "ten"), ("tombstone_max_count", "2000000000"), ("tombstone_max_count", "1.5"),
        ("tombstone_purge_interval", "0"), ("tombstone_purge_interval", "2d"), ("tombstone_purge_interval", "often"),
    ])
    func badSettingsSayWhatAndChangeNothing(key: String, value: String) {
        var c = ServerConfiguration()
        #expect {
            try c.set(key, value, source: "--\(key)")
        } throws: { error in
            let text = (error as? ServerConfiguration.Error)?.description ?? ""
            return text.hasPrefix("--\(key): \(key) must be") && text.contains("\"\(value)\"")
        }
        #expect(c == ServerConfiguration())
    }

    @Test func settingsParse() throws {
        var c = ServerConfiguration()
        try c.set("tombstone_max_age", "90d", source: "test")
        try c.set("tombstone_max_count", "10000", source: "test")
        try c.set("tombstone_purge_interval", "10m", source: "test")
        #expect(c.tombstoneMaxAge == 90 * 86_400 && c.tombstoneMaxCount == 10_000 && c.tombstonePurgeInterval == 600)
        let setting = ServerConfiguration.settings.first { $0.name == "tombstone_max_age" }
        #expect(setting?.defaultValue == nil)  // off by default
    }
}
