import FerryCore
import FerryTestSupport
import Foundation
import GRDB
import NIOHTTP1
import Testing
@testable import FerrySync

/// `ferry sync A B --two-way --follow` (and `schedule: follow` with `mode: two-way`), against
/// real `ferry serve` processes and SQLite files. Every wait is a poll with a generous deadline.
@Suite(.serialized) struct TwoWayFollowTests {
    static let auth = ["FERRY_SOURCE_AUTH": "alice:pw", "FERRY_TARGET_AUTH": "alice:pw"]

    /// The two-way reports a follower printed (`--json`: one line per run).
    static func reports(_ follow: LongRunning) -> [JSON] {
        follow.stdout.split(separator: "\n").compactMap { try? JSON.parse(String($0)) }.filter { $0["twoWay"] != nil }
    }

    /// Records written and deleted each way over all the runs so far.
    static func totals(_ reports: [JSON]) -> (toA: Int64, toB: Int64) {
        var (toA, toB): (Int64, Int64) = (0, 0)
        for report in reports {
            let t = report["twoWay"]
            toA += (t?["toA"]?["written"]?.intValue ?? 0) + (t?["toA"]?["deleted"]?.intValue ?? 0)
            toB += (t?["toB"]?["written"]?.intValue ?? 0) + (t?["toB"]?["deleted"]?.intValue ?? 0)
        }
        return (toA, toB)
    }

    static func quiet(_ report: JSON?) -> Bool {
        guard let t = report?["twoWay"] else { return false }
        return [t["toA"]?["written"], t["toA"]?["deleted"], t["toB"]?["written"], t["toB"]?["deleted"]].allSatisfy { $0 == 0 }
    }

