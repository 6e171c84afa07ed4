import AsyncHTTPClient
import FerryCore
import FerryTestSupport
import Foundation
import NIOCore
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
        let server = try ServeProcess(extra: ["--tombstone-max-count", "2"], environment: ["FERRY_TOMBSTONE_PURGE_INTERVAL": "1"])
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
        // The server reconciles: only the 5 records that differ were read from it, by id.
        #expect(json["read"] == 5 && json["reconciliation"]?["rounds"] != nil, "\(result.stdout)")
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

    /// Server to server: the catch-up after a 410 reconciles with the target server and saves
    /// where its read of the source ended, so the next run is incremental again (it was not
    /// saved, and every later run went through the 410 and a comparison again).
    @Test func serverToServerPastTheHorizonResyncsOnce() async throws {
        let dir = try TempDir()
        try writeUsers(dir.file("a.jsonl"), count: 30)
        let source = try ServeProcess(extra: ["--tombstone-max-count", "1"], environment: ["FERRY_TOMBSTONE_PURGE_INTERVAL": "1"])
        let target = try ServeProcess()
        let auth = ["FERRY_SOURCE_AUTH": "alice:pw", "FERRY_TARGET_AUTH": "alice:pw"]
        var result = try await Ferry.run(["sync", "file:\(dir.file("a.jsonl"))", source.collection(), "--json"], in: dir.path, environment: auth)
        #expect(result.status == 0, "\(result.stdout) \(result.stderr)")
        let sync = ["sync", source.collection(), target.collection(), "--mode", "incremental", "--json"]
        result = try await Ferry.run(sync, in: dir.path, environment: auth)
        var json = try report(result)
        #expect(result.status == 0 && json["created"] == 30, "\(result.stdout) \(result.stderr)")
        let checkpoint = try #require(json["cursor"]?["since"]?.intValue)
        let records = "/buckets/main/collections/users/records/"
        var deleted: [Int64] = []
        for id in ["u0000003", "u0000004", "u0000005"] {
            deleted.append(try #require(try await source.request(.DELETE, records + id).1?["data"]?["last_modified"]?.intValue))
        }
        #expect(try await Self.horizonPasses(checkpoint, on: source, expected: deleted[1]) == deleted[1])

        result = try await Ferry.run(sync, in: dir.path, environment: auth)
        json = try report(result)
        #expect(result.status == 0 && json["resynced"] == true && json["deleted"] == 3 && json["reconciliation"] != nil,
                "\(result.stdout) \(result.stderr)")
        #expect(try await target.request(.GET, records + "u0000004").0 == 404)
        #expect(try #require(json["cursor"]?["since"]?.intValue) >= deleted[2])
        // From the saved position: one update, read incrementally, no 410.
        #expect(try await source.request(.PATCH, records + "u0000010", body: ["data": ["age": 3]]).0 == 200)
        result = try await Ferry.run(sync, in: dir.path, environment: auth)
        json = try report(result)
        #expect(result.status == 0 && json["resynced"] == nil && json["read"] == 1 && json["updated"] == 1, "\(result.stdout) \(result.stderr)")
    }

    /// Waits (60 s at most) until a feed from `since` is refused, and returns the horizon.
    /// - Parameter expected: wait until the horizon is this one (purges go on in the background).
    static func horizonPasses(_ since: Int64, on server: ServeProcess, expected: Int64? = nil,
                              path: String = "/buckets/main/collections/users/records") async throws -> Int64? {
        let deadline = Date().addingTimeInterval(60)
        var horizon: Int64?
        while Date() < deadline {
            let (status, body) = try await server.request(.GET, path + "?_since=\(since)")
            if status == 410 {
                horizon = body?["details"]?["horizon"]?.intValue
                if expected == nil || horizon == expected { return horizon }
            }
            try await Task.sleep(for: .milliseconds(200))
        }
        return horizon
    }

    /// A webhook whose cursor the purge passes stops delivering (what is left would lack
    /// deletes) and says why in `last_error`; `PUT` with `since` restarts it. An event stream
    /// resumed from before the horizon is refused with the same 410.
    @Test func webhooksAndStreamsBehindTheHorizonAreStopped() async throws {
        let server = try ServeProcess(extra: ["--tombstone-max-count", "1"],
                                environment: ["FERRY_TOMBSTONE_PURGE_INTERVAL": "1", "FERRY_WEBHOOK_ALLOW_HOSTS": "127.0.0.1"])
        let receiver = try WebhookReceiver()
        try await receiver.mode(fail: 1_000_000)
        #expect(try await server.request(.PUT, "/buckets/main").0 == 201)
        let (_, collection) = try await server.request(.PUT, "/buckets/main/collections/users")
        let created = try #require(collection?["data"]?["last_modified"]?.intValue)
        let hooks = "/buckets/main/collections/users/webhooks/h"
        let hook: JSON = ["data": ["url": .string(receiver.url), "secret": .string(WebhookTests.secret)]]
        #expect(try await server.request(.PUT, hooks, body: hook).0 == 201)
        let records = "/buckets/main/collections/users/records/"
        var deleted: [Int64] = []
        for i in 0..<3 {
            #expect(try await server.request(.PUT, records + "r\(i)", body: ["data": ["n": .int(Int64(i))]]).0 == 201)
            deleted.append(try #require(try await server.request(.DELETE, records + "r\(i)").1?["data"]?["last_modified"]?.intValue))
        }
        // With one tombstone kept, the horizon ends at r1's delete; a purge between the deletes
        // may have stopped at r0's first (it did, on a loaded machine), so wait for the last one.
        let horizon = try #require(try await Self.horizonPasses(created + 1, on: server, expected: deleted[1]))
        #expect(horizon == deleted[1])
        // The webhook, failing meanwhile, did not move its cursor: it stops and says why (at
        // whichever horizon first passed it).
        #expect(try await WebhookTests.eventually(60) {
            let error = try await server.request(.GET, hooks).1?["data"]?["last_error"]?.stringValue ?? ""
            return error.contains("tombstone horizon ")
        })
        // Restarting it from before the horizon is refused, and changes nothing.
        var restart = hook
        restart["data"]?["since"] = .int(created + 1)
        let before = try await server.request(.GET, hooks).1
        let refused = try await server.request(.PUT, hooks, body: restart)
        #expect(refused.0 == 410 && refused.1?["errno"] == 124, "\(String(describing: refused.1))")
        #expect(try await server.request(.GET, hooks).1?["data"]?["last_modified"] == before?["data"]?["last_modified"])
        // Restarted from 0 (everything that is left), with a receiver that answers: delivered.
        try await receiver.mode(fail: 0)
        restart["data"]?["since"] = 0
        let restarted = try await server.request(.PUT, hooks, body: restart)
        #expect(restarted.0 == 200 && restarted.1?["data"]?["last_error"] == nil, "\(String(describing: restarted.1))")
        #expect(try await WebhookTests.eventually(60) {
            let ids = try WebhookTests.changes(try await receiver.received()).compactMap { $0["id"]?.stringValue }
            return ids == ["r2"]
        })

        // A stream resumed from before the horizon: 410, errno 124, nothing streamed.
        var request = HTTPClientRequest(url: "http://127.0.0.1:\(server.port)/v1/buckets/main/collections/users/records")
        request.headers.add(name: "Accept", value: "text/event-stream")
        request.headers.add(name: "Last-Event-ID", value: String(created + 1))
        request.headers.add(name: "Authorization", value: "Basic " + Data("alice:pw".utf8).base64EncodedString())
        let response = try await HTTPClient.shared.execute(request, timeout: .seconds(60))
        let body = try JSON.parse(bytes: Array(try await response.body.collect(upTo: 1 << 20).readableBytesView))
        #expect(response.status.code == 410 && body["errno"] == 124 && body["details"]?["horizon"] == .int(horizon), "\(body)")
        #expect(response.headers.first(name: "Ferry-Tombstone-Horizon") == String(horizon))
    }

    /// Bad retention flags stop `ferry serve` with one line naming the flag, before it creates anything.
    @Test(arguments: [("--tombstone-max-age", "soon"), ("--tombstone-max-age", "-3d"), ("--tombstone-max-age", "0"),
                      ("--tombstone-max-count", "-1"), ("--tombstone-max-count", "many")])
    func badRetentionFlagsAreRefused(flag: String, value: String) async throws {
        let dir = try TempDir()
        let data = dir.file("data")
        let result = try await Ferry.run(["serve", "--port", "0", "--data", data, "\(flag)=\(value)"], in: dir.path)
        #expect(result.status != 0)
        #expect(result.stderr.contains("\(flag): \(flag.dropFirst(2).replacingOccurrences(of: "-", with: "_")) must be"), "\(result.stderr)")
        #expect(!FileManager.default.fileExists(atPath: data))
    }
}

