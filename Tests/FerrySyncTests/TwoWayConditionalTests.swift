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
        try await changesDuringTheRunAreNotOverwritten(try SQLiteSide(dir.file("a.db")), try await ServerSide(try Server()), dir)
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
