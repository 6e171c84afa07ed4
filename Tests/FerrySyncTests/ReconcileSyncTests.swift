import FerryCore
import FerryTestSupport
import Foundation
import GRDB
import NIOHTTP1
import Testing

/// `--mode diff` and `ferry verify` against a real `ferry serve` that announces
/// reconciliation: the server's side is compared by fingerprints, not read, and the
/// plan is the one a full read gives.
@Suite struct ReconcileSyncTests {
    @Test func diffAndVerifyReconcileWithAServer() async throws {
        let dir = try TempDir()
        try writeUsers(dir.file("a.jsonl"), count: 2_000)
        let server = try ServeProcess()
        let auth = ["FERRY_SOURCE_AUTH": "alice:pw", "FERRY_TARGET_AUTH": "alice:pw"]
        var result = try await Ferry.run(["sync", "file:\(dir.file("a.jsonl"))", server.collection(), "--json"], in: dir.path, environment: auth)
        let loaded = try report(result)
        #expect(result.status == 0 && loaded["created"] == 2_000, "\(result.stdout) \(result.stderr)")

        // The source: 2 deletes, 1 update, 1 create; the server: one record changed behind the job's back.
        try editUsers(dir.file("a.jsonl"))
        #expect(try await server.request(.PATCH, "/buckets/main/collections/users/records/u0000700", body: ["data": ["age": 5]]).0 == 200)

        result = try await Ferry.run(["verify", "file:\(dir.file("a.jsonl"))", server.collection(), "--json"], in: dir.path, environment: auth)
        var json = try report(result)
        #expect(result.status != 0 && json["equal"] == false)
        #expect(json["missingInTarget"] == ["new"] && json["extraInTarget"] == ["u0000010", "u0000021"])
        #expect(json["different"] == ["u0000005", "u0000700"] && json["differing"] == 5)
        #expect(json["sourceCount"] == 1_999 && json["targetCount"] == 2_000)
        #expect((json["reconciliation"]?["rounds"]?.intValue ?? 99) <= 4, "\(result.stdout)")
        // Reading both sides in full finds the same, digests included.
        result = try await Ferry.run(["verify", "file:\(dir.file("a.jsonl"))", server.collection(), "--json", "--no-reconcile"], in: dir.path, environment: auth)
        var full = try report(result)
        full["reconciliation"] = json["reconciliation"]
        #expect(full == json, "\(result.stdout)")

        result = try await Ferry.run(["sync", "file:\(dir.file("a.jsonl"))", server.collection(), "--mode", "diff", "--json"], in: dir.path, environment: auth)
        json = try report(result)
        #expect(result.status == 0 && json["created"] == 1 && json["updated"] == 2 && json["deleted"] == 2 && json["unchanged"] == 1_996,
                "\(result.stdout) \(result.stderr)")
        #expect(json["plan"]?["deletes"] == ["u0000010", "u0000021"] && json["plan"]?["updates"] == ["u0000005", "u0000700"])
        #expect(json["reconciliation"]?["rounds"] != nil)
        #expect(try await server.request(.GET, "/buckets/main/collections/users/records/u0000010").0 == 404)
        #expect(try await server.request(.GET, "/buckets/main/collections/users/records/u0000700").1?["data"]?["age"] == .int(18 + 700 % 60))

