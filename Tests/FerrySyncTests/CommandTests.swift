import AsyncHTTPClient
import FerryCore
import FerryTestSupport
import Foundation
import GRDB
import NIOCore
import NIOHTTP1
import Testing

/// `ferry sync`/`verify`/`run` as a user runs them: a real process, real files, real SQLite,
/// a real `ferry serve` over loopback.
@Suite(.serialized) struct CommandTests {
    // MARK: bad input: one line, non-zero exit, target unchanged

    /// A target database with one row, to prove a failed run leaves it byte for byte alone.
    func existingTarget(_ dir: TempDir) throws -> (url: String, bytes: Data?) {
        let path = dir.file("target.db")
        let queue = try DatabaseQueue(path: path)
        try queue.write { try $0.execute(sql: "CREATE TABLE users (id TEXT PRIMARY KEY, age INTEGER); INSERT INTO users VALUES ('keep', 1)") }
        try queue.close()
        return ("sqlite:\(path)#users", fileBytes(path))
    }

    @Test(arguments: [
        (["ftp://example.com/x"], #"unknown endpoint "ftp""#),
        (["file:missing.jsonl"], "cannot read missing.jsonl"),
        (["file:folder.jsonl"], "is a directory"),
        (["file:bad.jsonl"], "file:bad.jsonl line 3: invalid JSON"),
        (["file:array.jsonl"], "file:array.jsonl line 2: expected a JSON object, found array"),
        (["file:bad.csv"], "file:bad.csv line 3: 3 fields where the header has 2"),
        (["file:unclosed.csv"], "file:unclosed.csv line 2: a quoted cell is never closed"),
        (["file:data.txt"], "must end in .jsonl, .ndjson or .csv"),
        (["sqlite:source.db#nope"], #"no table "nope" in source.db (tables: users)"#),
        (["sqlite:absent.db#users"], "no such file absent.db"),
        (["sqlite:source.db"], "name the table after #"),
        (["http://127.0.0.1:1/v1/buckets/a/collections/b", "--retries", "1"], "cannot reach http://127.0.0.1:1: connection refused (tried 2 times)"),
        (["http://127.0.0.1:1/v1/buckets/a"], "must end with /buckets/BUCKET/collections/COLLECTION"),
        (["http://127.0.0.1:1/v1/buckets/a/collections/../x"], "must end with /buckets/BUCKET/collections/COLLECTION"),
        (["file:users.jsonl", "--mode", "incremental"], "needs --cursor-field"),
        (["sqlite:source.db#users", "--mode", "incremental", "--cursor-field", "nope"], #"no column "nope" for --cursor-field"#),
    ] as [([String], String)])
    func badInputFailsWithOneLineAndChangesNothing(arguments: [String], message: String) async throws {
        let dir = try TempDir()
        try FileManager.default.createDirectory(atPath: dir.file("folder.jsonl"), withIntermediateDirectories: false)
        try "{\"id\":\"a\"}\n{\"id\":\"b\"}\n{\"id\": nope}\n".write(toFile: dir.file("bad.jsonl"), atomically: true, encoding: .utf8)
        try "{\"id\":\"a\"}\n[1]\n".write(toFile: dir.file("array.jsonl"), atomically: true, encoding: .utf8)
        try "id,age\n1,2\n3,4,5\n".write(toFile: dir.file("bad.csv"), atomically: true, encoding: .utf8)
        try "id,age\n1,\"2\n3,4\n".write(toFile: dir.file("unclosed.csv"), atomically: true, encoding: .utf8)
        try "x".write(toFile: dir.file("data.txt"), atomically: true, encoding: .utf8)
        try writeUsers(dir.file("users.jsonl"), count: 3)
        try writeUsersTable(dir.file("source.db"), count: 3)
        let target = try existingTarget(dir)

        let result = try await Ferry.run(["sync", arguments[0], target.url] + arguments.dropFirst(), in: dir.path)
        #expect(result.status == 2)
        let lines = result.stderr.split(separator: "\n")
        #expect(lines.count == 1, "\(result.stderr)")
        #expect(result.stderr.hasPrefix("ferry: error: ") && result.stderr.contains(message), "\(result.stderr)")
        #expect(fileBytes(dir.file("target.db")) == target.bytes)
    }

    @Test func badInputNeverCreatesAMissingTarget() async throws {
        let dir = try TempDir()
        try "{\"id\":\"a\"}\n{oops\n".write(toFile: dir.file("bad.jsonl"), atomically: true, encoding: .utf8)
        for target in ["sqlite:new.db#users", "file:new.jsonl", "file:new.csv"] {
            let result = try await Ferry.run(["sync", "file:bad.jsonl", target], in: dir.path)
            #expect(result.status == 2 && result.stderr.contains("line 2"))
        }
        let left = try FileManager.default.contentsOfDirectory(atPath: dir.path).filter { $0.hasPrefix("new") }
        #expect(left.isEmpty, "\(left)")
    }

    @Test(arguments: [
        (["--mode", "sometimes"], "--mode must be full, incremental, diff or two-way"),
        (["--mode", "diff", "--delete"], "--delete goes with --mode full"),
        (["--batch-size", "0"], "--batch-size must be between 1 and 100000"),
        (["--rename", "a"], "--rename takes NAME=VALUE"),
        (["--cast", "age=colour"], "the type must be int, double, string, bool or json"),
        (["--where", "age"], "--where: filter \"age\" must look like"),
        (["--retries", "101"], "--retries must be between 0 and 100"),
    ] as [([String], String)])
    func badFlagsAreRefusedBeforeAnythingRuns(flags: [String], message: String) async throws {
        let dir = try TempDir()
        try writeUsers(dir.file("users.jsonl"), count: 3)
        let result = try await Ferry.run(["sync", "file:users.jsonl", "sqlite:t.db#users"] + flags, in: dir.path)
        #expect(result.status != 0 && result.status != 1)
        #expect(result.stderr.contains(message), "\(result.stderr)")
        #expect(!FileManager.default.fileExists(atPath: dir.file("t.db")))
    }

    @Test func passwordsInURLsAreNeverEchoed() async throws {
        let dir = try TempDir()
        let result = try await Ferry.run(["sync", "http://ada:s3cr3t-pw@127.0.0.1:1/v1/buckets/a/collections/b", "file:x.jsonl", "--retries", "0"], in: dir.path)
        #expect(result.status == 2)
        #expect(!result.stderr.contains("s3cr3t-pw") && !result.stdout.contains("s3cr3t-pw"))
        let bad = try await Ferry.run(["sync", "ftp://ada:s3cr3t-pw@host/x", "file:x.jsonl"], in: dir.path)
        #expect(bad.status == 2 && bad.stderr.contains("ada:***@host") && !bad.stderr.contains("s3cr3t-pw"))
    }

    // MARK: the commands

    @Test func verifyExitsOneAndListsTheDifferingKeys() async throws {
        let dir = try TempDir()
        try writeUsers(dir.file("a.jsonl"), count: 50)
        try writeUsers(dir.file("b.jsonl"), count: 48)
        let same = try await Ferry.run(["verify", "file:a.jsonl", "file:a.jsonl"], in: dir.path)
        #expect(same.status == 0 && same.stdout.contains("equal"))
        let differ = try await Ferry.run(["verify", "file:a.jsonl", "file:b.jsonl", "--json"], in: dir.path)
        #expect(differ.status == 1)
        let report = try JSON.parse(differ.stdout)
        #expect(report["equal"] == false && report["missingInTarget"] == ["u0000048", "u0000049"] && report["differing"] == 2)
    }

    @Test func syncJSONReportAndRunFile() async throws {
        let dir = try TempDir()
        try writeUsers(dir.file("a.jsonl"), count: 20)
        let sync = try await Ferry.run(["sync", "file:a.jsonl", "file:b.csv", "--json", "--verify", "--drop", "address"], in: dir.path)
        #expect(sync.status == 0, "\(sync.stderr)")
        let report = try JSON.parse(sync.stdout)
        #expect(report["created"] == 20 && report["read"] == 20 && report["verify"]?["equal"] == true)
        #expect(try String(contentsOfFile: dir.file("b.csv"), encoding: .utf8).hasPrefix("id,age,updated_at,username\n"))

        try """
            jobs:
              to-sqlite:
                source: file:a.jsonl
                target: sqlite:c.db#people
                transform: { rename: { username: name }, filter: ["age>=30"] }
                verify: true
            """.write(toFile: dir.file("ferry.yml"), atomically: true, encoding: .utf8)
        let run = try await Ferry.run(["run", "ferry.yml", "--json"], in: dir.path)
        #expect(run.status == 0, "\(run.stderr)")
        let expected = (0..<20).filter { 18 + $0 % 60 >= 30 }.count
        #expect(try countRows(dir.file("c.db"), "people") == expected)
        let columns = try await DatabaseQueue(path: dir.file("c.db")).read { try Row.fetchAll($0, sql: "PRAGMA table_info(people)").map { $0["name"] as String } }
        #expect(columns.contains("name") && !columns.contains("username"))

        try "jobs:\n  x:\n    source: file:a.jsonl\n    target: file:z.jsonl\n    colour: red\n".write(toFile: dir.file("bad.yml"), atomically: true, encoding: .utf8)
        let bad = try await Ferry.run(["run", "bad.yml"], in: dir.path)
        #expect(bad.status == 2 && bad.stderr.contains("bad.yml:5: unknown key \"colour\""))
        #expect(!FileManager.default.fileExists(atPath: dir.file("z.jsonl")))
    }

    @Test func rejectedRecordsExitOneWithASummary() async throws {
        let dir = try TempDir()
        try "{\"id\":\"a\"}\n{\"name\":\"no key\"}\n".write(toFile: dir.file("a.jsonl"), atomically: true, encoding: .utf8)
        let result = try await Ferry.run(["sync", "file:a.jsonl", "file:b.jsonl", "--dead-letter", "dead.jsonl"], in: dir.path)
        #expect(result.status == 1)
        #expect(result.stderr.contains("1 record was rejected; see dead.jsonl"))
        #expect(try String(contentsOfFile: dir.file("b.jsonl"), encoding: .utf8) == "{\"id\":\"a\"}\n")
        #expect(try String(contentsOfFile: dir.file("dead.jsonl"), encoding: .utf8).contains("no usable key"))
    }

    // MARK: servers

    @Test func serverToSQLiteIncrementalMovesExactlyTheChanges() async throws {
        let server = try ServeProcess()
        let dir = try TempDir()
        try writeUsers(dir.file("a.jsonl"), count: 300)
        let url = server.collection()
        let load = try await Ferry.run(["sync", "file:a.jsonl", url, "--target-auth", "alice:pw"], in: dir.path)
        #expect(load.status == 0, "\(load.stderr)")
        let first = try await Ferry.run(["sync", url, "sqlite:t.db#users", "--mode", "incremental", "--json"], in: dir.path, environment: ["FERRY_SOURCE_AUTH": "alice:pw"])
        #expect(first.status == 0, "\(first.stderr)")
        #expect(try JSON.parse(first.stdout)["created"] == 300)

        // 4 creates, 3 updates, 2 deletes, and one record updated twice (one change for the feed).
        let records = "/buckets/main/collections/users/records/"
        for i in 0..<4 { _ = try await server.request(.PUT, records + "n\(i)", body: ["data": ["age": .int(Int64(i))]]) }
        for id in ["u0000001", "u0000002", "u0000003"] { _ = try await server.request(.PATCH, records + id, body: ["data": ["age": 99]]) }
        _ = try await server.request(.PATCH, records + "u0000003", body: ["data": ["age": 100]])
        for id in ["u0000010", "u0000011"] { _ = try await server.request(.DELETE, records + id) }

        let second = try await Ferry.run(["sync", url, "sqlite:t.db#users", "--mode", "incremental", "--json", "--verify"], in: dir.path, environment: ["FERRY_SOURCE_AUTH": "alice:pw"])
        #expect(second.status == 0, "\(second.stderr)")
        let report = try JSON.parse(second.stdout)
        #expect(report["read"] == 9 && report["created"] == 4 && report["updated"] == 3 && report["deleted"] == 2, "\(report.serialized())")
        #expect(report["verify"]?["equal"] == true)
        #expect(try countRows(dir.file("t.db")) == 302)
        let third = try await Ferry.run(["sync", url, "sqlite:t.db#users", "--mode", "incremental", "--json"], in: dir.path, environment: ["FERRY_SOURCE_AUTH": "alice:pw"])
        #expect(try JSON.parse(third.stdout)["read"] == 0)
    }

    /// Into a server, records go in /batch requests of at most batch_max_requests and
    /// max_body_size (both announced by the server), several in flight at once; a key written
    /// twice in one run keeps its last value (those requests go in order).
    @Test func serverTargetSizesBatchesFromTheServerAndKeepsOrder() async throws {
        let server = try ServeProcess(extra: ["--batch-max-requests", "7", "--max-body-size", "4096"])
        let dir = try TempDir()
        var lines: [String] = []
        for i in 0..<300 {
            let padding = String(repeating: "x", count: i % 10 == 0 ? 1500 : 10)  // some records fill a third of a body
            lines.append(#"{"id":"r\#(i)","n":\#(i),"pad":"\#(padding)"}"#)
        }
        try (lines.joined(separator: "\n") + "\n").write(toFile: dir.file("a.jsonl"), atomically: true, encoding: .utf8)
        let url = server.collection()
        let load = try await Ferry.run(["sync", "file:a.jsonl", url, "--target-auth", "alice:pw", "--json", "--verify"], in: dir.path)
        #expect(load.status == 0, "\(load.stderr)")
        let report = try JSON.parse(load.stdout)
        #expect(report["created"] == 300 && report["verify"]?["equal"] == true, "\(report.serialized())")
        // The same keys twice in one file: the second value wins.
        let twice = (0..<20).map { #"{"id":"t\#($0 % 10)","v":\#($0)}"# }.joined(separator: "\n") + "\n"
        try twice.write(toFile: dir.file("b.jsonl"), atomically: true, encoding: .utf8)
        #expect(try await Ferry.run(["sync", "file:b.jsonl", url, "--target-auth", "alice:pw"], in: dir.path).status == 0)
        for k in 0..<10 {
            let (_, record) = try await server.request(.GET, "/buckets/main/collections/users/records/t\(k)")
            #expect(record?["data"]?["v"] == .int(Int64(k + 10)))
        }
    }

    @Test func wrongOrMissingCredentialsAreClearAndChangeNothing() async throws {
        let server = try ServeProcess()
        let dir = try TempDir()
        try writeUsers(dir.file("a.jsonl"), count: 5)
        let url = server.collection()
        #expect(try await Ferry.run(["sync", "file:a.jsonl", url, "--target-auth", "alice:pw"], in: dir.path).status == 0)

        let anonymous = try await Ferry.run(["sync", url, "file:out.jsonl"], in: dir.path)
        #expect(anonymous.status == 2 && anonymous.stderr.contains("refused the credentials (401)"), "\(anonymous.stderr)")
        let other = try await Ferry.run(["sync", url, "file:out.jsonl", "--source-auth", "mallory:pw"], in: dir.path)
        #expect(other.status == 2 && other.stderr.contains("not allowed (403)"), "\(other.stderr)")
        #expect(!other.stderr.contains("mallory:pw"))
        #expect(!FileManager.default.fileExists(atPath: dir.file("out.jsonl")))
        // Writing into alice's collection as mallory: refused, nothing changed.
        try writeUsers(dir.file("b.jsonl"), count: 5, offset: 100)
        let write = try await Ferry.run(["sync", "file:b.jsonl", url, "--target-auth", "mallory:pw"], in: dir.path)
        #expect(write.status == 2 && write.stderr.contains("403"), "\(write.stderr)")
        let (_, list) = try await server.request(.GET, "/buckets/main/collections/users/records")
        #expect(list?["data"]?.arrayValue?.count == 5)
    }

    @Test func retriesThroughFailuresLoseAndDuplicateNothing() async throws {
        let server = try ServeProcess()
        let dir = try TempDir()
        // A proxy answering 503 (Retry-After: 1), 429 (Retry-After: 0) or dropping the
        // connection on 3 requests in 7, and `Backoff: 0` on the rest.
        let proxy = Process()
        proxy.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures/flaky_proxy.py").path
        proxy.arguments = ["python3", script, String(server.port)]
        // Its first line is the port it listens on.
        let proxyPort = try launch(proxy, output: Pipe(), port: #"^(\d+)\n"#, what: "flaky_proxy.py")
        // SIGKILL: a child of a test thread may start with SIGTERM blocked.
        defer { proxy.stop(signal: SIGKILL) }
        let viaProxy = "http://127.0.0.1:\(proxyPort)/v1/buckets/main/collections/users"

        try writeUsers(dir.file("a.jsonl"), count: 1000)
        let auth = ["FERRY_SOURCE_AUTH": "alice:pw", "FERRY_TARGET_AUTH": "alice:pw"]
        let load = try await Ferry.run(["sync", "file:a.jsonl", viaProxy, "--batch-size", "50", "--json"], in: dir.path, environment: auth)
        #expect(load.status == 0, "\(load.stderr)")
        let loaded = try JSON.parse(load.stdout)
        #expect(loaded["created"] == 1000 && loaded["failed"] == 0)
        #expect((loaded["retries"]?.intValue ?? 0) > 0)

        let copy = try await Ferry.run(["sync", viaProxy, "sqlite:t.db#users", "--mode", "incremental", "--batch-size", "250", "--json"], in: dir.path, environment: auth)
        #expect(copy.status == 0, "\(copy.stderr)")
        #expect(try JSON.parse(copy.stdout)["created"] == 1000)
        // Both sides checked directly, without the proxy.
        try await verifyEqual("file:a.jsonl", server.collection(), count: 1000, in: dir, environment: auth)
        try await verifyEqual("file:a.jsonl", "sqlite:t.db#users", count: 1000, in: dir)

        let answer = try await HTTPClient.shared.execute(HTTPClientRequest(url: "http://127.0.0.1:\(proxyPort)/__faults__"), timeout: .seconds(10))
        let counts = try JSON.parse(bytes: Array(try await answer.body.collect(upTo: 1 << 16).readableBytesView))
        #expect((counts["503"]?.intValue ?? 0) > 0 && (counts["429"]?.intValue ?? 0) > 0 && (counts["dropped"]?.intValue ?? 0) > 0)
    }

    @Test func recordsTheServerRefusesAreDeadLetteredAndTheRestArrive() async throws {
        let server = try ServeProcess()
        let dir = try TempDir()
        try #"""
            {"id":"good1","age":1}
            {"id":"bad id!","age":2}
            {"id":"good2","age":3}

            """#.write(toFile: dir.file("a.jsonl"), atomically: true, encoding: .utf8)
        let result = try await Ferry.run(["sync", "file:a.jsonl", server.collection(), "--target-auth", "alice:pw", "--json"], in: dir.path)
        #expect(result.status == 1)
        let report = try JSON.parse(result.stdout)
        #expect(report["created"] == 2 && report["failed"] == 1)
        let dead = try String(contentsOfFile: try #require(report["deadLetter"]?.stringValue).hasPrefix("/") ? report["deadLetter"]!.stringValue! : dir.file(report["deadLetter"]!.stringValue!), encoding: .utf8)
        #expect(dead.contains(#""key":"bad id!""#) && dead.contains("answered 400"))
        let strict = try await Ferry.run(["sync", "file:a.jsonl", server.collection(), "--target-auth", "alice:pw", "--strict"], in: dir.path)
        #expect(strict.status == 2 && strict.stderr.contains("--strict stops here"))
    }

    func verifyEqual(_ source: String, _ target: String, count: Int, in dir: TempDir, environment: [String: String] = [:]) async throws {
        let result = try await Ferry.run(["verify", source, target, "--json"], in: dir.path, environment: environment)
        #expect(result.status == 0, "\(result.stdout) \(result.stderr)")
        let report = try JSON.parse(result.stdout)
        #expect(report["sourceCount"] == .int(Int64(count)) && report["targetCount"] == .int(Int64(count)))
    }

    // MARK: kill -9 (invariant 1: nothing lost, nothing duplicated)

    static let killRecords = 200_000

    /// Starts `ferry ARGS` several times, killing it with SIGKILL at random moments, then lets it finish.
    /// - Parameter progress: when given, each kill comes a random 0-200 ms after it first holds
    ///   (a sync that can finish in under a second is then still hit while it works), not at a
    ///   random 0.4-2.5 s after the start.
    /// - Returns: how many kills hit a running sync.
    func killRepeatedly(_ arguments: [String], in dir: TempDir, times: Int = 3, environment: [String: String] = [:],
                        progress: (@Sendable () -> Bool)? = nil) async throws -> Int {
        var hits = 0
        for _ in 0..<times {
            let process = Ferry.start(arguments, in: dir.path, environment: environment, quiet: true)
            if let progress {
                let deadline = ContinuousClock.now + .seconds(60)
                while process.isRunning, !progress(), ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(10)) }
                try await Task.sleep(for: .milliseconds(Int.random(in: 0...200)))
            } else {
                try await Task.sleep(for: .milliseconds(Int.random(in: 400...2_500)))
            }
            if process.isRunning {
                kill(process.processIdentifier, SIGKILL)
                hits += 1
            }
            await process.exited()
        }
        let final = try await Ferry.run(arguments, in: dir.path, environment: environment)
        #expect(final.status == 0, "\(final.stderr)")
        return hits
    }

    func verify(_ source: String, _ target: String, in dir: TempDir, environment: [String: String] = [:]) async throws {
        try await verifyEqual(source, target, count: Self.killRecords, in: dir, environment: environment)
    }

    func lineCount(_ path: String) throws -> Int {
        try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n").count
    }

    @Test(arguments: ["sqlite:t.db#users", "file:t.jsonl", "file:t.csv"])
    func killNineDuringAnIncrementalSyncLosesAndDuplicatesNothing(target: String) async throws {
        let dir = try TempDir()
        try writeUsersTable(dir.file("src.db"), count: Self.killRecords)
        let source = "sqlite:src.db#users"
        let hits = try await killRepeatedly(["sync", source, target, "--mode", "incremental", "--cursor-field", "updated_at"], in: dir)
        #expect(hits >= 1, "no kill landed while the sync ran")
        try await verify(source, target, in: dir)
        switch target {
        case "sqlite:t.db#users": #expect(try countRows(dir.file("t.db")) == Self.killRecords)
        case "file:t.jsonl": #expect(try lineCount(dir.file("t.jsonl")) == Self.killRecords)
        default: #expect(try lineCount(dir.file("t.csv")) == Self.killRecords + 1)
        }
        let leftovers = try FileManager.default.contentsOfDirectory(atPath: dir.path).filter { $0.hasSuffix(".tmp") }
        #expect(leftovers.isEmpty, "\(leftovers)")
    }

    @Test func killNineDuringAFullFileSyncLosesAndDuplicatesNothing() async throws {
        let dir = try TempDir()
        try writeUsers(dir.file("users.jsonl"), count: Self.killRecords)
        let hits = try await killRepeatedly(["sync", "file:users.jsonl", "sqlite:t.db#users"], in: dir)
        #expect(hits >= 1)
        try await verify("file:users.jsonl", "sqlite:t.db#users", in: dir)
        #expect(try countRows(dir.file("t.db")) == Self.killRecords)
    }

    @Test func killNineIntoAndOutOfAServerLosesAndDuplicatesNothing() async throws {
        let server = try ServeProcess(extra: ["--batch-max-requests", "1000"])
        let dir = try TempDir()
        try writeUsersTable(dir.file("src.db"), count: Self.killRecords)
        let url = server.collection()
        let auth = ["FERRY_SOURCE_AUTH": "alice:pw", "FERRY_TARGET_AUTH": "alice:pw"]
        let into = try await killRepeatedly(["sync", "sqlite:src.db#users", url, "--mode", "incremental", "--cursor-field", "updated_at"], in: dir, environment: auth)
        #expect(into >= 1)
        try await verify("sqlite:src.db#users", url, in: dir, environment: auth)

        // Reading the server is quick (a second or so for all of it): each kill comes once the
        // copy has begun to fill (its log or file past 64 KiB), else all three could come too late.
        let copy = dir.file("copy.db")
        let outOf = try await killRepeatedly(["sync", url, "sqlite:copy.db#users", "--mode", "incremental"], in: dir, environment: auth) {
            [copy, copy + "-wal"].reduce(0) { $0 + ((try? FileManager.default.attributesOfItem(atPath: $1)[.size] as? Int) ?? 0) } > 65_536
        }
        #expect(outOf >= 1)
        try await verify(url, "sqlite:copy.db#users", in: dir, environment: auth)
        #expect(try countRows(dir.file("copy.db")) == Self.killRecords)
    }
}

/// `ferry status`: the run history the engine records.
@Suite struct StatusCommandTests {
    @Test func listsRunsNewestFirstWithTheirCounts() async throws {
        let dir = try TempDir()
        try writeUsers(dir.file("a.jsonl"), count: 25)
        // Nothing has run: an error, and no state database is created by asking.
        var result = try await Ferry.run(["status"], in: dir.path)
        #expect(result.status == 2 && result.stderr.contains("no state database at .ferry/state.db"), "\(result.stderr)")
        #expect(!FileManager.default.fileExists(atPath: dir.file(".ferry/state.db")))

        #expect(try await Ferry.run(["sync", "file:a.jsonl", "sqlite:t.db#users", "--job", "load"], in: dir.path).status == 0)
        try "{\"id\": \"u0000001\", \"username\": \"x\"}\n{\"username\": \"no key\"}\n".write(toFile: dir.file("b.jsonl"), atomically: true, encoding: .utf8)
        #expect(try await Ferry.run(["sync", "file:b.jsonl", "sqlite:t.db#users", "--job", "patch"], in: dir.path).status == 1)

        result = try await Ferry.run(["status", "--json"], in: dir.path)
        let runs = try #require(try? JSON.parse(result.stdout))
        #expect(runs.arrayValue?.count == 2, "\(result.stdout)")
        #expect(runs[0]?["job"] == "patch" && runs[0]?["outcome"] == "failed: 1 rejected" && runs[0]?["report"]?["failed"] == 1)
        #expect(runs[1]?["job"] == "load" && runs[1]?["outcome"] == "ok" && runs[1]?["report"]?["created"] == 25)

        result = try await Ferry.run(["status", "--job", "load"], in: dir.path)
        let lines = result.stdout.split(separator: "\n")
        #expect(result.status == 0 && lines.count == 2 && lines[0].hasPrefix("started") && lines[1].contains("load") && lines[1].contains(" ok "), "\(result.stdout)")
        result = try await Ferry.run(["status", "--job", "nothing"], in: dir.path)
        #expect(result.status == 0 && result.stdout.contains("no runs of job nothing"))
        result = try await Ferry.run(["status", "--limit", "0"], in: dir.path)
        #expect(result.status != 0 && result.stderr.contains("--limit must be between 1 and 10000"))
    }
}
