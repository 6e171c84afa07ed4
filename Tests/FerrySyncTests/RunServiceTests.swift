import AsyncHTTPClient
import FerryCore
import Foundation
import NIOCore
import NIOHTTP1
import Testing

/// `ferry run` as a service: follow, scheduled and webhook jobs side by side, the status and
/// metrics port, and SIGTERM.
@Suite(.serialized) struct RunServiceTests {
    static let secret = "a-shared-webhook-secret-32-chars"

    /// A running `ferry run ARGS`.
    static func running(_ arguments: [String], in dir: TempDir, environment: [String: String] = [:]) -> LongRunning {
        LongRunning(["run"] + arguments, in: dir, environment: environment)
    }

    @Test func followAndScheduledJobsRunSideBySideWithStatusAndMetrics() async throws {
        let server = try Server()
        let dir = try TempDir()
        _ = try await server.request(.PUT, "/buckets/main")
        _ = try await server.request(.PUT, "/buckets/main/collections/users")
        try writeUsersTable(dir.file("src.db"), count: 25)
        try """
            jobs:
              live:
                source: \(server.collection())
                source_auth: alice:pw
                target: sqlite:live.db#users
                schedule: follow
              nightly:
                source: sqlite:src.db#users
                target: sqlite:copy.db#users
                mode: incremental
                cursor_field: updated_at
                schedule: every 1s
            """.write(toFile: dir.file("ferry.yml"), atomically: true, encoding: .utf8)
        let running = Self.running(["ferry.yml", "--status-port", "0"], in: dir)
        let port = try running.port("status at")
        for i in 0..<12 { _ = try await server.request(.PUT, "/buckets/main/collections/users/records/r\(i)", body: ["data": ["age": .int(Int64(i))]]) }
        #expect(FollowTests.eventually { FollowTests.rows(dir.file("live.db")).count == 12 }, "\(running.stderr)")
        #expect(FollowTests.eventually { ((try? countRows(dir.file("copy.db"))) ?? 0) == 25 }, "\(running.stderr)")

        let (code, status) = try await jsonRequest(.GET, "http://127.0.0.1:\(port)/status")
        #expect(code == 200)
        let jobs = status?["jobs"]?.arrayValue ?? []
        let live = jobs.first { $0["name"] == "live" }
        let nightly = jobs.first { $0["name"] == "nightly" }
        #expect(live?["schedule"] == "follow" && nightly?["schedule"] == "every 1 s", "\(status?.serialized() ?? "")")
        #expect((live?["runs"]?.intValue ?? 0) >= 1 && live?["totals"]?["created"] == 12, "\(status?.serialized() ?? "")")
        #expect(live?["lag_seconds"] != nil && live?["lag_seconds"] != .null && live?["last_error"] == .null)
        #expect(nightly?["next_run"]?.stringValue != nil && nightly?["last_run"]?["outcome"] == "ok", "\(status?.serialized() ?? "")")

        let metrics = try await getText("http://127.0.0.1:\(port)/metrics")
        #expect(metrics.contains(#"ferry_job_records_total{job="live",kind="created"} 12"#), "\(metrics)")
        #expect(metrics.contains(#"ferry_job_runs_total{job="nightly"}"#) && metrics.contains("ferry_job_lag_seconds{job=\"live\"}"), "\(metrics)")

        #expect(running.terminate() == 0, "\(running.stderr)")
        #expect(running.stderr.contains("SIGTERM"))
    }

