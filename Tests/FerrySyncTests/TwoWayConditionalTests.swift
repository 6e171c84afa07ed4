import FerryCore
import FerryTestSupport
import Foundation
import GRDB
import NIOHTTP1
import Testing
@testable import FerrySync

/// A row changed on a side after a two-way run read it, and before the run writes it, is not
/// overwritten: the write is refused in its own transaction and the next run decides again.
/// The change is made from the engine's hook between its reads and its writes, so the race is
/// forced, not hoped for.
@Suite(.serialized) struct TwoWayConditionalTests {
    func job(_ dir: TempDir, _ a: any TwoWaySide, _ b: any TwoWaySide, _ policy: ConflictPolicy) -> SyncJob {
        var job = SyncJob(source: a.url, target: b.url)
        job.name = "cas"
        job.mode = .twoWay
        job.onConflict = policy
        job.sourceAuth = a.auth
        job.targetAuth = b.auth
        job.statePath = dir.file("state/state.db")
        return job
    }

    /// Changes B during the run: an update of a row the run copies to, a row created where the
    /// run copies a new record, and an update of a row the run deletes. None is overwritten.
    func changesDuringTheRunAreNotOverwritten(_ a: any TwoWaySide, _ b: any TwoWaySide, _ dir: TempDir) async throws {
        for id in ["r1", "r3"] { try await a.put(id, ["id": .string(id), "name": "base", "n": 1]) }
        let j = job(dir, a, b, .aWins)
        _ = try await SyncEngine().run(j)
        #expect(try await b.all().count == 2)

        try await a.put("r1", ["id": "r1", "name": "a's edit", "n": 2])
        try await a.put("r2", ["id": "r2", "name": "new on a", "n": 2])
        try await a.delete("r3")
        let engine = SyncEngine()
        engine.twoWayWillWrite = {
            try await b.put("r1", ["id": "r1", "name": "b during the run", "n": 3])
            try await b.put("r2", ["id": "r2", "name": "b created it meanwhile", "n": 3])
            try await b.put("r3", ["id": "r3", "name": "b kept it", "n": 3])
        }
        let report = try await engine.run(j)
        #expect(report.twoWay?.changedMeanwhile == 3, "\(report.json.serialized())")
        #expect(report.twoWay?.writtenToB == 0 && report.twoWay?.deletedInB == 0, "\(report.json.serialized())")
        let during = try await b.all()
        #expect(during["r1"]?["name"] == "b during the run" && during["r2"]?["name"] == "b created it meanwhile" && during["r3"]?["name"] == "b kept it")

        engine.twoWayWillWrite = nil
        // The next run sees both changes: conflicts, settled by the policy (a-wins; a delete
        // against an update follows it too).
        let next = try await engine.run(j)
        #expect(next.twoWay?.changedMeanwhile == 0 && next.twoWay?.aWon == 3, "\(next.json.serialized())")
        let (sideA, sideB) = (try await a.all(), try await b.all())
        #expect(sideA == sideB && sideB["r1"]?["name"] == "a's edit" && sideB["r2"]?["name"] == "new on a" && sideB["r3"] == nil)
        let quiet = try await SyncEngine().run(j)
        #expect(TwoWayTests.quiet(quiet), "\(quiet.json.serialized())")
    }

    @Test func sqliteWritesCompareAndSet() async throws {
        let dir = try TempDir()
        try await changesDuringTheRunAreNotOverwritten(try SQLiteSide(dir.file("a.db")), try SQLiteSide(dir.file("b.db")), dir)
    }

    @Test func serverWritesCompareAndSet() async throws {
        let dir = try TempDir()
        try await changesDuringTheRunAreNotOverwritten(try SQLiteSide(dir.file("a.db")), try await ServerSide(try ServeProcess()), dir)
    }

    @Test(.enabled(if: PostgresCluster.enabled, "PostgreSQL is not installed"))
    func postgresWritesCompareAndSet() async throws {
        let dir = try TempDir()
        try await changesDuringTheRunAreNotOverwritten(try SQLiteSide(dir.file("a.db")), try PostgresSide(try PostgresCluster.shared()), dir)
    }

