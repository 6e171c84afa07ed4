import FerryCore
import FerryTestSupport
import Foundation
import Testing

/// `ferry sync` through a ``FaultProxy`` in front of a real `ferry serve`: connections dropped,
/// answers reset in the middle of their body or truncated, requests cut, delays. Runs may fail
/// (with a clear error) and are run again; every job ends with exact counts and `ferry verify`
/// equal.
@Suite(.serialized)
struct NetworkFaultTests {
    static let records = 600

    /// Connection `n`'s fault: mostly faulty, cutting at varied points (inside a head, inside a
    /// body, after several answers of a kept-alive connection), one in six left alone.
    static func plan(_ n: Int) -> FaultProxy.Fault {
        let bytes = 40 + (n * 7919) % 30_000
        switch n % 6 {
        case 0: return .resetAnswerAfter(bytes: bytes)
        case 1: return .truncateAnswerAfter(bytes: bytes)
        case 2: return .drop
        case 3: return .resetRequestAfter(bytes: 100 + bytes)
        case 4: return .delay(milliseconds: 20)
        default: return .none
        }
    }

    /// Runs `arguments` until a run succeeds (at most 12); every failed run must have said why.
    static func runUntilDone(_ arguments: [String], in directory: String, environment: [String: String]) async throws -> Spawn.Result {
        var last = Spawn.Result(status: -1, stdout: "", stderr: "")
        for _ in 0..<12 {
            last = try await Ferry.run(arguments, in: directory, environment: environment)
            if last.status == 0 { return last }
            #expect(last.status == 2, "a failed run exits 2 (an error), not \(last.status) (a crash?): \(last.stderr)")
            #expect(!last.stderr.isEmpty)
        }
        Issue.record("no run succeeded in 12: \(last.stderr)")
        return last
    }

    @Test func intoAServerThroughFaultsEndsEqual() async throws {
        let server = try ServeProcess()
        let proxy = try FaultProxy(upstreamPort: server.port, plan: Self.plan)
        defer { proxy.stop() }
        let dir = try TempDir()
        try writeUsers(dir.file("a.jsonl"), count: Self.records)
        let faulty = "http://127.0.0.1:\(proxy.port)/v1/buckets/main/collections/users"
        let environment = ["FERRY_TARGET_AUTH": "alice:pw"]
        let done = try await Self.runUntilDone(["sync", "file:a.jsonl", faulty, "--batch-size", "50", "--retries", "8", "--json"],
                                               in: dir.path, environment: environment)
        #expect(done.status == 0)
        #expect(proxy.faultsInjected >= 3, "only \(proxy.faultsInjected) faults in \(proxy.connections) connections")
        // Exact: every record once, and a run after it finds nothing to do.
        let verify = try await Ferry.run(["verify", "file:a.jsonl", server.collection(), "--json"], in: dir.path, environment: environment)
        #expect(verify.status == 0, "\(verify.stderr)")
        let report = try JSON.parse(verify.stdout)
        #expect(report["equal"] == true && report["sourceCount"] == .int(Int64(Self.records)) && report["targetCount"] == .int(Int64(Self.records)),
                "\(report.serialized())")
        let again = try await Ferry.run(["sync", "file:a.jsonl", server.collection(), "--mode", "diff", "--json"], in: dir.path, environment: environment)
        #expect(again.status == 0, "\(again.stderr)")
        let counts = try JSON.parse(again.stdout)
        #expect(counts["created"] == 0 && counts["updated"] == 0 && counts["deleted"] == 0, "\(counts.serialized())")
    }

    @Test func outOfAServerThroughFaultsEndsEqual() async throws {
        let server = try ServeProcess()
        let dir = try TempDir()
        try writeUsers(dir.file("a.jsonl"), count: Self.records)
        let load = try await Ferry.run(["sync", "file:a.jsonl", server.collection(), "--target-auth", "alice:pw"], in: dir.path)
        #expect(load.status == 0, "\(load.stderr)")
        let proxy = try FaultProxy(upstreamPort: server.port, plan: Self.plan)
        defer { proxy.stop() }
        let faulty = "http://127.0.0.1:\(proxy.port)/v1/buckets/main/collections/users"
        let environment = ["FERRY_SOURCE_AUTH": "alice:pw"]
        let done = try await Self.runUntilDone(["sync", faulty, "sqlite:t.db#users", "--mode", "incremental", "--retries", "8", "--json"],
                                               in: dir.path, environment: environment)
        #expect(done.status == 0)
        #expect(proxy.faultsInjected >= 1, "only \(proxy.faultsInjected) faults in \(proxy.connections) connections")
        #expect(try countRows(dir.file("t.db")) == Self.records)
        let verify = try await Ferry.run(["verify", server.collection(), "sqlite:t.db#users", "--json"], in: dir.path, environment: environment)
        #expect(verify.status == 0, "\(verify.stderr)")
        #expect(try JSON.parse(verify.stdout)["equal"] == true, "\(verify.stdout)")
        // The state database agrees: an incremental run through the faults finds nothing more.
        let again = try await Self.runUntilDone(["sync", faulty, "sqlite:t.db#users", "--mode", "incremental", "--retries", "8", "--json"],
                                                in: dir.path, environment: environment)
        let counts = try JSON.parse(again.stdout)
        #expect(counts["created"] == 0 && counts["updated"] == 0 && counts["deleted"] == 0, "\(counts.serialized())")
    }
}
