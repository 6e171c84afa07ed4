import FerryCore
import FerryTestSupport
import Foundation
import GRDB
import Testing
@testable import FerrySync

/// The engine in-process, on real files and real SQLite databases in a temporary folder.
@Suite struct EngineTests {
    func job(_ dir: TempDir, _ source: String, _ target: String, _ mode: SyncMode = .full) -> SyncJob {
        var job = SyncJob(source: source, target: target)
        job.mode = mode
        job.statePath = dir.file("state/state.db")
        return job
    }

    @Test func fullThenVerifyAcrossEveryTargetKind() async throws {
        let dir = try TempDir()
        try writeUsers(dir.file("users.jsonl"), count: 500)
        let engine = SyncEngine()
        for target in ["sqlite:\(dir.file("t.db"))#users", "file:\(dir.file("t.csv"))", "file:\(dir.file("t.jsonl"))"] {
            var j = job(dir, "file:\(dir.file("users.jsonl"))", target)
            j.verify = true
            let report = try await engine.run(j)
            #expect(report.read == 500 && report.created == 500 && report.failed == 0, "\(target)")
            #expect(report.verification?.equal == true, "\(target)")
            // A second full run creates nothing new.
            let again = try await engine.run(j)
            #expect(again.created == 0 && again.updated == 500, "\(target)")
        }
        #expect(try countRows(dir.file("t.db")) == 500)
    }

    @Test func incrementalFromATableMovesExactlyTheChangesAcrossTies() async throws {
        let dir = try TempDir()
        try writeUsersTable(dir.file("src.db"), count: 1000)  // ten records per updated_at value
        var j = job(dir, "sqlite:\(dir.file("src.db"))#users", "sqlite:\(dir.file("dst.db"))#users", .incremental)
        j.cursorField = "updated_at"
        j.batchSize = 7  // batches end in the middle of runs of equal updated_at
        let engine = SyncEngine()
        let first = try await engine.run(j)
        #expect(first.read == 1000 && first.created == 1000)
        // The newest updated_at with the hash of each of its ten records.
        guard case .compound(1_000_099, .object(let covered))? = first.cursorAfter else {
            Issue.record("\(String(describing: first.cursorAfter))")
            return
        }
        #expect(covered.keys.sorted() == (990...999).map { "u0000\($0)" })

        let source = try DatabaseQueue(path: dir.file("src.db"))
        try await source.write { db in
            // Late writes sharing the newest updated_at, with keys before the last one read: two
            // updates and a create. Then an update and two creates past it.
            try db.execute(sql: "UPDATE users SET age = 1 WHERE id IN ('u0000995', 'u0000996')")
            try db.execute(sql: "INSERT INTO users VALUES ('a-late', 'late', 40, 'z', 1000099)")
            try db.execute(sql: "UPDATE users SET age = 2, updated_at = 2000000 WHERE id = 'u0000001'")
            try db.execute(sql: "INSERT INTO users VALUES ('zz1', 'new1', 30, 'x', 2000000), ('zz2', 'new2', 31, 'y', 2000001)")
        }
        try await source.close()
        let second = try await engine.run(j)
        #expect(second.read == 6 && second.created == 3 && second.updated == 3, "\(second.read) \(second.created) \(second.updated)")
        let third = try await engine.run(j)
        #expect(third.read == 0 && third.created == 0)
        #expect(try countRows(dir.file("dst.db")) == 1003)
    }

