import FerryCore
import FerryTestSupport
import Foundation
import GRDB
import Testing
@testable import FerrySync

/// A full run from a file into SQLite checks the file on a thread of its own while it loads
/// (``BackgroundValidation``): until the check has passed the load's batches share one
/// transaction, so a malformed line anywhere still changes nothing.
@Suite struct FileLoadValidationTests {
    static let records = 50_000  // 50 batches: a load that committed early would show
    static let killRecords = 200_000  // long enough for a kill to land mid-load

    func job(_ dir: TempDir, _ source: String, _ target: String) -> SyncJob {
        var job = SyncJob(source: source, target: target)
        job.mode = .full
        job.statePath = dir.file("state/state.db")
        job.deadLetterPath = dir.file("dead.jsonl")
        return job
    }

    /// A large JSON Lines or CSV file of users whose last line is malformed, and the line's number.
    func malformedAtTheEnd(_ dir: TempDir, csv: Bool) throws -> (path: String, line: Int) {
        let path = dir.file(csv ? "users.csv" : "users.jsonl")
        if csv { try writeUsersCSV(path, count: Self.records) } else { try writeUsers(path, count: Self.records) }
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
        try handle.seekToEnd()
        // CSV: five fields where the header has four (after the header line); JSON Lines: not JSON.
        try handle.write(contentsOf: Data((csv ? "9999999,one,field,too,many\n" : "{\"id\": oops}\n").utf8))
        try handle.close()
        return (path, Self.records + (csv ? 2 : 1))
    }

    /// A table `users` with one row.
    func existingTable(_ path: String) throws {
        let queue = try DatabaseQueue(path: path)
        try queue.write { try $0.execute(sql: "CREATE TABLE users (id TEXT PRIMARY KEY, username TEXT, age INTEGER, address TEXT, updated_at INTEGER); INSERT INTO users (id, age) VALUES ('keep', 1)") }
        try queue.close()
    }

    @Test(arguments: [false, true])
    func aMalformedLastLineLeavesAnExistingTableByteForByte(csv: Bool) async throws {
        let dir = try TempDir()
        let (source, line) = try malformedAtTheEnd(dir, csv: csv)
        let target = dir.file("target.db")
        try existingTable(target)
        let before = fileBytes(target)

        do {
            _ = try await SyncEngine().run(job(dir, "file:\(source)", "sqlite:\(target)#users"))
            Issue.record("a malformed file was loaded")
        } catch let error as SyncError {
            #expect(error.message.contains("line \(line)"), "\(error.message)")
        }
        #expect(fileBytes(target) == before)
        #expect(try countRows(target) == 1)
        #expect(!FileManager.default.fileExists(atPath: dir.file("dead.jsonl")))
    }

    @Test(arguments: [false, true])
    func aMalformedLastLineNeverCreatesTheTable(csv: Bool) async throws {
        let dir = try TempDir()
        let (source, line) = try malformedAtTheEnd(dir, csv: csv)
        await #expect(throws: SyncError.self) {
            try await SyncEngine().run(job(dir, "file:\(source)", "sqlite:\(dir.file("new.db"))#users"))
        }
        let left = try FileManager.default.contentsOfDirectory(atPath: dir.path).filter { $0.hasPrefix("new.db") }
        #expect(left.isEmpty, "\(left)")

        // The same through the command: one line naming the malformed line, exit 2.
        let result = try await Ferry.run(["sync", "file:\(source)", "sqlite:new.db#users"], in: dir.path)
        #expect(result.status == 2 && result.stderr.contains("line \(line)"), "\(result.stderr)")
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir.path).filter { $0.hasPrefix("new.db") }.isEmpty)
    }

    @Test(arguments: [false, true])
    func aWellFormedFileLoadsEveryRecordOnce(csv: Bool) async throws {
        let dir = try TempDir()
        let source = dir.file(csv ? "users.csv" : "users.jsonl")
        if csv { try writeUsersCSV(source, count: Self.records) } else { try writeUsers(source, count: Self.records) }
        let target = dir.file("t.db")
        let report = try await SyncEngine().run(job(dir, "file:\(source)", "sqlite:\(target)#users"))
        #expect(report.read == Self.records && report.created == Self.records && report.failed == 0)
        #expect(report.loadedDirectly > 0)
        #expect(try countRows(target) == Self.records)
        let again = try await SyncEngine().run(job(dir, "file:\(source)", "sqlite:\(target)#users"))
        #expect(again.updated == Self.records && again.created == 0)
    }

    /// SIGKILL early in a load (while the check may still run: nothing is committed yet) and
    /// later (batches committed one by one): the next run loads everything, exactly once.
    @Test(arguments: [false, true])
    func killNineDuringAFullLoadThenARerunLoadsEverything(csv: Bool) async throws {
        let dir = try TempDir()
        let name = csv ? "users.csv" : "users.jsonl"
        if csv { try writeUsersCSV(dir.file(name), count: Self.killRecords) } else { try writeUsers(dir.file(name), count: Self.killRecords) }
        let arguments = ["sync", "file:\(name)", "sqlite:t.db#users"]
        var hits = 0
        for delay in [150, 600, 1_500] {
            let process = Ferry.start(arguments, in: dir.path, quiet: true)
            try await Task.sleep(for: .milliseconds(delay))
            if process.isRunning {
                kill(process.processIdentifier, SIGKILL)
                hits += 1
            }
            await process.exited()
        }
        #expect(hits >= 1, "no kill landed while the load ran")
        let final = try await Ferry.run(arguments, in: dir.path)
        #expect(final.status == 0, "\(final.stderr)")
        #expect(try countRows(dir.file("t.db")) == Self.killRecords)
        let result = try await Ferry.run(["verify", "file:\(name)", "sqlite:t.db#users", "--json"], in: dir.path)
        #expect(result.status == 0, "\(result.stdout) \(result.stderr)")
    }
}
