import FerryCore
import FerryTestSupport
import Foundation
import GRDB
import Testing
@testable import FerrySync

/// `diff` and `verify` between two sides that read in key order walk both side by side
/// (KeyOrderedMerge.swift) and hold two batches, not a map of a side. Each test runs the same
/// comparison through the map (a cast of the key to string, which changes nothing, turns the
/// merge off) and expects the same answer, and checks the memory high-water mark of each.
@Suite struct KeyOrderedMergeTests {
    static let count = 3000
    static let batch = 100

    func job(_ dir: TempDir, _ source: String, _ target: String, _ mode: SyncMode) -> SyncJob {
        var job = SyncJob(source: source, target: target)
        job.mode = mode
        job.statePath = dir.file("state/state.db")
        job.batchSize = Self.batch
        return job
    }

    /// `src.db` with the users, and `name` with the same users but 3 missing (the first, one in
    /// the middle, the last), 2 changed, and 4 extra (before, among and after the others).
    func tables(_ dir: TempDir, target name: String, keyType: String = "TEXT") throws {
        if !FileManager.default.fileExists(atPath: dir.file("src.db")) { try writeUsersTable(dir.file("src.db"), count: Self.count) }
        let queue = try DatabaseQueue(path: dir.file(name))
        try queue.write { db in
            try db.execute(sql: "CREATE TABLE users (id \(keyType) PRIMARY KEY, username TEXT NOT NULL, age INTEGER, address TEXT, updated_at INTEGER NOT NULL)")
            try db.execute(sql: "ATTACH DATABASE ? AS src", arguments: [dir.file("src.db")])
            try db.execute(sql: "INSERT INTO users SELECT * FROM src.users WHERE id NOT IN ('u0000000', 'u0001500', 'u0002999')")
            try db.execute(sql: "UPDATE users SET age = -1 WHERE id IN ('u0000007', 'u0002000')")
            try db.execute(sql: "INSERT INTO users VALUES ('a', 'x', 1, '', 1), ('u0001500x', 'y', 1, '', 1), ('zz', 'z', 1, '', 1), ('é', 'e', 1, '', 1)")
        }
        try queue.close()
    }

    @Test func verifyMergesTwoTablesInKeyOrderWithTheMapsAnswer() async throws {
        let dir = try TempDir()
        try tables(dir, target: "dst.db")
        var j = job(dir, "sqlite:\(dir.file("src.db"))#users", "sqlite:\(dir.file("dst.db"))#users", .full)
        let merged = try await SyncEngine().verify(j)
        j.transform.cast = ["id": .string]
        let mapped = try await SyncEngine().verify(j)

        #expect(merged.missingInTarget == ["u0000000", "u0001500", "u0002999"])
        #expect(merged.extraInTarget == ["a", "u0001500x", "zz", "é"])
        #expect(merged.different == ["u0000007", "u0002000"])
        #expect(merged.differingCount == 9 && !merged.equal)
        var comparable = merged
        comparable.peakRecordsHeld = mapped.peakRecordsHeld
        #expect(comparable == mapped)
        #expect(merged.peakRecordsHeld <= 2 * Self.batch, "held \(merged.peakRecordsHeld)")
        #expect(mapped.peakRecordsHeld >= Self.count - 3)
    }

    @Test func diffMergesTwoTablesInKeyOrderAndLeavesThemEqual() async throws {
        let dir = try TempDir()
        try tables(dir, target: "merged.db")
        try tables(dir, target: "mapped.db")
        var reports: [SyncReport] = []
        for (name, merge) in [("merged.db", true), ("mapped.db", false)] {
            var j = job(dir, "sqlite:\(dir.file("src.db"))#users", "sqlite:\(dir.file(name))#users", .diff)
            if !merge { j.transform.cast = ["id": .string] }
            let report = try await SyncEngine().run(j)
            #expect(report.created == 3 && report.updated == 2 && report.deleted == 4, "\(name)")
            #expect(report.unchanged == Self.count - 5 && report.failed == 0, "\(name)")
            #expect(try await SyncEngine().verify(j).equal, "\(name)")
            reports.append(report)
        }
        #expect(reports[0].plan == reports[1].plan)
        // Two batches and the changes waiting for their batch.
        #expect(reports[0].peakRecordsHeld <= 3 * Self.batch, "held \(reports[0].peakRecordsHeld)")
        #expect(reports[1].peakRecordsHeld >= Self.count - 3)
    }

    @Test func anIntegerKeyIsNotInTheOrderOfItsTextAndUsesTheMap() async throws {
        let dir = try TempDir()
        let queue = try DatabaseQueue(path: dir.file("a.db"))
        try await queue.write { db in
            try db.execute(sql: "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
            for i in 1...250 { try db.execute(sql: "INSERT INTO t VALUES (?, ?)", arguments: [i, "v\(i)"]) }
        }
        try queue.close()
        try FileManager.default.copyItem(atPath: dir.file("a.db"), toPath: dir.file("b.db"))
        let b = try DatabaseQueue(path: dir.file("b.db"))
        try await b.write { try $0.execute(sql: "DELETE FROM t WHERE id IN (9, 10, 100)") }
        try b.close()
        let j = job(dir, "sqlite:\(dir.file("a.db"))#t", "sqlite:\(dir.file("b.db"))#t", .full)
        let result = try await SyncEngine().verify(j)
        #expect(result.missingInTarget == ["9", "10", "100"])
        #expect(result.peakRecordsHeld >= 247)
    }
}
