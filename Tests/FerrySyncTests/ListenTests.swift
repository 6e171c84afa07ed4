import FerryTestSupport
import AsyncHTTPClient
@testable import FerryJobs
import FerryCore
import Foundation
import NIOCore
import NIOHTTP1
import Testing

/// `ferry listen` as a Ferry server's webhook meets it: a real process on loopback, signed
/// deliveries, a JSON Lines source and a SQLite target.
@Suite(.serialized) struct ListenTests {
    static let secret = "whsec-test-8c1f0a93d2e4"

    static let jobsFile = """
        jobs:
          users:
            source: file:users.jsonl
            target: sqlite:target.db#users
            mode: incremental
            cursor_field: updated_at
          broken:
            source: file:missing.jsonl
            target: sqlite:target.db#broken
        """

    /// A `ferry listen` process in a folder with the jobs file and `users.jsonl`.
    final class Listener {
        let process = Process()
        let output = Pipe()
        let log = LockedData()
        let directory: TempDir
        private(set) var port = 0

        init(_ directory: TempDir, _ arguments: [String], environment: [String: String] = ["FERRY_WEBHOOK_SECRET": ListenTests.secret]) throws {
            self.directory = directory
            process.executableURL = URL(fileURLWithPath: Ferry.binary)
            process.arguments = ["listen", "--port", "0"] + arguments
            process.currentDirectoryURL = URL(fileURLWithPath: directory.path)
            var env = ProcessInfo.processInfo.environment
            env.removeValue(forKey: "FERRY_WEBHOOK_SECRET")
            for (k, v) in environment { env[k] = v }
            process.environment = env
            port = try launch(process, output: output, port: #"listening on http://127\.0\.0\.1:(\d+)/"#, what: "ferry listen", log: log)
        }

        deinit {
            process.stop()
        }

        var url: String { "http://127.0.0.1:\(port)/" }
        var printed: String { String(decoding: log.get(), as: UTF8.self) }

        /// Waits for the process to exit by itself.
        func exitStatus(within seconds: Double = 60) -> Int32? {
            let deadline = Date().addingTimeInterval(seconds)
            while process.isRunning && Date() < deadline { usleep(50_000) }
            guard !process.isRunning else { return nil }
            return process.terminationStatus
        }
    }

    static func folder(users: Int) throws -> TempDir {
        let dir = try TempDir()
        try jobsFile.write(toFile: dir.file("ferry.yml"), atomically: true, encoding: .utf8)
        try writeUsers(dir.file("users.jsonl"), count: users)
        return dir
    }

    /// A delivery body as the server sends it.
    static func body(_ id: String) -> [UInt8] {
        let change: JSON = ["id": "u0000001", "username": "user1", "last_modified": 1_732_870_000_123]
        let body: JSON = ["id": .string(id), "event": "changes", "bucket": "main", "collection": "users", "webhook": "wh1",
                          "timestamp": 1_732_870_000_123, "changes": [change]]
        return body.serializedBytes()
    }

    static var now: Int { Int(Date().timeIntervalSince1970) }

    /// POSTs a delivery (signed with `secret` at `time` unless `signature` says otherwise); returns the status and answer.
    static func deliver(_ url: String, id: String?, body: [UInt8], secret: String = secret, at time: Int = now,
                        signature: String?? = .none, method: HTTPMethod = .POST) async throws -> (Int, JSON?) {
        var request = HTTPClientRequest(url: url)
        request.method = method
        request.headers.add(name: "Content-Type", value: "application/json")
        request.headers.add(name: "Ferry-Event", value: "changes")
        if let id { request.headers.add(name: "Ferry-Delivery", value: id) }
        let header = signature ?? WebhookSignature.header(secret: secret, timestamp: time, delivery: id ?? "", body: body)
        if let header { request.headers.add(name: "Ferry-Signature", value: header) }
        request.body = .bytes(ByteBuffer(bytes: body))
        let response = try await HTTPClient.shared.execute(request, timeout: .seconds(60))
        let bytes = try await response.body.collect(upTo: 1 << 20)
        return (Int(response.status.code), try? JSON.parse(bytes: Array(bytes.readableBytesView)))
    }

