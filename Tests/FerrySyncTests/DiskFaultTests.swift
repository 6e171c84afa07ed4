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
}
