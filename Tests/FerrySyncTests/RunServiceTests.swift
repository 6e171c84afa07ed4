import AsyncHTTPClient
import FerryCore
import FerryTestSupport
import Foundation
import NIOCore
import NIOHTTP1
import Testing

/// `ferry run` as a service: follow, scheduled and webhook jobs side by side, the status and
/// metrics port, and SIGTERM.
@Suite(.serialized) struct RunServiceTests {
    static let secret = "a-shared-webhook-secret-32-chars"

    /// A folder with a 5-row table `src.db#users` and a `ferry.yml` whose job `nightly` copies it
    /// every second.
    static func nightlyEverySecond() throws -> TempDir {
        let dir = try TempDir()
        try writeUsersTable(dir.file("src.db"), count: 5)
        try """
            jobs:
              nightly:
                source: sqlite:src.db#users
                target: sqlite:copy.db#users
                schedule: every 1s
            """.write(toFile: dir.file("ferry.yml"), atomically: true, encoding: .utf8)
        return dir
    }

    /// A running `ferry run ARGS`.
    static func running(_ arguments: [String], in dir: TempDir, environment: [String: String] = [:]) -> LongRunning {
        LongRunning(["run"] + arguments, in: dir, environment: environment)
    }

    @Test func followAndScheduledJobsRunSideBySideWithStatusAndMetrics() async throws {
        let server = try ServeProcess()
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

        // A run is counted once the engine returns, after its rows are committed: wait for the
        // follow job's count and the scheduled job's first outcome in /status, not just the rows.
        var (code, status): (Int, JSON?) = (0, nil)
        for _ in 0..<300 {
            (code, status) = try await jsonRequest(.GET, "http://127.0.0.1:\(port)/status")
            let counted = status?["jobs"]?.arrayValue?.contains { $0["name"] == "live" && $0["totals"]?["created"] == 12 } ?? false
            let ran = status?["jobs"]?.arrayValue?.contains { $0["name"] == "nightly" && $0["last_run"]?["outcome"] == "ok" } ?? false
            if code == 200 && counted && ran { break }
            try await Task.sleep(for: .milliseconds(100))
        }
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

    /// The counters of `/metrics` add up each run's own counts: as of a scrape, each equals the
    /// sum over the runs it counts (the oldest ones in the state database's history). A counter
    /// that took a job's running total at each run would count the first run's records again at
    /// every later one.
    @Test func metricsCountersAreTheSumsOfTheRuns() async throws {
        let dir = try Self.nightlyEverySecond()
        let running = Self.running(["ferry.yml", "--status-port", "0"], in: dir)
        let port = try running.port("status at")
        var metrics = ""
        var runs = 0
        for _ in 0..<600 where runs < 3 {
            metrics = try await getText("http://127.0.0.1:\(port)/metrics")
            runs = Int(Self.sample(metrics, #"ferry_job_runs_total{job="nightly"}"#) ?? 0)
            if runs < 3 { try await Task.sleep(for: .milliseconds(100)) }
        }
        #expect(running.terminate() == 0, "\(running.stderr)")
        #expect(runs >= 3, "\(metrics)")
        let history = try await Ferry.run(["status", "--json", "--job", "nightly", "--limit", "1000"], in: dir.path)
        let all = try JSON.parse(history.stdout).arrayValue ?? []
        #expect(all.count >= runs, "\(history.stdout)")
        let counted = all.suffix(runs)  // newest first: the oldest `runs` runs
        for (kind, field) in [("read", "read"), ("created", "created"), ("updated", "updated"), ("written", "written"),
                              ("deleted", "deleted"), ("rejected", "failed")] {
            let sum = counted.reduce(Int64(0)) { $0 + ($1["report"]?[field]?.intValue ?? 0) }
            #expect(Self.sample(metrics, "ferry_job_records_total{job=\"nightly\",kind=\"\(kind)\"}") == Double(sum), "\(kind): \(metrics)")
        }
        let retries = counted.reduce(Int64(0)) { $0 + ($1["report"]?["retries"]?.intValue ?? 0) }
        #expect(Self.sample(metrics, #"ferry_job_retries_total{job="nightly"}"#) == Double(retries))
        #expect(Self.sample(metrics, #"ferry_job_failures_total{job="nightly"}"#) == 0)
        // Every run reads the 5 rows again and the first creates them.
        #expect(Self.sample(metrics, #"ferry_job_records_total{job="nightly",kind="read"}"#) == Double(5 * runs), "\(metrics)")
        #expect(Self.sample(metrics, #"ferry_job_records_total{job="nightly",kind="created"}"#) == 5, "\(metrics)")
        for (name, type) in [("ferry_job_records_total", "counter"), ("ferry_job_runs_total", "counter"), ("ferry_job_failures_total", "counter"),
                             ("ferry_job_retries_total", "counter"), ("ferry_job_running", "gauge"), ("ferry_job_lag_seconds", "gauge")] {
            #expect(metrics.contains("# TYPE \(name) \(type)\n"), "\(name): \(metrics)")
        }
        #expect(Self.sample(metrics, #"ferry_job_lag_seconds{job="nightly"}"#) != nil, "\(metrics)")
    }

    /// The value of one series (`name{labels}` as exposed) in a Prometheus text; nil when absent.
    static func sample(_ metrics: String, _ series: String) -> Double? {
        metrics.split(separator: "\n").first { $0.hasPrefix(series + " ") }.flatMap { Double($0.dropFirst(series.count + 1)) }
    }

    /// The first SIGTERM lets the running run end after its current batch; a second one ends the
    /// process at once, with 130, here while the run waits on a source that never answers.
    @Test func aSecondSignalStopsAtOnceWith130() async throws {
        let silent = try SilentListener()
        let dir = try TempDir()
        try """
            jobs:
              stuck:
                source: http://127.0.0.1:\(silent.port)/v1/buckets/main/collections/users
                target: sqlite:stuck.db#users
            """.write(toFile: dir.file("ferry.yml"), atomically: true, encoding: .utf8)
        let running = Self.running(["ferry.yml"], in: dir)
        #expect(FollowTests.eventually { running.stdout.contains("== stuck") }, "\(running.stderr)")
        try await Task.sleep(for: .milliseconds(500))  // the signal listeners start beside the jobs
        kill(running.process.processIdentifier, SIGTERM)
        #expect(FollowTests.eventually { running.stderr.contains("SIGTERM: finishing the current batch") }, "\(running.stderr)")
        #expect(running.process.isRunning, "the run waits for its source: \(running.stderr)")
        #expect(running.terminate() == 130, "\(running.stderr)")
        #expect(running.stderr.contains("second signal: stopping now"), "\(running.stderr)")
        withExtendedLifetime(silent) {}
    }

    /// A server's webhook delivers to `ferry run --listen-port`, which runs the webhook job.
    @Test func webhookJobRunsOnEachDelivery() async throws {
        let server = try ServeProcess(environment: ["FERRY_WEBHOOK_ALLOW_HOSTS": "127.0.0.1"])
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

    /// Each interval's state goes into the state database; once there are enough, the model is in
    /// `/status` and `/metrics` and `ferry status --model` reads it.
    @Test func healthStatesAreRecordedAndModelled() async throws {
        let dir = try Self.nightlyEverySecond()
        let early = try await Ferry.run(["status", "--model", "--job", "nightly"], in: dir.path)
        #expect(early.status != 0 && early.stderr.contains("no state database"), "\(early.stderr)")
        let running = Self.running(["ferry.yml", "--status-port", "0", "--model-interval", "1s"], in: dir)
        let port = try running.port("status at")
        // Before 10 transitions: a clear "not enough data" in /status.
        let (_, first) = try await jsonRequest(.GET, "http://127.0.0.1:\(port)/status")
        let firstHealth = first?["jobs"]?[0]?["health"]
        #expect(firstHealth == nil || firstHealth?["error"]?.stringValue?.hasPrefix("not enough data") == true, "\(first?.serialized() ?? "")")
        var health: JSON?
        for _ in 0..<200 where health?["transitions"] == nil {
            try await Task.sleep(for: .milliseconds(200))
            health = try await jsonRequest(.GET, "http://127.0.0.1:\(port)/status").1?["jobs"]?[0]?["health"]
        }
        #expect((health?["transitions"]?.intValue ?? 0) >= 10, "\(health?.serialized() ?? "")")
        #expect(health?["interval_seconds"] == 1 && health?["in_sync_ahead"]?["intervals"] == 10)
        #expect(health?["current"] == "in_sync" || health?["current"] == "catching_up", "\(health?.serialized() ?? "")")
        let metrics = try await getText("http://127.0.0.1:\(port)/metrics")
        #expect(metrics.contains(#"ferry_job_health_in_sync_share{job="nightly"}"#), "\(metrics)")
        #expect(metrics.contains(#"ferry_job_health_in_sync_ahead{job="nightly",intervals="10"}"#), "\(metrics)")
        // The page: figures, the charts and the state diagram as inline SVG.
        let page = try await getText("http://127.0.0.1:\(port)/")
        #expect(page.contains("<h2>nightly</h2>") && page.contains("records per run") && page.contains("aria-label=\"state diagram\""), "\(page)")
        #expect(page.contains("long-run share in sync") && !page.contains("<script"), "\(page)")
        #expect(running.terminate() == 0, "\(running.stderr)")

        let shown = try await Ferry.run(["status", "--model"], in: dir.path)
        #expect(shown.status == 0, "\(shown.stderr)")
        #expect(shown.stdout.contains("nightly:") && shown.stdout.contains("long-run share in sync:") && shown.stdout.contains("now: stopped"), "\(shown.stdout)")
        let json = try await Ferry.run(["status", "--model", "--json", "--ahead", "3"], in: dir.path)
        let models = try JSON.parse(json.stdout)
        #expect(models[0]?["job"] == "nightly" && models[0]?["model"]?["current"] == "stopped", "\(json.stdout)")
        #expect(models[0]?["model"]?["in_sync_ahead"]?["intervals"] == 3)
        let none = try await Ferry.run(["status", "--model", "--job", "other"], in: dir.path)
        #expect(none.status == 0 && none.stdout.contains("other: not enough data: 0 transitions recorded"), "\(none.stdout)")
        let badAhead = try await Ferry.run(["status", "--model", "--ahead", "0"], in: dir.path)
        #expect(badAhead.status != 0 && badAhead.stderr.contains("--ahead must be between 1 and 100000"), "\(badAhead.stderr)")
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
            (onceJob, ["--model-interval", "0s"], [:], "--model-interval: every: \"0s\""),
            (onceJob, ["--model-interval", "soon"], [:], "--model-interval"),
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