    /// The runs `ferry status` finds in the folder's state database.
    static func runs(_ dir: TempDir, job: String = "users") async throws -> Int {
        guard FileManager.default.fileExists(atPath: dir.file(".ferry/state.db")) else { return 0 }
        let status = try await Ferry.run(["status", "--json", "--job", job, "--limit", "1000"], in: dir.path)
        return (try? JSON.parse(status.stdout))?.arrayValue?.count ?? 0
    }

    static func rows(_ dir: TempDir) -> Int {
        (try? countRows(dir.file("target.db"))) ?? 0
    }

    /// Polls `condition` until it holds or `seconds` pass.
    static func eventually(within seconds: Double = 60, _ condition: () async throws -> Bool) async rethrows -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            if try await condition() { return true }
            try? await Task.sleep(nanoseconds: 100_000_000)
        }
        return try await condition()
    }

    // MARK: accepted deliveries run the jobs

    @Test func aSignedDeliveryRunsTheJobAndARetryIsADuplicate() async throws {
        let dir = try Self.folder(users: 30)
        let listener = try Listener(dir, ["users"])  // the secret from FERRY_WEBHOOK_SECRET
        let body = Self.body("wh1-1001")
        let signedAt = Self.now
        let (status, answer) = try await Self.deliver(listener.url, id: "wh1-1001", body: body, at: signedAt)
        #expect(status == 202 && answer == ["status": "accepted", "delivery": "wh1-1001"], "\(String(describing: answer))")
        #expect(await Self.eventually { Self.rows(dir) == 30 }, "\(listener.printed)")
        #expect(try await Self.eventually { try await Self.runs(dir) == 1 })

        // The same request again, byte for byte (a retry, or a replay within the tolerance).
        let (again, duplicate) = try await Self.deliver(listener.url, id: "wh1-1001", body: body, at: signedAt)
        #expect(again == 200 && duplicate?["status"] == "duplicate", "\(String(describing: duplicate))")

        // A new delivery runs the job once more: two runs in all, none for the duplicate (whose
        // run would have started at once, so the new delivery would have made a third).
        try writeUsers(dir.file("users.jsonl"), count: 35)
        let (next, _) = try await Self.deliver(listener.url + "webhook", id: "wh1-1002", body: Self.body("wh1-1002"))
        #expect(next == 202)
        #expect(await Self.eventually { Self.rows(dir) == 35 })
        #expect(try await Self.eventually { try await Self.runs(dir) >= 2 })
        try await Task.sleep(nanoseconds: 1_500_000_000)
        await #expect(try await Self.runs(dir) == 2)

        let printed = listener.printed
        #expect(printed.contains("ferry listen: delivery wh1-1001 accepted: 1 change in main/users"), "\(printed)")
        #expect(printed.contains("delivery wh1-1001 is a duplicate"), "\(printed)")
        #expect(printed.contains("== users at"), "\(printed)")
        #expect(!printed.contains(Self.secret))
    }

    @Test func refusedDeliveriesRunNothingAndNeverShowTheSecret() async throws {
        let dir = try Self.folder(users: 10)
        // The secret as a flag this time (the environment has none).
        let listener = try Listener(dir, ["users", "--secret", Self.secret], environment: [:])
        let url = listener.url
        let body = Self.body("d1")

        var (status, answer) = try await Self.deliver(url, id: "d1", body: body, secret: "another-secret")
        #expect(status == 401 && answer?["message"]?.stringValue?.contains("does not match") == true, "\(String(describing: answer))")
        (status, answer) = try await Self.deliver(url, id: "d1", body: body, at: Self.now - 1000)
        #expect(status == 401 && answer?["message"]?.stringValue?.contains("s old") == true, "\(String(describing: answer))")
        (status, answer) = try await Self.deliver(url, id: "d1", body: body, at: Self.now + 1000)
        #expect(status == 401 && answer?["message"]?.stringValue?.contains("in the future") == true, "\(String(describing: answer))")
        (status, _) = try await Self.deliver(url, id: "d1", body: body, signature: .some(nil))
        #expect(status == 401)
        (status, _) = try await Self.deliver(url, id: "d1", body: body, signature: "t=\(Self.now),sha256=abc")
        #expect(status == 401)
        // Signed for one delivery id, sent as another.
        let other = WebhookSignature.header(secret: Self.secret, timestamp: Self.now, delivery: "d2", body: body)
        (status, _) = try await Self.deliver(url, id: "d1", body: body, signature: other)
        #expect(status == 401)

        // Correctly signed, but not a delivery.
        for bad in ["[1, 2]", #"{"id": "d1", "event": "changes"}"#, #"{"changes": 5}"#, "{not json", #"{"id": "d9", "changes": []}"#] {
            (status, answer) = try await Self.deliver(url, id: "d1", body: Array(bad.utf8))
            #expect(status == 400 && answer?["status"] == "error", "\(bad): \(status) \(String(describing: answer))")
        }
        (status, _) = try await Self.deliver(url, id: nil, body: body)
        #expect(status == 400)
        (status, _) = try await Self.deliver(url, id: "has space", body: body)
        #expect(status == 400)
        (status, _) = try await Self.deliver(url + "elsewhere", id: "d1", body: body)
        #expect(status == 404)
        (status, _) = try await Self.deliver(url, id: "d1", body: [], method: .GET)
        #expect(status == 405)
        let huge = Array(repeating: UInt8(ascii: " "), count: 10 << 20 + 1)
        (status, _) = try await Self.deliver(url, id: "d1", body: huge)
        #expect(status == 413)

        try await Task.sleep(nanoseconds: 500_000_000)
        #expect(!FileManager.default.fileExists(atPath: dir.file("target.db")))
        await #expect(try await Self.runs(dir) == 0)

        // The listener is still there, and the refused id was not remembered: it runs now.
        (status, _) = try await Self.deliver(url, id: "d1", body: body)
        #expect(status == 202)
        #expect(await Self.eventually { Self.rows(dir) == 10 })
        let printed = listener.printed
        #expect(printed.contains("refused a delivery d1 (401): Ferry-Signature does not match"), "\(printed)")
        #expect(!printed.contains(Self.secret), "\(printed)")
    }

    @Test func aBurstDuringARunMakesOneMoreRunNotOnePerDelivery() async throws {
        // Enough records that the first run is still going while the burst comes.
        let dir = try Self.folder(users: 20_000)
        let listener = try Listener(dir, ["users"])
        let (first, _) = try await Self.deliver(listener.url, id: "b0", body: Self.body("b0"))
        #expect(first == 202)
        // Twenty more records (written atomically, as the run may be reading), announced by
        // twenty deliveries sent at once: they arrive while the first run is still reading.
        var extra = ""
        for i in 1...20 {
            extra += #"{"id":"n\#(i)","username":"new\#(i)","age":30,"updated_at":\#(3_000_000 + i)}"# + "\n"
        }
        let base = try String(contentsOfFile: dir.file("users.jsonl"), encoding: .utf8)
        try (base + extra).write(toFile: dir.file("users.jsonl"), atomically: true, encoding: .utf8)
        let url = listener.url
        let statuses = try await withThrowingTaskGroup(of: Int.self) { group in
            for i in 1...20 {
                group.addTask { try await Self.deliver(url, id: "b\(i)", body: Self.body("b\(i)")).0 }
            }
            return try await group.reduce(into: [Int]()) { $0.append($1) }
        }
        #expect(statuses == Array(repeating: 202, count: 20))
        #expect(await Self.eventually(within: 120) { Self.rows(dir) == 20_020 }, "\(Self.rows(dir)) rows; \(listener.printed)")
        // Settled: no new run for 3 s (a run of this file takes about a second).
        var runs = try await Self.runs(dir)
        var stableSince = Date()
        while Date().timeIntervalSince(stableSince) < 3, runs < 21 {
            try await Task.sleep(nanoseconds: 250_000_000)
            let now = try await Self.runs(dir)
            if now != runs { (runs, stableSince) = (now, Date()) }
        }
        // One run when the burst came before the first run began reading (a loaded machine), two
        // when it came during it; never one per delivery.
        #expect(runs >= 1 && runs <= 5, "\(runs) runs for 21 deliveries")
        #expect(Self.rows(dir) == 20_020)
    }

    @Test func maxRunsStopsAndAFailedRunIsReportedWhileTheOtherJobsGoOn() async throws {
        let dir = try Self.folder(users: 5)
        let listener = try Listener(dir, ["broken", "users", "--max-runs", "2", "--json"])
        let (one, _) = try await Self.deliver(listener.url, id: "m1", body: Self.body("m1"))
        #expect(one == 202)
        #expect(await Self.eventually { Self.rows(dir) == 5 })
        let (two, _) = try await Self.deliver(listener.url, id: "m2", body: Self.body("m2"))
        #expect(two == 202)
        // Two passes, the broken job failing in each: exit status 1.
        #expect(listener.exitStatus() == 1, "\(listener.printed)")
        let printed = listener.printed
        #expect(printed.components(separatedBy: "ferry: error: broken: cannot read missing.jsonl").count == 3, "\(printed)")
        let reports = printed.split(separator: "\n").compactMap { try? JSON.parse(String($0)) }
        #expect(reports.count == 2 && reports.allSatisfy { $0["job"] == "users" }, "\(printed)")
        await #expect(try await Self.runs(dir) == 2)
    }

    // MARK: bad invocations

    @Test func badInvocationsExitTwoWithOneLine() async throws {
        let dir = try Self.folder(users: 1)
        let environment = ["FERRY_WEBHOOK_SECRET": Self.secret]
        let cases: [([String], [String: String], String)] = [
            (["listen", "--port", "0", "users"], [:], "no webhook secret: set FERRY_WEBHOOK_SECRET"),
            (["listen", "--port", "0", "users"], ["FERRY_WEBHOOK_SECRET": ""], "no webhook secret"),
            (["listen", "--port", "0", "users", "nope"], environment, "ferry.yml: no job named nope (jobs: users, broken)"),
            (["listen", "--port", "0"], environment, "name the jobs to run on each delivery (ferry.yml has: users, broken)"),
            (["listen", "--port", "0", "--jobs", "absent.yml", "users"], environment, "absent.yml: cannot read the jobs file"),
        ]
        for (arguments, environment, message) in cases {
            let result = try await Ferry.run(arguments, in: dir.path, environment: environment)
            #expect(result.status == 2, "\(arguments): \(result.stderr)")
            #expect(result.stderr.hasPrefix("ferry: error: " + message), "\(arguments): \(result.stderr)")
            #expect(result.stderr.split(separator: "\n").count == 1, "\(arguments): \(result.stderr)")
        }
        let tolerance = try await Ferry.run(["listen", "--port", "0", "--tolerance", "0", "users"], in: dir.path, environment: environment)
        #expect(tolerance.status != 0 && tolerance.stderr.contains("--tolerance must be between 1 and 86400"), "\(tolerance.stderr)")
        #expect(!FileManager.default.fileExists(atPath: dir.file("target.db")))
    }
}

