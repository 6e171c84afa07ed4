import FerryCore
import FerryTestSupport
import Foundation
import GRDB
import NIOHTTP1
import Testing

/// `ferry sync --follow` against a real server and real files, over loopback.
@Suite(.serialized) struct FollowTests {
    static let records = "/buckets/main/collections/users/records/"
    static let auth = ["FERRY_SOURCE_AUTH": "alice:pw"]

    /// A running `ferry sync ARGS --follow`.
    static func following(_ arguments: [String], in dir: TempDir, environment: [String: String] = FollowTests.auth) -> LongRunning {
        LongRunning(["sync"] + arguments + ["--follow"], in: dir, environment: environment)
    }

    /// Waits up to `timeout` seconds for `condition`.
    static func eventually(_ timeout: Double = 20, _ condition: () throws -> Bool) rethrows -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if try condition() { return true }
            usleep(20_000)
        }
        return try condition()
    }

    static func rows(_ path: String) -> [String: JSON] {
        // The follower may be writing: wait for its lock rather than read nothing.
        var configuration = Configuration()
        configuration.busyMode = .timeout(10)
        guard FileManager.default.fileExists(atPath: path), let queue = try? DatabaseQueue(path: path, configuration: configuration) else { return [:] }
        defer { try? queue.close() }
        let pairs: [(String, Int64)] = (try? queue.read { db in
            guard try db.tableExists("users") else { return [] }
            return try Row.fetchAll(db, sql: "SELECT id, age FROM users").map { ($0["id"], $0["age"] ?? -1) }
        }) ?? []
        return Dictionary(uniqueKeysWithValues: pairs.map { ($0.0, JSON.int($0.1)) })
    }

    static func makeCollection(_ server: ServeProcess) async throws {
        #expect(try await server.request(.PUT, "/buckets/main").0 < 300)
        #expect(try await server.request(.PUT, "/buckets/main/collections/users").0 < 300)
    }

    @Test func writesOnTheServerReachTheSQLiteTargetThroughTheStream() async throws {
        let server = try ServeProcess()
        let dir = try TempDir()
        try await Self.makeCollection(server)
        for i in 0..<50 { _ = try await server.request(.PUT, Self.records + "r\(i)", body: ["data": ["age": .int(Int64(i))]]) }
        let follow = Self.following([server.collection(), "sqlite:t.db#users"], in: dir)
        #expect(Self.eventually { Self.rows(dir.file("t.db")).count == 50 }, "\(follow.stderr)")
        #expect(follow.stderr.contains("through the server's event stream"), "\(follow.stderr)")

        _ = try await server.request(.PUT, Self.records + "new", body: ["data": ["age": 7]])
        _ = try await server.request(.PATCH, Self.records + "r1", body: ["data": ["age": 100]])
        _ = try await server.request(.DELETE, Self.records + "r2")
        #expect(Self.eventually {
            let rows = Self.rows(dir.file("t.db"))
            return rows["new"] == 7 && rows["r1"] == 100 && rows["r2"] == nil && rows.count == 50
        }, "\(follow.stderr)")
        #expect(follow.terminate() == 0, "\(follow.stderr)")
        #expect(follow.stderr.contains("SIGTERM"))
        #expect(follow.stdout.contains("created 1"), "\(follow.stdout)")
        let verify = try await Ferry.run(["verify", server.collection(), "sqlite:t.db#users", "--json"], in: dir.path, environment: Self.auth)
        #expect(try JSON.parse(verify.stdout)["equal"] == true, "\(verify.stdout) \(verify.stderr)")
        // The checkpoint is where following stopped: a plain incremental run reads nothing.
        let after = try await Ferry.run(["sync", server.collection(), "sqlite:t.db#users", "--mode", "incremental", "--json"], in: dir.path, environment: Self.auth)
        #expect(try JSON.parse(after.stdout)["read"] == 0, "\(after.stdout) \(after.stderr)")
    }

    /// The server is killed mid-stream while a client keeps writing, then restarted on the same
    /// data and port: every acknowledged write reaches the target, none twice.
    @Test func serverKilledAndRestartedMidStreamLosesNothing() async throws {
        var server: ServeProcess? = try ServeProcess()
        let data = server!.directory
        let port = server!.port
        let url = server!.collection()
        let dir = try TempDir()
        try await Self.makeCollection(server!)
        let follow = Self.following([url, "sqlite:t.db#users", "--batch-size", "7"], in: dir)
        var acknowledged: [String: Int64] = [:]
        for i in 0..<120 {
            if i == 60 {
                server!.crash()
                server = nil
                try await Task.sleep(for: .milliseconds(700))
                server = try ServeProcess(directory: data, port: port)
            }
            let id = "w\(i)"
            let (status, _) = try await server!.request(.PUT, Self.records + id, body: ["data": ["age": .int(Int64(i))]])
            if status < 300 { acknowledged[id] = Int64(i) }
            if i % 10 == 0 { try await Task.sleep(for: .milliseconds(30)) }
        }
        #expect(acknowledged.count == 120)
        #expect(Self.eventually(30) { Self.rows(dir.file("t.db")).count == 120 }, "\(follow.stderr)")
        let rows = Self.rows(dir.file("t.db"))
        #expect(acknowledged.allSatisfy { rows[$0.key] == .int($0.value) })
        #expect(follow.stderr.contains("reconnecting"), "\(follow.stderr)")
        #expect(follow.terminate() == 0)
        // Nothing twice: the runs together created each record exactly once.
        let created = follow.stdout.split(separator: "\n").compactMap { line -> Int? in
            guard let range = line.range(of: #"created (\d+)"#, options: .regularExpression) else { return nil }
            return Int(line[range].dropFirst(8))
        }.reduce(0, +)
        #expect(created == 120, "\(follow.stdout)")
        _ = server
    }

    /// Without a stream (forced here), the long-poll carries changes just as well.
    @Test func longPollFallbackFollowsToo() async throws {
        let server = try ServeProcess()
        let dir = try TempDir()
        try await Self.makeCollection(server)
        let follow = Self.following([server.collection(), "sqlite:t.db#users", "--follow-via", "long-poll"], in: dir)
        #expect(Self.eventually { follow.stderr.contains("through the server's long-poll") }, "\(follow.stderr)")
        for i in 0..<5 {
            _ = try await server.request(.PUT, Self.records + "p\(i)", body: ["data": ["age": .int(Int64(i))]])
            #expect(Self.eventually(10) { Self.rows(dir.file("t.db")).count == i + 1 }, "\(follow.stderr)")
        }
        #expect(follow.terminate() == 0)
    }

    /// A source with no change feed (a file) is polled at --poll-interval.
    @Test func fileSourceIsPolled() async throws {
        let dir = try TempDir()
        try writeUsers(dir.file("a.jsonl"), count: 30)
        let follow = Self.following(["file:a.jsonl", "sqlite:t.db#users", "--cursor-field", "updated_at", "--poll-interval", "1s"], in: dir, environment: [:])
        #expect(Self.eventually { Self.rows(dir.file("t.db")).count == 30 }, "\(follow.stderr)")
        #expect(follow.stderr.contains("polling, every 1 s"), "\(follow.stderr)")
        try writeUsers(dir.file("a.jsonl"), count: 40)
        #expect(Self.eventually { Self.rows(dir.file("t.db")).count == 40 }, "\(follow.stderr)")
        #expect(follow.terminate() == 0)
    }

    /// SIGTERM during a long first run stops at a batch boundary with the checkpoint saved; the
    /// next run goes on from there and the target ends complete.
    @Test func sigtermStopsAtABatchBoundaryAndTheNextRunGoesOn() async throws {
        let dir = try TempDir()
        let total = 200_000
        // A table read in cursor order checkpoints after every batch (a file only at its end).
        try writeUsersTable(dir.file("src.db"), count: total)
        let follow = Self.following(["sqlite:src.db#users", "sqlite:t.db#users", "--cursor-field", "updated_at", "--batch-size", "500", "--json"], in: dir, environment: [:])
        #expect(Self.eventually { ((try? countRows(dir.file("t.db"))) ?? 0) > 0 })
        #expect(follow.terminate() == 0, "\(follow.stderr)")
        let report = try JSON.parse(String(follow.stdout.split(separator: "\n").first ?? ""))
        #expect(report["stopped"] == true, "\(follow.stdout)")
        let partial = try countRows(dir.file("t.db"))
        #expect(partial < total)
        let rest = try await Ferry.run(["sync", "sqlite:src.db#users", "sqlite:t.db#users", "--mode", "incremental", "--cursor-field", "updated_at", "--json"], in: dir.path)
        #expect(rest.status == 0, "\(rest.stderr)")
        #expect(try countRows(dir.file("t.db")) == total)
        // Resumed, not restarted: the second run read at most one batch again.
        #expect((try JSON.parse(rest.stdout)["read"]?.intValue ?? 0) <= Int64(total - partial + 500), "\(rest.stdout)")
    }

    @Test func badFollowFlagsAreClearAndChangeNothing() async throws {
        let dir = try TempDir()
        try writeUsers(dir.file("a.jsonl"), count: 3)
        let cases: [([String], String)] = [
            (["--follow", "--every", "5s"], "--follow"),
            (["--follow", "--mode", "diff"], "--mode diff"),
            (["--follow", "--delete"], "--delete"),
            (["--follow", "--dry-run"], "--dry-run"),
            (["--follow", "--poll-interval", "0s"], "--poll-interval"),
            (["--follow", "--poll-interval", "soon"], "--poll-interval"),
            (["--poll-interval", "5s"], "--poll-interval goes with --follow"),
            (["--follow", "--follow-via", "carrier-pigeon"], "--follow-via"),
            (["--follow-via", "stream"], "--follow-via goes with --follow"),
        ]
        for (flags, mention) in cases {
            let result = try await Ferry.run(["sync", "file:a.jsonl", "sqlite:t.db#users"] + flags, in: dir.path)
            #expect(result.status != 0, "\(flags)")
            #expect(result.stderr.contains(mention), "\(flags): \(result.stderr)")
            #expect(result.stderr.split(separator: "\n").count <= 3, "\(result.stderr)")
            #expect(!FileManager.default.fileExists(atPath: dir.file("t.db")))
        }
    }
}