    /// A file read incrementally: a record written after the run with the newest value (and a key
    /// before the newest record's), or changed with it, is read by the next run; nothing else is.
    @Test func incrementalFromAFileTakesLateWritesWithTheNewestValue() async throws {
        let dir = try TempDir()
        try writeUsers(dir.file("a.jsonl"), count: 100)  // updated_at 1000000…1000009, ten records each
        var j = job(dir, "file:\(dir.file("a.jsonl"))", "sqlite:\(dir.file("t.db"))#users", .incremental)
        j.cursorField = "updated_at"
        let engine = SyncEngine()
        let first = try await engine.run(j)
        #expect(first.read == 100 && first.created == 100)
        var lines = try String(contentsOfFile: dir.file("a.jsonl"), encoding: .utf8).split(separator: "\n").map(String.init)
        lines[95] = lines[95].replacingOccurrences(of: "user95", with: "renamed95")
        lines.insert(#"{"id":"a-late","username":"late","updated_at":1000009}"#, at: 0)
        try (lines.joined(separator: "\n") + "\n").write(toFile: dir.file("a.jsonl"), atomically: true, encoding: .utf8)
        let second = try await engine.run(j)
        #expect(second.read == 2 && second.created == 1 && second.updated == 1, "\(second.read) \(second.created) \(second.updated)")
        let third = try await engine.run(j)
        #expect(third.read == 0)
    }

    @Test func diffAppliesOnlyTheDifferencesAndDryRunChangesNothing() async throws {
        let dir = try TempDir()
        try writeUsers(dir.file("a.jsonl"), count: 300)
        let engine = SyncEngine()
        _ = try await engine.run(job(dir, "file:\(dir.file("a.jsonl"))", "sqlite:\(dir.file("t.db"))#users"))
        // Change the source: 2 deletes, 1 update, 1 create.
        try editUsers(dir.file("a.jsonl"))

        let before = fileBytes(dir.file("t.db"))
        var dry = job(dir, "file:\(dir.file("a.jsonl"))", "sqlite:\(dir.file("t.db"))#users", .diff)
        dry.dryRun = true
        let plan = try await engine.run(dry)
        #expect(plan.created == 1 && plan.updated == 1 && plan.deleted == 2 && plan.unchanged == 297)
        #expect(plan.plan?.creates == ["new"] && plan.plan?.deletes == ["u0000010", "u0000021"])
        #expect(fileBytes(dir.file("t.db")) == before)

        var real = dry
        real.dryRun = false
        real.verify = true
        let report = try await engine.run(real)
        #expect(report.created == 1 && report.updated == 1 && report.deleted == 2 && report.unchanged == 297)
        #expect(report.verification?.equal == true)
    }

    @Test func aDryRunPlansAgainstATargetThatDoesNotExistYet() async throws {
        let dir = try TempDir()
        try writeUsers(dir.file("a.jsonl"), count: 30)
        for target in ["sqlite:\(dir.file("new.db"))#users", "file:\(dir.file("new.csv"))"] {
            for mode in [SyncMode.diff, .full] {
                var j = job(dir, "file:\(dir.file("a.jsonl"))", target, mode)
                j.dryRun = true
                let report = try await SyncEngine().run(j)
                #expect(report.read == 30, "\(target) \(mode)")
                if mode == .diff { #expect(report.created == 30 && report.plan?.creates.count == 30) }
            }
        }
        let created = try FileManager.default.contentsOfDirectory(atPath: dir.path).filter { $0.hasPrefix("new") }
        #expect(created.isEmpty, "\(created)")
    }

    @Test func fullWithDeleteMirrors() async throws {
        let dir = try TempDir()
        try writeUsers(dir.file("a.jsonl"), count: 100)
        let engine = SyncEngine()
        _ = try await engine.run(job(dir, "file:\(dir.file("a.jsonl"))", "file:\(dir.file("t.jsonl"))"))
        try writeUsers(dir.file("a.jsonl"), count: 60)
        var j = job(dir, "file:\(dir.file("a.jsonl"))", "file:\(dir.file("t.jsonl"))")
        let keep = try await engine.run(j)
        #expect(keep.deleted == 0)
        #expect(try await engine.verify(j).targetCount == 100)
        j.deleteMissing = true
        let mirror = try await engine.run(j)
        #expect(mirror.deleted == 40)
        #expect(try await engine.verify(j).equal)
    }

    @Test func rejectedRecordsGoToTheDeadLetterFileAndTheRunGoesOn() async throws {
        let dir = try TempDir()
        // An existing table without a column for `address`, and a record with no key.
        let queue = try DatabaseQueue(path: dir.file("t.db"))
        try await queue.write { try $0.execute(sql: "CREATE TABLE users (id TEXT PRIMARY KEY, username TEXT, age INTEGER, updated_at INTEGER)") }
        try await queue.close()
        try """
            {"id":"a","username":"ada","age":36}
            {"id":"b","username":"bob","address":"somewhere"}
            {"username":"nokey"}
            {"id":"c","age":"x"}

            """.write(toFile: dir.file("in.jsonl"), atomically: true, encoding: .utf8)
        var j = job(dir, "file:\(dir.file("in.jsonl"))", "sqlite:\(dir.file("t.db"))#users")
        j.transform.cast = ["age": .int]
        let report = try await SyncEngine().run(j)
        #expect(report.created == 1 && report.failed == 3 && !report.succeeded)
        let dead = try String(contentsOfFile: try #require(report.deadLetterPath), encoding: .utf8).split(separator: "\n")
        #expect(dead.count == 3)
        let reasons = try dead.map { try JSON.parse(String($0))["reason"]?.stringValue ?? "" }
        #expect(reasons.contains { $0.contains(#"no column "address""#) })
        #expect(reasons.contains { $0.contains("no usable key") })
        #expect(reasons.contains { $0.contains(#"cannot cast field "age""#) })
        #expect(try countRows(dir.file("t.db")) == 1)

        // --strict stops at the first one.
        j.strict = true
        await #expect(throws: SyncError.self) { try await SyncEngine().run(j) }
    }

    @Test func filterInAnIncrementalRunDeletesRecordsThatStopMatching() async throws {
        let dir = try TempDir()
        try """
            {"id":"a","age":20,"t":1}
            {"id":"b","age":30,"t":1}

            """.write(toFile: dir.file("in.jsonl"), atomically: true, encoding: .utf8)
        var j = job(dir, "file:\(dir.file("in.jsonl"))", "sqlite:\(dir.file("t.db"))#users", .incremental)
        j.cursorField = "t"
        j.transform.filter = [try Transform.Condition(parsing: "age>=25")]
        let first = try await SyncEngine().run(j)
        #expect(first.created == 1 && first.filtered == 1)
        try """
            {"id":"a","age":20,"t":1}
            {"id":"b","age":10,"t":2}

            """.write(toFile: dir.file("in.jsonl"), atomically: true, encoding: .utf8)
        let second = try await SyncEngine().run(j)
        #expect(second.read == 1 && second.deleted == 1)
        #expect(try countRows(dir.file("t.db")) == 0)
    }

    @Test func newFieldsGrowATableFerryMadeAndKeepTypes() async throws {
        let dir = try TempDir()
        try """
            {"id":1,"name":"a","tags":["x"],"ok":true,"score":1.5}
            {"id":2,"name":"b","extra":{"deep":[1,{"z":null}]}}

            """.write(toFile: dir.file("in.jsonl"), atomically: true, encoding: .utf8)
        var j = job(dir, "file:\(dir.file("in.jsonl"))", "sqlite:\(dir.file("t.db"))#things")
        j.batchSize = 1
        j.verify = true
        let report = try await SyncEngine().run(j)
        #expect(report.created == 2 && report.verification?.equal == true)
        let types = try await DatabaseQueue(path: dir.file("t.db")).read { db in
            try Row.fetchAll(db, sql: "PRAGMA table_info(things)").map { ($0["name"] as String) + ":" + ($0["type"] as String) }
        }
        #expect(Set(types) == ["id:INTEGER", "name:TEXT", "tags:JSON", "ok:BOOLEAN", "score:REAL", "extra:JSON"])
    }

    @Test func theSameEndpointTwiceIsRefused() async throws {
        let dir = try TempDir()
        await #expect(throws: SyncError.self) {
            try await SyncEngine().run(job(dir, "file:\(dir.file("a.jsonl"))", "file:\(dir.file("a.jsonl"))"))
        }
    }
}