/// The receiver's memory of accepted delivery ids, with made-up times.
@Suite struct AcceptedDeliveriesTests {
    @Test func anIdIsADuplicateWhileItsSignatureCouldStillPass() async {
        let accepted = AcceptedDeliveries(limit: 100)
        #expect(await accepted.insert("a", expires: 1300, now: 1000))
        #expect(await !accepted.insert("a", expires: 1400, now: 1100))
        #expect(await !accepted.insert("a", expires: 1600, now: 1300))
        // Past its expiry a signature of it is too old anyway: the id may be accepted again.
        #expect(await accepted.insert("a", expires: 1601, now: 1301))
        #expect(await accepted.insert("b", expires: 1601, now: 1301))
    }

    @Test func atMostLimitIdsAreKeptTheOldestDroppedFirst() async {
        let accepted = AcceptedDeliveries(limit: 3)
        for id in ["a", "b", "c", "d"] {
            #expect(await accepted.insert(id, expires: 2000, now: 1000))
        }
        #expect(await accepted.insert("a", expires: 2000, now: 1000))  // dropped for d
        #expect(await !accepted.insert("d", expires: 2000, now: 1000))
        #expect(await !accepted.insert("c", expires: 2000, now: 1000))
        // Many more ids than the limit: memory stays bounded, the newest are still known.
        for i in 0..<5000 { _ = await accepted.insert("x\(i)", expires: 2000, now: 1000) }
        #expect(await accepted.count == 3)
        #expect(await !accepted.insert("x4999", expires: 2000, now: 1000))
    }
}