    /// A row the app changes and changes back within the run is as read: the write goes through.
    @Test func aRowBackAsItWasReadIsWritten() async throws {
        let dir = try TempDir()
        let (a, b) = (try SQLiteSide(dir.file("a.db")), try SQLiteSide(dir.file("b.db")))
        try await a.put("r1", ["id": "r1", "name": "base", "n": 1])
        let j = job(dir, a, b, .aWins)
        _ = try await SyncEngine().run(j)
        try await a.put("r1", ["id": "r1", "name": "a's edit", "n": 2])
        let engine = SyncEngine()
        engine.twoWayWillWrite = {
            try await b.put("r1", ["id": "r1", "name": "briefly", "n": 9])
            try await b.put("r1", ["id": "r1", "name": "base", "n": 1])
        }
        let report = try await engine.run(j)
        #expect(report.twoWay?.changedMeanwhile == 0 && report.twoWay?.writtenToB == 1, "\(report.json.serialized())")
        #expect(try await b.all()["r1"]?["name"] == "a's edit")
    }
}

/// Two-way between a `ferry serve` collection and the JSON REST API of Fixtures/users_api.py
/// (integer ids there, string ids on the server: keys compare as text). The API has no
/// version to make a write conditional on, so its writes are not compare-and-set (documented).
@Suite(.serialized) struct TwoWayRESTTests {
    /// The API's users as the server holds them: string ids, no `updated_at` (the API's own), no nulls.
    static func normalized(_ users: [Int64: JSON]) -> [String: [String: JSON]] {
        var out: [String: [String: JSON]] = [:]
        for (id, user) in users {
            var fields = user.objectValue ?? [:]
            fields.removeValue(forKey: "updated_at")
            for (name, value) in fields where value == .null { fields.removeValue(forKey: name) }
            fields["id"] = .string(String(id))
            out[String(id)] = fields
        }
        return out
    }

    @Test func aServerAndARESTAPIExchangeChangesBothWays() async throws {
        let dir = try TempDir()
        let api = try UsersAPI(seed: 20)
        let server = try ServeProcess()
        let a = try await ServerSide(server)
        var j = SyncJob(source: a.url, target: api.endpoint())
        j.name = "api"
        j.mode = .twoWay
        j.onConflict = .aWins
        j.sourceAuth = a.auth
        j.statePath = dir.file("state/state.db")
        // The API stamps updated_at itself, takes the key in the URL only, and pages by number.
        j.targetREST = ["managed_fields": "updated_at", "send_key": "false", "pagination": "page", "items": "/data", "page_size": "7"]

        let first = try await SyncEngine().run(j)
        #expect(first.twoWay?.writtenToA == 20 && first.failed == 0, "\(first.json.serialized())")
        #expect(try await a.all() == Self.normalized(try await api.users()))

        // Each side changes and deletes records; both change 7 (a-wins: the server's).
        try await a.put("3", ["username": "server-3", "age": 33])
        try await a.delete("4")
        #expect(try await api.request(.PATCH, "/users/5", ["age": 99]).0 == 200)
        #expect(try await api.request(.DELETE, "/users/6").0 == 204)
        #expect(try await api.request(.POST, "/users", ["id": 21, "username": "api-21", "age": 21]).0 == 201)
        try await a.put("7", ["username": "server-7", "age": 7])
        #expect(try await api.request(.PATCH, "/users/7", ["username": "api-7"]).0 == 200)

        let second = try await SyncEngine().run(j)
        let t = try #require(second.twoWay)
        #expect(t.writtenToB == 2 && t.deletedInB == 1 && t.writtenToA == 2 && t.deletedInA == 1 && t.aWon == 1 && second.failed == 0,
                "\(second.json.serialized())")
        // The API's null address of user 21 is written as null on the server; the hash, like
        // both reads, takes null for absent.
        let sideA = try await a.all().mapValues { $0.filter { $0.value != .null } }
        let sideB = Self.normalized(try await api.users())
        #expect(sideA == sideB, "\(sideA) \(sideB)")
        #expect(sideB["3"]?["username"] == "server-3" && sideB["7"]?["username"] == "server-7" && sideA["5"]?["age"] == 99)
        #expect(sideA["4"] == nil && sideA["6"] == nil && sideA["21"]?["username"] == "api-21" && sideA.count == 19)

        let third = try await SyncEngine().run(j)
        #expect(TwoWayTests.quiet(third), "\(third.json.serialized())")
    }
}