    /// A server's webhook delivers to `ferry run --listen-port`, which runs the webhook job.
    @Test func webhookJobRunsOnEachDelivery() async throws {
        let server = try Server(environment: ["FERRY_WEBHOOK_ALLOW_HOSTS": "127.0.0.1"])
        let dir = try TempDir()
        _ = try await server.request(.PUT, "/buckets/main")
        _ = try await server.request(.PUT, "/buckets/main/collections/users")
        try """
            jobs:
              pushed:
                source: \(server.collection())
                source_auth: alice:pw
                target: sqlite:pushed.db#users
                mode: incremental
                schedule: webhook
            """.write(toFile: dir.file("ferry.yml"), atomically: true, encoding: .utf8)
        let running = Self.running(["ferry.yml", "--listen-port", "0", "--status-port", "0"], in: dir, environment: ["FERRY_WEBHOOK_SECRET": Self.secret])
        let listen = try running.port("webhook deliveries at")
        let statusPort = try running.port("status at")
        let (created, _) = try await server.request(.PUT, "/buckets/main/collections/users/webhooks/to-ferry",
                                                    body: ["data": ["url": .string("http://127.0.0.1:\(listen)/"), "secret": .string(Self.secret)]])
        #expect(created == 201)
        for i in 0..<8 { _ = try await server.request(.PUT, "/buckets/main/collections/users/records/w\(i)", body: ["data": ["age": .int(Int64(i))]]) }
        #expect(FollowTests.eventually { FollowTests.rows(dir.file("pushed.db")).count == 8 }, "\(running.stderr)")
        _ = try await server.request(.DELETE, "/buckets/main/collections/users/records/w0")
        #expect(FollowTests.eventually { FollowTests.rows(dir.file("pushed.db"))["w0"] == nil }, "\(running.stderr)")
        let (_, status) = try await jsonRequest(.GET, "http://127.0.0.1:\(statusPort)/status")
        let runs = status?["jobs"]?.arrayValue?.first?["runs"]?.intValue ?? 0
        #expect(runs >= 1 && runs <= 9, "bursts coalesce: \(runs) runs for 9 changes")
        let (_, hook) = try await server.request(.GET, "/buckets/main/collections/users/webhooks/to-ferry")
        #expect(hook?["data"]?["failures"] == 0, "\(hook?.serialized() ?? "")")
        #expect(running.terminate() == 0, "\(running.stderr)")
    }

    @Test func badServiceSetupsAreClearAndChangeNothing() async throws {
        let dir = try TempDir()
        try writeUsersTable(dir.file("src.db"), count: 3)
        let webhookJob = "jobs:\n  a:\n    source: sqlite:src.db#users\n    target: sqlite:dst.db#users\n    schedule: webhook\n"
        let onceJob = "jobs:\n  a:\n    source: sqlite:src.db#users\n    target: sqlite:dst.db#users\n"
        let cases: [(String, [String], [String: String], String)] = [
            (webhookJob, [], ["FERRY_WEBHOOK_SECRET": Self.secret], "give --listen-port"),
            (webhookJob, ["--listen-port", "0"], [:], "FERRY_WEBHOOK_SECRET"),
            (onceJob, ["--listen-port", "0"], [:], "--listen-port is for jobs with schedule: webhook"),
            (onceJob, ["--status-port", "70000"], [:], "--status-port must be between 0 and 65535"),
            (onceJob, ["--max-runs", "0"], [:], "--max-runs must be at least 1"),
            ("jobs:\n  a:\n    source: sqlite:src.db#users\n    target: sqlite:dst.db#users\n    schedule: follow never\n", [], [:], "job a: every: \"never\""),
        ]
        for (text, flags, environment, mention) in cases {
            try text.write(toFile: dir.file("j.yml"), atomically: true, encoding: .utf8)
            let result = try await Ferry.run(["run", "j.yml"] + flags, in: dir.path, environment: environment)
            #expect(result.status == 2 || result.status == 64, "\(flags): \(result.stderr)")
            #expect(result.stderr.contains(mention), "\(flags): \(result.stderr)")
            #expect(!FileManager.default.fileExists(atPath: dir.file("dst.db")))
        }
    }
}

/// A GET whose answer is read as text (the metrics exposition).
func getText(_ url: String) async throws -> String {
    var request = HTTPClientRequest(url: url)
    request.method = .GET
    let response = try await HTTPClient.shared.execute(request, timeout: .seconds(30))
    return String(buffer: try await response.body.collect(upTo: 16 << 20))
}