    /// Both servers watched through their event streams: a change on either side reaches the
    /// other (the target's stream wakes the loop too: with streams, the safety-net run is
    /// minutes away), and what Ferry wrote is never sent back.
    @Test func followingTwoServersCarriesChangesBothWaysWithoutEcho() async throws {
        let dir = try TempDir()
        let (serverA, serverB) = (try ServeProcess(), try ServeProcess())
        let a = try await ServerSide(serverA)
        let b = try await ServerSide(serverB)
        try await a.put("r0", ["name": "before"])
        let follow = LongRunning(["sync", a.url, b.url, "--two-way", "--on-conflict", "a-wins", "--follow", "--json", "--job", "f"], in: dir, environment: Self.auth)
        #expect(await ListenTests.eventually { follow.stderr.components(separatedBy: "through the server's event stream").count == 3 }, "\(follow.stderr)")
        #expect(try await ListenTests.eventually { try await b.all()["r0"]?["name"] == "before" }, "\(follow.stderr)")

        try await a.put("r1", ["name": "from a"])
        #expect(try await ListenTests.eventually { try await b.all()["r1"]?["name"] == "from a" }, "\(follow.stderr)")
        try await b.put("r2", ["name": "from b"])
        #expect(try await ListenTests.eventually { try await a.all()["r2"]?["name"] == "from b" }, "\(follow.stderr)")
        try await b.put("r1", ["name": "b edited"])
        try await a.delete("r2")
        #expect(try await ListenTests.eventually {
            let (sideA, sideB) = (try await a.all(), try await b.all())
            return sideA["r1"]?["name"] == "b edited" && sideB["r2"] == nil
        }, "\(follow.stderr)")

        // No echo: once a run finds nothing to do, the totals are exactly the changes made
        // (to B: r0, r1, delete r2; to A: r2, r1), and they stay so.
        #expect(await ListenTests.eventually { Self.quiet(Self.reports(follow).last) && Self.totals(Self.reports(follow)) == (2, 3) },
                "\(follow.stdout)")
        let settled = Self.reports(follow).count
        try await a.put("r3", ["name": "one more"])
        #expect(await ListenTests.eventually { Self.reports(follow).count > settled + 1 && Self.quiet(Self.reports(follow).last) }, "\(follow.stdout)")
        #expect(Self.totals(Self.reports(follow)) == (2, 4), "\(follow.stdout)")
        #expect(try await a.all() == b.all())
        #expect(follow.terminate() == 0, "\(follow.stderr)")
    }

    /// A server (its stream) and a table (polled): changes go both ways; a follower killed with
    /// -9 and started again ends with both sides equal, changes made while it was down included.
    @Test func followingAServerAndATablePollsTheTableAndSurvivesKillNine() async throws {
        let dir = try TempDir()
        let server = try ServeProcess()
        let a = try await ServerSide(server)
        let b = try SQLiteSide(dir.file("b.db"))
        let arguments = ["sync", a.url, b.url, "--two-way", "--on-conflict", "b-wins", "--follow", "--poll-interval", "1s", "--json", "--job", "p"]
        var follow = LongRunning(arguments, in: dir, environment: Self.auth)
        #expect(await ListenTests.eventually { follow.stderr.contains("through the server's event stream") && follow.stderr.contains("through polling, every 1 s") },
                "\(follow.stderr)")
        try await b.put("t1", ["id": "t1", "name": "from the table", "n": 1])
        #expect(try await ListenTests.eventually { try await a.all()["t1"]?["name"] == "from the table" }, "\(follow.stderr)")
        try await a.put("s1", ["name": "from the server", "n": 2])
        #expect(try await ListenTests.eventually { try await b.all()["s1"]?["name"] == "from the server" }, "\(follow.stderr)")

        kill(follow.process.processIdentifier, SIGKILL)
        await follow.process.exited()
        // While it is down: a change on each side, and one record changed on both (b-wins).
        try await a.put("s2", ["name": "while down", "n": 3])
        try await b.delete("t1")
        try await a.put("s1", ["name": "server's edit", "n": 4])
        try await b.put("s1", ["id": "s1", "name": "table's edit", "n": 5])
        follow = LongRunning(arguments, in: dir, environment: Self.auth)
        #expect(try await ListenTests.eventually {
            let (sideA, sideB) = (try await a.all(), try await b.all())
            return sideA == sideB && sideA["s1"]?["name"] == "table's edit" && sideA["t1"] == nil && sideB["s2"]?["name"] == "while down"
        }, "\(follow.stderr)")
        #expect(await ListenTests.eventually { Self.quiet(Self.reports(follow).last) }, "\(follow.stdout)")
        #expect(follow.terminate() == 0, "\(follow.stderr)")
        // A once-run afterwards has nothing to do.
        let again = try JSON.parse(try await Ferry.run(Array(arguments.filter { !["--follow", "--poll-interval", "1s"].contains($0) }), in: dir.path, environment: Self.auth).stdout)
        #expect(Self.quiet(again), "\(again.serialized())")
    }

    /// `schedule: follow 1s` with `mode: two-way` in a jobs file runs `ferry run` as a two-way follower.
    @Test func aJobsFileFollowsTwoWay() async throws {
        let dir = try TempDir()
        let a = try SQLiteSide(dir.file("a.db"))
        let b = try SQLiteSide(dir.file("b.db"))
        try await a.put("r1", ["id": "r1", "name": "a", "n": 1])
        try TwoWayTests.writeJobsFile(dir, a, b, schedule: "follow 1s")
        let running = LongRunning(["run", "ferry.yml"], in: dir)
        #expect(try await ListenTests.eventually { try await b.all()["r1"]?["name"] == "a" }, "\(running.stderr)")
        try await b.put("r2", ["id": "r2", "name": "b", "n": 2])
        #expect(try await ListenTests.eventually { try await a.all()["r2"]?["name"] == "b" }, "\(running.stderr)")
        // One line per run that moved something; the polls that found nothing print none.
        #expect(await ListenTests.eventually { running.stdout.contains("to target 0 written 0 deleted, to source 1 written 0 deleted") }, "\(running.stdout)")
        #expect(running.terminate() == 0, "\(running.stderr)")
        let lines = running.stdout.split(separator: "\n")
        #expect(lines.count == 2 && lines[0].contains("to target 1 written 0 deleted, to source 0 written 0 deleted"), "\(running.stdout)")
        #expect(try await a.all() == b.all())
    }

    /// --follow with what it does not take is refused before anything is read or written.
    @Test func badFollowInputIsRefusedAndChangesNothing() async throws {
        let dir = try TempDir()
        let a = try SQLiteSide(dir.file("a.db"))
        let b = try SQLiteSide(dir.file("b.db"))
        try await a.put("r1", ["id": "r1", "name": "x"])
        for (arguments, message) in [
            (["--two-way", "--follow", "--dry-run"], "--follow does not go with --delete, --dry-run or --verify"),
            (["--two-way", "--follow", "--verify"], "--follow does not go with --delete, --dry-run or --verify"),
            (["--two-way", "--follow", "--every", "5s"], "--follow runs as changes come; it does not go with --every or --cron"),
            (["--mode", "diff", "--follow"], "--mode diff does not go with it"),
            (["--two-way", "--follow", "--poll-interval", "soon"], "--poll-interval"),
            (["--two-way", "--follow", "--follow-via", "carrier-pigeon"], "--follow-via must be auto, stream, long-poll or poll"),
        ] {
            let result = try await Ferry.run(["sync", a.url, b.url] + arguments + ["--state", "state.db"], in: dir.path)
            #expect(result.status != 0, "\(arguments)")
            #expect(result.stderr.contains(message), "\(arguments): \(result.stderr)")
        }
        #expect(try await b.all().isEmpty)
        #expect(!FileManager.default.fileExists(atPath: dir.file("state.db")))
    }
}
