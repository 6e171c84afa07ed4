import FerryCore
import FerryTestSupport
import Foundation
import Testing

/// `ferry sync` into a SQLite target, with its state database, on a disk that fills up: the run
/// fails with a clear error and exit 1, the state stays consistent, and once space comes back a
/// rerun completes with exact counts and `ferry verify` equal. A small tmpfs the test mounts
/// (root; CI is root).
@Suite(.serialized)
struct DiskFaultTests {
    @Test func aFullDiskFailsTheRunClearlyAndARerunCompletes() async throws {
        guard let disk = SmallDisk.orSkip(megabytes: 1, "DiskFaultTests") else { return }
        defer { disk.remove() }
        let source = try TempDir()
        let count = 20_000  // about 2.5 MB as a table: more than the disk holds
        try writeUsers(source.file("a.jsonl"), count: count)
        let arguments = ["sync", "file:" + source.file("a.jsonl"), "sqlite:t.db#users", "--json"]

        let failed = try await Ferry.run(arguments, in: disk.path)
        #expect(failed.status == 2, "\(failed.stdout) \(failed.stderr)")
        #expect(failed.stderr.contains("database or disk is full"), "\(failed.stderr)")

        try disk.resize(megabytes: 64)
        let rerun = try await Ferry.run(arguments, in: disk.path)
        #expect(rerun.status == 0, "\(rerun.stderr)")
        #expect(try countRows(disk.path + "/t.db") == count)
        let verify = try await Ferry.run(["verify", "file:" + source.file("a.jsonl"), "sqlite:t.db#users", "--json"], in: disk.path)
        #expect(try JSON.parse(verify.stdout)["equal"] == true, "\(verify.stdout) \(verify.stderr)")
        // The checkpoint is where the data is: the next run has nothing to do.
        let after = try await Ferry.run(arguments, in: disk.path)
        #expect(after.status == 0, "\(after.stderr)")
        #expect(try JSON.parse(after.stdout)["created"] == 0, "\(after.stdout)")
    }

    /// The target and the state database in a folder that is read-only: the run stops with a
    /// clear error before it changes anything, and once the folder is writable a rerun completes.
    /// (A folder cannot be turned read-only under a running process here: remounting fails while
    /// files are open for writing, so it is read-only from the start; see ReadOnlyMount.)
    @Test func aReadOnlyFolderFailsTheRunClearlyAndARerunCompletes() async throws {
        guard let folder = ReadOnlyMount.orSkip("DiskFaultTests") else { return }
        defer { folder.remove() }
        let source = try TempDir()
        try writeUsers(source.file("a.jsonl"), count: 500)
        let arguments = ["sync", "file:" + source.file("a.jsonl"), "sqlite:t.db#users", "--json"]
        try folder.makeReadOnly()
        let failed = try await Ferry.run(arguments, in: folder.path)
        #expect(failed.status != 0, "\(failed.stdout) \(failed.stderr)")
        #expect(failed.stderr.lowercased().contains("read-only") || failed.stderr.lowercased().contains("readonly"), "\(failed.stderr)")
        #expect(try FileManager.default.contentsOfDirectory(atPath: folder.path).isEmpty)

        // The state database elsewhere: the target's own folder is named.
        let state = try TempDir()
        let target = try await Ferry.run(arguments + ["--state", state.file("state.db")], in: folder.path)
        #expect(target.status != 0)
        #expect(target.stderr.contains("the folder . is not writable: Read-only file system"), "\(target.stderr)")

        try folder.makeWritable()
        let rerun = try await Ferry.run(arguments, in: folder.path)
        #expect(rerun.status == 0, "\(rerun.stderr)")
        #expect(try countRows(folder.path + "/t.db") == 500)
    }

    /// A target and a state database that exist, in a folder that turns read-only between two
    /// runs: the run stops at once, naming the folder, and changes nothing, whether the target's
    /// folder or the state's is read-only. The target here is a table the user made (not in WAL
    /// mode), which SQLite opens read-only without a word; the state database is in WAL mode, which
    /// SQLite cannot open at all there. Once the folder is writable, a rerun takes the change.
    @Test func aFolderTurnedReadOnlyBetweenRunsFailsClearlyAndARerunCompletes() async throws {
        guard let folder = ReadOnlyMount.orSkip("DiskFaultTests") else { return }
        defer { folder.remove() }
        let source = try TempDir(), elsewhere = try TempDir()
        try writeUsers(source.file("a.jsonl"), count: 100)
        try writeUsersTable(folder.path + "/t.db", count: 0)
        // The target in the folder, its state elsewhere; then the other way round.
        let inside = ["sync", "file:" + source.file("a.jsonl"), "sqlite:t.db#users", "--state", elsewhere.file("state.db"), "--json"]
        let first = try await Ferry.run(inside, in: folder.path)
        #expect(first.status == 0, "\(first.stderr)")
        let stateInside = ["sync", "file:" + source.file("a.jsonl"), "sqlite:" + elsewhere.file("t.db") + "#users",
                           "--state", folder.path + "/state.db", "--json"]
        #expect(try await Ferry.run(stateInside, in: elsewhere.path).status == 0)
        let before = try FileManager.default.contentsOfDirectory(atPath: folder.path).sorted()
        let bytes = try #require(fileBytes(folder.path + "/t.db")), stateBytes = try #require(fileBytes(folder.path + "/state.db"))
        #expect(try countRows(folder.path + "/t.db") == 100)

        try writeUsers(source.file("a.jsonl"), count: 101)  // one record more
        try folder.makeReadOnly()
        let target = try await Ferry.run(inside, in: folder.path)
        #expect(target.status != 0)
        #expect(target.stderr.contains("cannot open the database for writing: SQLite could only open it read-only (the folder . is not writable: Read-only file system)"),
                "\(target.stderr)")
        let state = try await Ferry.run(stateInside, in: elsewhere.path)
        #expect(state.status != 0)
        #expect(state.stderr.contains("cannot open the state database \(folder.path)/state.db: ")
                && state.stderr.contains("(the folder \(folder.path) is not writable: Read-only file system)"), "\(state.stderr)")
        #expect(fileBytes(folder.path + "/t.db") == bytes)
        #expect(fileBytes(folder.path + "/state.db") == stateBytes)
        #expect(try countRows(elsewhere.file("t.db")) == 100)
        #expect(try FileManager.default.contentsOfDirectory(atPath: folder.path).sorted() == before)

        try folder.makeWritable()
        for (arguments, place) in [(inside, folder.path), (stateInside, elsewhere.path)] {
            let rerun = try await Ferry.run(arguments, in: place)
            #expect(rerun.status == 0, "\(rerun.stderr)")
            #expect(try JSON.parse(rerun.stdout)["created"] == 1, "\(rerun.stdout)")
        }
        let verify = try await Ferry.run(["verify", "file:" + source.file("a.jsonl"), "sqlite:t.db#users", "--json"], in: folder.path)
        #expect(try JSON.parse(verify.stdout)["equal"] == true, "\(verify.stdout) \(verify.stderr)")
    }
}