/// Two `ferry serve` processes on one PostgreSQL database, both with a retention: the purge
/// (run by whichever leads `tombstone-purge`) moves the horizon both processes answer with.
@Suite(.enabled(if: PostgresCluster.enabled, "PostgreSQL is not installed: its tests are skipped (CI sets FERRY_REQUIRE_POSTGRES=1 and runs them)"))
struct PostgresRetentionTests {
    @Test func bothProcessesRefuseFeedsFromBeforeTheSharedHorizon() async throws {
        let url = try PostgresCluster.shared().createDatabase("retention")
        let environment = ["FERRY_DATABASE": url, "FERRY_SECRET": "a-secret-shared-by-both-processes", "FERRY_TOMBSTONE_PURGE_INTERVAL": "1"]
        let a = try ServeProcess(extra: ["--tombstone-max-count", "2"], environment: environment)
        let b = try ServeProcess(extra: ["--tombstone-max-count", "2"], environment: environment)
        #expect(try await a.request(.PUT, "/buckets/main").0 == 201)
        let created = try #require(try await b.request(.PUT, "/buckets/main/collections/users").1?["data"]?["last_modified"]?.intValue)
        let records = "/buckets/main/collections/users/records/"
        var tombstones: [Int64] = []
        for i in 0..<5 {
            let server = i % 2 == 0 ? a : b
            #expect(try await server.request(.PUT, records + "r\(i)", body: ["data": ["n": .int(Int64(i))]]).0 == 201)
            tombstones.append(try #require(try await server.request(.DELETE, records + "r\(i)").1?["data"]?["last_modified"]?.intValue))
        }
        // The two newest tombstones stay; the horizon is the newest one purged, on both processes.
        let horizon = try await RetentionSyncTests.horizonPasses(created + 1, on: a, expected: tombstones[2])
        // Exactly one process purges, and it counted the three it purged.
        func metrics(_ server: ServeProcess) async throws -> String { try await getText("http://127.0.0.1:\(server.port)/metrics") }
        let leaders = try await [a, b].asyncFilter { try await metrics($0).contains("ferry_tombstone_purge_leading 1") }
        #expect(leaders.count == 1)
        if let leader = leaders.first {
            // Counted just after each purge commits: poll.
            #expect(try await WebhookTests.eventually(60) { try await metrics(leader).contains("ferry_tombstones_purged_total 3") })
        }
        #expect(horizon == tombstones[2])
        #expect(try await b.request(.GET, "/buckets/main/collections/users/records?_since=\(created + 1)").0 == 410)
        let (status, feed) = try await b.request(.GET, "/buckets/main/collections/users/records?_since=\(tombstones[2])")
        #expect(status == 200 && feed?["data"]?.arrayValue?.compactMap { $0["id"]?.stringValue } == ["r4", "r3"])
    }
}

extension Array {
    func asyncFilter(_ keep: (Element) async throws -> Bool) async rethrows -> [Element] {
        var kept: [Element] = []
        for element in self where try await keep(element) { kept.append(element) }
        return kept
    }
}