        // Equal now, whichever side the server is on: one round trip.
        result = try await Ferry.run(["verify", "file:\(dir.file("a.jsonl"))", server.collection(), "--json"], in: dir.path, environment: auth)
        json = try report(result)
        #expect(result.status == 0 && json["equal"] == true && json["reconciliation"]?["rounds"] == 1, "\(result.stdout) \(result.stderr)")
        result = try await Ferry.run(["sync", server.collection(), "sqlite:\(dir.file("t.db"))#users", "--json"], in: dir.path, environment: auth)
        #expect(result.status == 0, "\(result.stdout) \(result.stderr)")
        result = try await Ferry.run(["verify", server.collection(), "sqlite:\(dir.file("t.db"))#users", "--json"], in: dir.path, environment: auth)
        json = try report(result)
        #expect(result.status == 0 && json["equal"] == true && json["reconciliation"] != nil, "\(result.stdout) \(result.stderr)")
        // A transform on a server source: its hashes are of other records; both sides are read.
        result = try await Ferry.run(["verify", server.collection(), "sqlite:\(dir.file("t.db"))#users", "--drop", "age", "--json"], in: dir.path, environment: auth)
        json = try report(result)
        #expect(json["reconciliation"] == nil && json["equal"] == false, "\(result.stdout) \(result.stderr)")
    }

    /// `--mode diff` from a server into a SQLite table: the table is read here, the server's
    /// side compared by fingerprints, and only the records that differ are read from the
    /// server, by id: the report's `read` counts them, not the collection.
    @Test func diffFromAServerReadsOnlyTheDifferingRecords() async throws {
        let dir = try TempDir()
        try writeUsers(dir.file("a.jsonl"), count: 2_000)
        let server = try ServeProcess()
        let auth = ["FERRY_SOURCE_AUTH": "alice:pw", "FERRY_TARGET_AUTH": "alice:pw"]
        var result = try await Ferry.run(["sync", "file:\(dir.file("a.jsonl"))", server.collection(), "--json"], in: dir.path, environment: auth)
        #expect(result.status == 0, "\(result.stdout) \(result.stderr)")
        let table = "sqlite:\(dir.file("t.db"))#users"
        result = try await Ferry.run(["sync", server.collection(), table, "--json"], in: dir.path, environment: auth)
        let copied = try report(result)
        #expect(result.status == 0 && copied["created"] == 2_000, "\(result.stdout) \(result.stderr)")

        // The server: an update, two creates (one id all digits, which a filter must not read
        // as a number), a delete. The table: one row changed, one row gone.
        let records = "/buckets/main/collections/users/records/"
        #expect(try await server.request(.PATCH, records + "u0000005", body: ["data": ["age": 99]]).0 == 200)
        #expect(try await server.request(.PUT, records + "n1", body: ["data": ["age": 1]]).0 == 201)
        #expect(try await server.request(.PUT, records + "123", body: ["data": ["age": 2]]).0 == 201)
        #expect(try await server.request(.DELETE, records + "u0000010").0 == 200)
        let queue = try DatabaseQueue(path: dir.file("t.db"))
        try await queue.write { db in
            try db.execute(sql: "UPDATE users SET age = 1 WHERE id = 'u0000900'")
            try db.execute(sql: "DELETE FROM users WHERE id = 'u0000901'")
        }
        try queue.close()

        result = try await Ferry.run(["sync", server.collection(), table, "--mode", "diff", "--json"], in: dir.path, environment: auth)
        var json = try report(result)
        #expect(result.status == 0 && json["created"] == 3 && json["updated"] == 2 && json["deleted"] == 1 && json["unchanged"] == 1_996,
                "\(result.stdout) \(result.stderr)")
        #expect(json["plan"]?["creates"] == ["123", "n1", "u0000901"] && json["plan"]?["updates"] == ["u0000005", "u0000900"]
                && json["plan"]?["deletes"] == ["u0000010"], "\(result.stdout)")
        #expect(json["read"] == 5, "only the 5 differing records are read from the server: \(result.stdout)")
        let cost = try #require(json["reconciliation"])
        #expect((cost["rounds"]?.intValue ?? 99) <= 4 && (cost["bytesReceived"]?.intValue ?? .max) < 20_000, "\(result.stdout)")
        result = try await Ferry.run(["verify", server.collection(), table, "--json", "--no-reconcile"], in: dir.path, environment: auth)
        json = try report(result)
        #expect(result.status == 0 && json["equal"] == true && json["sourceCount"] == 2_001, "\(result.stdout) \(result.stderr)")
        // The full read, for comparison, reads every record.
        result = try await Ferry.run(["sync", server.collection(), table, "--mode", "diff", "--json", "--no-reconcile"], in: dir.path, environment: auth)
        json = try report(result)
        #expect(result.status == 0 && json["read"] == 2_001 && json["unchanged"] == 2_001, "\(result.stdout) \(result.stderr)")
    }

    /// Two servers that both reconcile: `verify` and `--mode diff` relay the exchange between
    /// them (the engine reads neither side in full) and read from the source only the records
    /// that differ. Each server sits behind a counting proxy: the bytes each answered stay far
    /// below a full read of it, which the same commands with `--no-reconcile` show.
    @Test func twoServersReconcileWithoutMovingUnchangedRecords() async throws {
        let dir = try TempDir()
        try writeUsers(dir.file("a.jsonl"), count: 3_000)
        let source = try ServeProcess()
        let target = try ServeProcess()
        let auth = ["FERRY_SOURCE_AUTH": "alice:pw", "FERRY_TARGET_AUTH": "alice:pw"]
        for server in [source, target] {
            let result = try await Ferry.run(["sync", "file:\(dir.file("a.jsonl"))", server.collection(), "--json"], in: dir.path, environment: auth)
            #expect(result.status == 0, "\(result.stdout) \(result.stderr)")
        }
        let records = "/buckets/main/collections/users/records/"
        // The source: an update, a create, a delete. The target: an update, a create, a delete of its own.
        #expect(try await source.request(.PATCH, records + "u0000005", body: ["data": ["age": 99]]).0 == 200)
        #expect(try await source.request(.PUT, records + "only-source", body: ["data": ["age": 1]]).0 == 201)
        #expect(try await source.request(.DELETE, records + "u0000010").0 == 200)
        #expect(try await target.request(.PATCH, records + "u0002000", body: ["data": ["age": 7]]).0 == 200)
        #expect(try await target.request(.PUT, records + "only-target", body: ["data": ["age": 2]]).0 == 201)
        #expect(try await target.request(.DELETE, records + "u0000020").0 == 200)

        let sourceProxy = try FaultProxy(upstreamPort: source.port)
        let targetProxy = try FaultProxy(upstreamPort: target.port)
        let from = "http://127.0.0.1:\(sourceProxy.port)/v1/buckets/main/collections/users"
        let to = "http://127.0.0.1:\(targetProxy.port)/v1/buckets/main/collections/users"
        func moved() -> (source: Int, target: Int) { (sourceProxy.bytesForwarded.answers, targetProxy.bytesForwarded.answers) }

        var result = try await Ferry.run(["verify", from, to, "--json"], in: dir.path, environment: auth)
        var json = try report(result)
        #expect(result.status != 0 && json["equal"] == false, "\(result.stdout) \(result.stderr)")
        #expect(json["missingInTarget"] == ["only-source", "u0000020"] && json["extraInTarget"] == ["only-target", "u0000010"], "\(result.stdout)")
        #expect(json["different"] == ["u0000005", "u0002000"] && json["differing"] == 6, "\(result.stdout)")
        #expect(json["sourceCount"] == 3_000 && json["targetCount"] == 3_000, "\(result.stdout)")
        #expect(json["reconciliation"]?["rounds"] != nil, "\(result.stdout)")
        let afterVerify = moved()
        #expect(afterVerify.source < 30_000 && afterVerify.target < 30_000, "verify moved \(afterVerify) bytes")

        result = try await Ferry.run(["sync", from, to, "--mode", "diff", "--json"], in: dir.path, environment: auth)
        json = try report(result)
        #expect(result.status == 0 && json["created"] == 2 && json["updated"] == 2 && json["deleted"] == 2 && json["unchanged"] == 2_996,
                "\(result.stdout) \(result.stderr)")
        #expect(json["plan"]?["creates"] == ["only-source", "u0000020"] && json["plan"]?["updates"] == ["u0000005", "u0002000"]
                && json["plan"]?["deletes"] == ["only-target", "u0000010"], "\(result.stdout)")
        #expect(json["read"] == 4, "only the 4 records to write are read from the source: \(result.stdout)")
        let afterDiff = moved()
        #expect(afterDiff.source - afterVerify.source < 30_000 && afterDiff.target - afterVerify.target < 30_000,
                "diff moved \(afterDiff.source - afterVerify.source) and \(afterDiff.target - afterVerify.target) bytes")
        #expect(try await target.request(.GET, records + "u0000005").1?["data"]?["age"] == 99)
        #expect(try await target.request(.GET, records + "only-target").0 == 404)

        // Equal now. Read in full instead, the same comparison moves every record of both sides.
        result = try await Ferry.run(["verify", from, to, "--json"], in: dir.path, environment: auth)
        json = try report(result)
        #expect(result.status == 0 && json["equal"] == true && json["differing"] == 0, "\(result.stdout) \(result.stderr)")
        let beforeFull = moved()
        result = try await Ferry.run(["verify", from, to, "--json", "--no-reconcile"], in: dir.path, environment: auth)
        json = try report(result)
        #expect(result.status == 0 && json["equal"] == true && json["reconciliation"] == nil, "\(result.stdout) \(result.stderr)")
        let full = moved()
        #expect(full.source - beforeFull.source > 200_000 && full.target - beforeFull.target > 200_000, "a full read moved \(full) bytes")
    }
}
