import FerryCore
import Foundation
import NIOHTTP1
import Testing

/// Tombstone retention seen from the engine: an incremental target that stayed away while
/// the server purged the tombstones past its checkpoint gets a 410, diffs by itself (deletes
/// included), and goes on incrementally from the new position.
@Suite struct RetentionSyncTests {
    @Test func incrementalTargetOfflinePastTheHorizonResyncsAndResumes() async throws {
        let dir = try TempDir()
        try writeUsers(dir.file("a.jsonl"), count: 50)
        // Keep the 2 newest tombstones per collection, purged every second.
        let server = try Server(extra: ["--tombstone-max-count", "2"], environment: ["FERRY_TOMBSTONE_PURGE_INTERVAL": "1"])
        let auth = ["FERRY_SOURCE_AUTH": "alice:pw", "FERRY_TARGET_AUTH": "alice:pw"]
        let records = "/buckets/main/collections/users/records"
        var result = try await Ferry.run(["sync", "file:\(dir.file("a.jsonl"))", server.collection(), "--json"], in: dir.path, environment: auth)
        #expect(result.status == 0, "\(result.stdout) \(result.stderr)")
        let target = "sqlite:\(dir.file("t.db"))#users"
        let sync = ["sync", server.collection(), target, "--mode", "incremental", "--json"]
        result = try await Ferry.run(sync, in: dir.path, environment: auth)
        var json = try report(result)
        #expect(result.status == 0 && json["created"] == 50, "\(result.stdout) \(result.stderr)")
        let checkpoint = try #require(json["cursor"]?["since"]?.intValue)

        // While the target is away: 5 deletes, 2 updates, 3 creates on the server.
        for i in [3, 7, 11, 20, 41] {
            #expect(try await server.request(.DELETE, records + "/u" + String(format: "%07d", i)).0 == 200)
        }
        for i in [1, 2] {
            #expect(try await server.request(.PATCH, records + "/u" + String(format: "%07d", i), body: ["data": ["age": 999]]).0 == 200)
        }
        for id in ["n1", "n2", "n3"] {
            #expect(try await server.request(.PUT, records + "/" + id, body: ["data": ["age": 1]]).0 == 201)
        }
        // The purge runs within a second or so: the checkpoint falls behind the horizon.
        var gone: (Int, JSON?) = (0, nil)
        let deadline = Date().addingTimeInterval(60)
        while Date() < deadline {
            gone = try await server.request(.GET, records + "?_since=\(checkpoint)")
            if gone.0 != 200 { break }
            try await Task.sleep(for: .milliseconds(200))
        }
        #expect(gone.0 == 410 && gone.1?["errno"] == 124, "\(String(describing: gone.1))")
        let horizon = try #require(gone.1?["details"]?["horizon"]?.intValue)
        #expect(horizon > checkpoint)

        // The incremental run notices, diffs instead, and ends equal: the deleted records are gone.
        result = try await Ferry.run(sync, in: dir.path, environment: auth)
        json = try report(result)
        #expect(result.status == 0 && json["resynced"] == true, "\(result.stdout) \(result.stderr)")
        #expect(json["created"] == 3 && json["updated"] == 2 && json["deleted"] == 5 && json["unchanged"] == 43, "\(result.stdout)")
        #expect(json["plan"]?["deletes"] == ["u0000003", "u0000007", "u0000011", "u0000020", "u0000041"])
        #expect(result.stderr.contains("purged tombstones"), "\(result.stderr)")
        let resumed = try #require(json["cursor"]?["since"]?.intValue)
        #expect(resumed >= horizon)
        result = try await Ferry.run(["verify", server.collection(), target, "--json"], in: dir.path, environment: auth)
        json = try report(result)
        #expect(result.status == 0 && json["equal"] == true && json["sourceCount"] == 48, "\(result.stdout) \(result.stderr)")

        // Incremental again, from the new position: one delete and one update, no resync.
        #expect(try await server.request(.DELETE, records + "/u0000030").0 == 200)
        #expect(try await server.request(.PATCH, records + "/u0000031", body: ["data": ["age": 5]]).0 == 200)
        result = try await Ferry.run(sync, in: dir.path, environment: auth)
        json = try report(result)
        #expect(result.status == 0 && json["resynced"] == nil && json["deleted"] == 1 && json["updated"] == 1 && json["read"] == 2,
                "\(result.stdout) \(result.stderr)")
        result = try await Ferry.run(["verify", server.collection(), target, "--json"], in: dir.path, environment: auth)
        json = try report(result)
        #expect(result.status == 0 && json["equal"] == true && json["sourceCount"] == 47, "\(result.stdout) \(result.stderr)")
    }
}
