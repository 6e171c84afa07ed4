import FerryTestSupport
import AsyncHTTPClient
import FerryCore
@testable import FerrySync
import Foundation
import NIOCore
import NIOHTTP1
import Testing

/// The Flask + SQLAlchemy users API of Fixtures/users_api.py, as a real child process.
final class UsersAPI {
    let process = Process()
    let directory: TempDir
    private(set) var port = 0

    /// FERRY_TEST_PYTHON, or the venv `scripts/test` installs Flask into.
    static var python: String {
        if let path = ProcessInfo.processInfo.environment["FERRY_TEST_PYTHON"] { return path }
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        return root.appendingPathComponent(".build/python-venv/bin/python").path
    }

    init(seed: Int = 0, token: String? = nil) throws {
        guard FileManager.default.isExecutableFile(atPath: Self.python) else {
            throw SyncTestError("no Python with Flask at \(Self.python): run scripts/test (it installs Tests/python/requirements.txt there) or set FERRY_TEST_PYTHON")
        }
        directory = try TempDir()
        let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures/users_api.py").path
        process.executableURL = URL(fileURLWithPath: Self.python)
        process.arguments = [script, "--db", directory.file("api.db"), "--port", "0", "--seed", String(seed)] + (token.map { ["--token", $0] } ?? [])
        port = try launch(process, output: Pipe(), port: #"listening on http://127\.0\.0\.1:(\d+)"#, what: "users_api.py")
    }

    deinit {
        process.stop(signal: SIGKILL)
    }

    /// The endpoint URL of a list path.
    func endpoint(_ path: String = "/users") -> String { "rest+http://127.0.0.1:\(port)\(path)" }

    @discardableResult
    func request(_ method: HTTPMethod, _ path: String, _ body: JSON? = nil) async throws -> (Int, JSON?) {
        try await jsonRequest(method, "http://127.0.0.1:\(port)" + path, body: body)
    }

    /// Every user, by id.
    func users() async throws -> [Int64: JSON] {
        let (status, body) = try await request(.GET, "/_admin/users")
        guard status == 200, let list = body?.arrayValue else { throw SyncTestError("GET /_admin/users answered \(status)") }
        var out: [Int64: JSON] = [:]
        for user in list { out[user["id"]!.intValue!] = user }
        return out
    }

    func stats() async throws -> JSON { try await request(.GET, "/_stats").1! }

    @discardableResult
    func faults(_ mode: String, every: Int = 1, retryAfter: Int = 1, delay: Double = 0.2) async throws -> JSON {
        try await request(.POST, "/_faults", ["mode": .string(mode), "every": .int(Int64(every)), "retry_after": .int(Int64(retryAfter)), "delay": .double(delay)]).1!
    }

    func freeze(_ now: String?) async throws {
        try await request(.POST, "/_admin/clock", ["now": now.map(JSON.string) ?? .null])
    }
}

/// Writes a CSV of users 1…count: id, username, age, address.
func writeUsersCSV(_ path: String, count: Int, from first: Int = 1) throws {
    var text = "id,username,age,address\n"
    for i in first..<(first + count) { text += "\(i),user\(i),\(18 + i % 60),\(i) Main Street\n" }
    try text.write(toFile: path, atomically: true, encoding: .utf8)
}

/// The settings for reading the fixture's page-paginated `/users`.
func pageRead(_ side: String, size: Int = 50) -> [String] {
    ["--\(side)-rest", "pagination=page", "--\(side)-rest", "items=/data", "--\(side)-rest", "page_size=\(size)"]
}

func report(_ result: Spawn.Result) throws -> JSON {
    guard let json = try? JSON.parse(result.stdout) else {
        throw SyncTestError("no JSON report (exit \(result.status)): \(result.stdout) \(result.stderr)")
    }
    return json
}

@Suite(.serialized) struct RESTTests {
    /// CSV → API, the API → SQLite, the API → a Ferry server and back: each step verified.
    @Test func csvIntoTheAPIThenSQLiteAndAServerBothWays() async throws {
        let api = try UsersAPI()
        let dir = try TempDir()
        try writeUsersCSV(dir.file("users.csv"), count: 300)
        // The API stamps updated_at itself: never sent, not compared.
        let toAPI = ["--target-rest", "managed_fields=updated_at"] + pageRead("target")

        var result = try await Ferry.run(["sync", "file:users.csv", api.endpoint(), "--json"] + toAPI, in: dir.path)
        var json = try report(result)
        #expect(result.status == 0 && json["created"] == 300 && json["failed"] == 0, "\(result.stdout) \(result.stderr)")
        #expect(try await api.users().count == 300)

        // A replay creates nothing: each record is an update of what is there.
        result = try await Ferry.run(["sync", "file:users.csv", api.endpoint(), "--json"] + toAPI, in: dir.path)
        json = try report(result)
        #expect(result.status == 0 && json["created"] == 0 && json["updated"] == 300, "\(result.stdout)")
        #expect(try await api.users().count == 300)

        // diff finds nothing to do, and verify agrees.
        result = try await Ferry.run(["sync", "file:users.csv", api.endpoint(), "--mode", "diff", "--json"] + toAPI, in: dir.path)
        json = try report(result)
        #expect(result.status == 0 && json["unchanged"] == 300 && json["created"] == 0 && json["updated"] == 0 && json["deleted"] == 0, "\(result.stdout)")
        result = try await Ferry.run(["verify", "file:users.csv", api.endpoint()] + toAPI, in: dir.path)
        #expect(result.status == 0, "\(result.stdout) \(result.stderr)")

        // The API into SQLite.
        result = try await Ferry.run(["sync", api.endpoint(), "sqlite:copy.db#users", "--json"] + pageRead("source", size: 40), in: dir.path)
        json = try report(result)
        #expect(result.status == 0 && json["read"] == 300 && json["created"] == 300, "\(result.stdout) \(result.stderr)")
        #expect(try countRows(dir.file("copy.db")) == 300)
        result = try await Ferry.run(["verify", api.endpoint(), "sqlite:copy.db#users"] + pageRead("source"), in: dir.path)
        #expect(result.status == 0, "\(result.stdout) \(result.stderr)")

        // The API into a Ferry server, incrementally.
        let server = try ServeProcess()
        let auth = ["FERRY_SOURCE_AUTH": "alice:pw", "FERRY_TARGET_AUTH": "alice:pw"]
        let incremental = ["--mode", "incremental", "--cursor-field", "updated_at", "--source-rest", "since_param=updated_since"] + pageRead("source")
        result = try await Ferry.run(["sync", api.endpoint(), server.collection(), "--json"] + incremental, in: dir.path, environment: auth)
        json = try report(result)
        #expect(result.status == 0 && json["created"] == 300, "\(result.stdout) \(result.stderr)")

        // Change the server's copy, then bring the API in line with a diff: exactly those changes.
        #expect(try await server.request(.PATCH, "/buckets/main/collections/users/records/7", body: ["data": ["age": 99]]).0 == 200)
        #expect(try await server.request(.PUT, "/buckets/main/collections/users/records/9001", body: ["data": ["username": "newcomer", "age": 30]]).0 == 201)
        #expect(try await server.request(.DELETE, "/buckets/main/collections/users/records/8").0 == 200)
        // Server ids are strings; the API's are integers.
        let back = ["--cast", "id=int"] + toAPI
        result = try await Ferry.run(["sync", server.collection(), api.endpoint(), "--mode", "diff", "--json"] + back, in: dir.path, environment: auth)
        json = try report(result)
        #expect(result.status == 0 && json["created"] == 1 && json["updated"] == 1 && json["deleted"] == 1 && json["unchanged"] == 298, "\(result.stdout) \(result.stderr)")
        let users = try await api.users()
        #expect(users.count == 300 && users[7]?["age"] == 99 && users[9001]?["username"] == "newcomer" && users[8] == nil)
        result = try await Ferry.run(["verify", server.collection(), api.endpoint()] + back, in: dir.path, environment: auth)
        #expect(result.status == 0, "\(result.stdout) \(result.stderr)")
    }

    /// Incremental runs move exactly what changed, with every record sharing one timestamp:
    /// across pages, and for records written in the same second after the last run.
    @Test(arguments: [false, true]) func incrementalMovesExactlyTheChanges(sorted: Bool) async throws {
        let api = try UsersAPI()
        let dir = try TempDir()
        try await api.freeze("2026-01-01T00:00:00Z")
        for i in 1...30 {
            #expect(try await api.request(.POST, "/users", ["id": .int(Int64(i)), "username": .string("u\(i)"), "age": .int(Int64(i))]).0 == 201)
        }
        let args = ["sync", api.endpoint(), "sqlite:inc.db#users", "--mode", "incremental", "--cursor-field", "updated_at", "--json",
                    "--source-rest", "since_param=updated_since", "--source-rest", "sorted=\(sorted)"] + pageRead("source", size: 7)
        var json = try report(try await Ferry.run(args, in: dir.path))
        #expect(json["read"] == 30 && json["created"] == 30, "\(json.serialized())")

        // Same second as the checkpoint: two new records and a changed one.
        try await api.request(.POST, "/users", ["id": 31, "username": "u31"])
        try await api.request(.POST, "/users", ["id": 4000, "username": "u4000"])
        try await api.request(.PATCH, "/users/3", ["age": 333])
        json = try report(try await Ferry.run(args, in: dir.path))
        #expect(json["read"] == 3 && json["created"] == 2 && json["updated"] == 1, "\(json.serialized())")

        json = try report(try await Ferry.run(args, in: dir.path))
        #expect(json["read"] == 0, "\(json.serialized())")

        // A later second: one update, one create.
        try await api.freeze("2026-01-01T00:00:01Z")
        try await api.request(.PATCH, "/users/10", ["age": 1010])
        try await api.request(.POST, "/users", ["id": 32, "username": "u32"])
        json = try report(try await Ferry.run(args, in: dir.path))
        #expect(json["read"] == 2 && json["created"] == 1 && json["updated"] == 1, "\(json.serialized())")
        json = try report(try await Ferry.run(args, in: dir.path))
        #expect(json["read"] == 0, "\(json.serialized())")
        #expect(try countRows(dir.file("inc.db")) == 33)
        let result = try await Ferry.run(["verify", api.endpoint(), "sqlite:inc.db#users"] + pageRead("source"), in: dir.path)
        #expect(result.status == 0, "\(result.stdout) \(result.stderr)")
    }

    /// The API has no deletes in its feed: diff finds creates, updates and deletes by comparing.
    @Test func diffFindsCreatesUpdatesAndDeletes() async throws {
        let api = try UsersAPI(seed: 120)
        let dir = try TempDir()
        let args = ["sync", api.endpoint(), "sqlite:d.db#users", "--mode", "diff", "--json"] + pageRead("source", size: 25)
        var json = try report(try await Ferry.run(args, in: dir.path))
        #expect(json["created"] == 120, "\(json.serialized())")
        try await api.request(.POST, "/users", ["id": 500, "username": "five hundred"])
        try await api.request(.POST, "/users", ["id": 501, "username": "five hundred one"])
        for id in [2, 40, 119] { try await api.request(.PATCH, "/users/\(id)", ["address": "moved"]) }
        try await api.request(.DELETE, "/users/60")
        json = try report(try await Ferry.run(args, in: dir.path))
        #expect(json["created"] == 2 && json["updated"] == 3 && json["deleted"] == 1 && json["unchanged"] == 116, "\(json.serialized())")
        json = try report(try await Ferry.run(args, in: dir.path))
        #expect(json["created"] == 0 && json["updated"] == 0 && json["deleted"] == 0, "\(json.serialized())")
        #expect(try countRows(dir.file("d.db")) == 121)
    }

    /// Every pagination style reads all 95 records exactly once.
    @Test(arguments: [
        ("/all/users", ["pagination=none"]),
        ("/users", ["pagination=page", "items=/data", "page_size=10"]),
        ("/offset/users", ["pagination=offset", "page_size=10"]),
        ("/cursor/users", ["pagination=cursor", "items=/items", "next_cursor=/next_cursor", "page_size=10"]),
        ("/link/users", ["pagination=link", "page_size=10"]),
        ("/next/users", ["pagination=next-url", "items=/results", "next_url=/next", "size_param=per_page", "page_size=10"]),
    ])
    func everyPaginationStyle(path: String, settings: [String]) async throws {
        let api = try UsersAPI(seed: 95)
        let dir = try TempDir()
        let flags = settings.flatMap { ["--source-rest", $0] }
        let result = try await Ferry.run(["sync", api.endpoint(path), "sqlite:p.db#users", "--json"] + flags, in: dir.path)
        let json = try report(result)
        #expect(result.status == 0 && json["read"] == 95 && json["created"] == 95, "\(path): \(result.stdout) \(result.stderr)")
        let verify = try await Ferry.run(["verify", api.endpoint(path), "sqlite:p.db#users"] + flags, in: dir.path)
        #expect(verify.status == 0, "\(path): \(verify.stdout) \(verify.stderr)")
    }

    /// 500s, 429 with Retry-After, slow answers and dropped connections, on writes and reads:
    /// every record arrives once.
    @Test(arguments: [("500", 4), ("429", 9), ("slow", 5), ("drop", 6), ("drop-after", 5)])
    func faultsLoseNothing(mode: String, every: Int) async throws {
        let api = try UsersAPI()
        let dir = try TempDir()
        try writeUsersCSV(dir.file("users.csv"), count: 150)
        let state = try await api.faults(mode, every: every, retryAfter: 1, delay: 0.2)
        #expect(state["mode"]?.stringValue == mode)
        var result = try await Ferry.run(["sync", "file:users.csv", api.endpoint(), "--retries", "8", "--json", "--target-rest", "managed_fields=updated_at", "--target-rest", "upsert=create-first"], in: dir.path)
        var json = try report(result)
        #expect(result.status == 0 && json["failed"] == 0 && json["created"]!.intValue! + json["updated"]!.intValue! == 150, "\(mode): \(result.stdout) \(result.stderr)")
        if mode != "slow" { #expect(json["retries"]!.intValue! > 0, "\(mode): \(json.serialized())") }
        result = try await Ferry.run(["sync", api.endpoint(), "sqlite:copy.db#users", "--retries", "8", "--json"] + pageRead("source", size: 20), in: dir.path)
        json = try report(result)
        #expect(result.status == 0 && json["read"] == 150, "\(mode): \(result.stdout) \(result.stderr)")
        let faulted = try await api.request(.GET, "/_faults").1
        #expect((faulted?["faulted"]?.intValue ?? 0) > 0, "\(faulted?.serialized() ?? "")")
        try await api.faults("none")
        #expect(try await api.users().count == 150)
        #expect(try countRows(dir.file("copy.db")) == 150)
        result = try await Ferry.run(["verify", "file:users.csv", api.endpoint(), "--target-rest", "managed_fields=updated_at"] + pageRead("target"), in: dir.path)
        #expect(result.status == 0, "\(mode): \(result.stdout) \(result.stderr)")
    }

    /// Writes go `concurrency` at a time, never more, and no faster than `rate`.
    @Test func concurrencyAndRateLimits() async throws {
        let api = try UsersAPI()
        let dir = try TempDir()
        try writeUsersCSV(dir.file("users.csv"), count: 24)
        // Every request takes 0.2 s, so requests overlap as much as Ferry lets them.
        try await api.faults("slow", every: 1, delay: 0.2)
        var result = try await Ferry.run(["sync", "file:users.csv", api.endpoint(), "--json", "--target-rest", "concurrency=3", "--target-rest", "upsert=create-first"], in: dir.path)
        #expect(result.status == 0 && (try? report(result)["created"]) == 24, "\(result.stdout) \(result.stderr)")
        let stats = try await api.stats()
        #expect(stats["max_in_flight"] == 3, "\(stats.serialized())")

        // 12 writes at most 4 a second take at least 2.75 s, whatever the concurrency.
        try await api.faults("none")
        try writeUsersCSV(dir.file("more.csv"), count: 12, from: 100)
        let started = Date()
        result = try await Ferry.run(["sync", "file:more.csv", api.endpoint(), "--json", "--target-rest", "rate=4", "--target-rest", "concurrency=8", "--target-rest", "upsert=create-first"], in: dir.path)
        let elapsed = Date().timeIntervalSince(started)
        #expect(result.status == 0 && (try? report(result)["created"]) == 12, "\(result.stdout) \(result.stderr)")
        #expect(elapsed >= 2.75, "12 requests at 4/s took \(elapsed) s")
        #expect(try await api.users().count == 36)
    }

    /// kill -9 during incremental reads from the API (checkpoints after every sorted page),
    /// then a run to the end: every record once.
    @Test func killedIncrementalRunsLoseNothing() async throws {
        let api = try UsersAPI(seed: 6000)
        let dir = try TempDir()
        let args = ["sync", api.endpoint(), "sqlite:k.db#users", "--mode", "incremental", "--cursor-field", "updated_at",
                    "--source-rest", "since_param=updated_since", "--source-rest", "sorted=true", "--batch-size", "10"] + pageRead("source", size: 10)
        var killedMidRun = 0
        for _ in 0..<3 {
            let process = Ferry.start(args, in: dir.path, quiet: true)
            try await Task.sleep(for: .milliseconds(Int.random(in: 400...1_500)))
            if process.isRunning {
                kill(process.processIdentifier, SIGKILL)
                killedMidRun += 1
            }
            await process.exited()
            // Changes between the runs, some in the same second as the seed.
            try await api.request(.POST, "/users", ["username": .string("late\(killedMidRun)-\(UUID().uuidString.prefix(6))")])
        }
        #expect(killedMidRun > 0, "every run finished before its kill: make the run longer")
        let result = try await Ferry.run(args + ["--json"], in: dir.path)
        #expect(result.status == 0, "\(result.stdout) \(result.stderr)")
        #expect(try countRows(dir.file("k.db")) == 6003)
        let verify = try await Ferry.run(["verify", api.endpoint(), "sqlite:k.db#users"] + pageRead("source", size: 1000), in: dir.path)
        #expect(verify.status == 0, "\(verify.stdout) \(verify.stderr)")
        let again = try report(try await Ferry.run(args + ["--json"], in: dir.path))
        #expect(again["read"] == 0, "\(again.serialized())")
    }

    /// A 4xx for one record dead-letters it with the API's answer; the others are written.
    @Test func recordErrorsAreDeadLettered() async throws {
        let api = try UsersAPI()
        let dir = try TempDir()
        try """
        id,username,age,address
        1,ann,30,here
        2,bob,-4,there
        3,ann,40,elsewhere
        4,dan,50,nowhere
        """.write(toFile: dir.file("u.csv"), atomically: true, encoding: .utf8)
        let result = try await Ferry.run(["sync", "file:u.csv", api.endpoint(), "--json", "--dead-letter", "dead.jsonl", "--target-rest", "managed_fields=updated_at"], in: dir.path)
        let json = try report(result)
        #expect(result.status == 1 && json["created"] == 2 && json["failed"] == 2, "\(result.stdout) \(result.stderr)")
        let dead = try String(contentsOfFile: dir.file("dead.jsonl"), encoding: .utf8)
        let lines = dead.split(separator: "\n").compactMap { try? JSON.parse(String($0)) }
        #expect(lines.count == 2)
        let reasons = lines.compactMap { $0["reason"]?.stringValue }.joined(separator: "\n")
        #expect(reasons.contains("answered 400") && reasons.contains("age"), "\(dead)")
        #expect(reasons.contains("answered 409") && reasons.contains("taken"), "\(dead)")
        // Records go several at once: which "ann" comes first is a race, one of them is written.
        let ids = Set(try await api.users().keys)
        #expect(ids.count == 2 && ids.contains(4) && !ids.contains(2), "\(ids)")
    }

    /// Bearer, Basic, API-key header and query parameter; the secret never shows.
    @Test func credentialsOfEveryKind() async throws {
        let api = try UsersAPI(seed: 10, token: "s3cret-token")
        let dir = try TempDir()
        for auth in ["Bearer s3cret-token", "header:X-API-Key=s3cret-token", "query:api_key=s3cret-token", "someone:s3cret-token"] {
            let result = try await Ferry.run(["sync", api.endpoint(), "sqlite:a.db#users", "--json", "--source-auth", auth] + pageRead("source"), in: dir.path)
            let read = try? report(result)["read"]
            #expect(result.status == 0 && read == 10, "\(auth): \(result.stdout) \(result.stderr)")
        }
        // Secrets from the environment.
        var result = try await Ferry.run(["sync", api.endpoint(), "sqlite:b.db#users"] + pageRead("source"), in: dir.path, environment: ["FERRY_SOURCE_AUTH": "query:api_key=s3cret-token"])
        #expect(result.status == 0, "\(result.stderr)")
        for auth in ["Bearer guess-1234", "query:api_key=guess-1234"] {
            result = try await Ferry.run(["sync", api.endpoint(), "sqlite:c.db#users", "--source-auth", auth] + pageRead("source"), in: dir.path)
            #expect(result.status == 2 && result.stderr.contains("refused the credentials (401)"), "\(result.stderr)")
            #expect(!result.stderr.contains("guess-1234") && !result.stdout.contains("guess-1234"), "\(result.stderr)")
            #expect(!FileManager.default.fileExists(atPath: dir.file("c.db")))
        }
        // A query-parameter secret stays out of messages naming the URL.
        try await api.faults("500", every: 1)
        result = try await Ferry.run(["sync", api.endpoint(), "sqlite:d.db#users", "--retries", "0", "--source-auth", "query:api_key=s3cret-token"] + pageRead("source"), in: dir.path)
        #expect(result.status == 2 && result.stderr.contains("answered 500 for GET http://127.0.0.1:\(api.port)/users?page=1") && !result.stderr.contains("s3cret"), "\(result.stderr)")
    }

    /// Bad settings and answers of the wrong shape: one clear line, exit 2, the target untouched.
    @Test func badInputChangesNothing() async throws {
        let api = try UsersAPI(seed: 5)
        let dir = try TempDir()
        try writeUsersTable(dir.file("t.db"), count: 3)
        let before = fileBytes(dir.file("t.db"))
        let cases: [([String], String)] = [
            (["--source-rest", "paginate=page"], "unknown REST setting \"paginate\""),
            (["--source-rest", "pagination=pages"], "pagination: must be one of none, page, offset, cursor, link, next-url"),
            (["--source-rest", "items=data"], "items: \"data\" is not a JSON pointer"),
            (["--source-rest", "page_size=0"], "page_size: must be a whole number from 1 to 100000"),
            (["--source-rest", "create=GET /users"], "the method must be POST, PUT, PATCH or DELETE"),
            (["--source-rest", "update=PUT /users/{id"], "unclosed {"),
            (["--source-rest", "rate=fast"], "rate: must be requests per second"),
            (["--source-rest", "pagination=page"], "answered an object at the root, expected an array of records; the records look like they are at /data: set items=/data"),
            (["--source-rest", "items=/records"], "answered an object without /records (its keys: data, page, per_page, total)"),
            (["--source-rest", "items=/page"], "answered a number at /page, expected an array of records"),
            (["--mode", "incremental", "--cursor-field", "updated_at", "--source-rest", "items=/data"], "an incremental read needs since_param"),
            (["--mode", "incremental", "--source-rest", "items=/data", "--source-rest", "since_param=updated_since"], "an incremental read needs --cursor-field"),
        ]
        for (flags, message) in cases {
            let result = try await Ferry.run(["sync", api.endpoint(), "sqlite:t.db#users"] + flags, in: dir.path)
            #expect(result.status == 2 && result.stderr.contains(message), "\(flags): \(result.stderr)")
            #expect(result.stderr.split(separator: "\n").count == 1, "\(result.stderr)")
            #expect(fileBytes(dir.file("t.db")) == before, "\(flags) changed the target")
        }
        // An API that is not there, a path that is not a list, a page size the API refuses.
        let elsewhere: [(String, [String], String)] = [
            ("rest+http://127.0.0.1:1/users", [], "cannot reach http://127.0.0.1:1"),
            (api.endpoint("/nothing"), [], "not found (404) for GET http://127.0.0.1:\(api.port)/nothing"),
            (api.endpoint(), ["--source-rest", "pagination=page", "--source-rest", "items=/data", "--source-rest", "page_size=5000"], "answered 400"),
            ("rest+http://127.0.0.1:\(api.port)/users#frag", [], "takes no #fragment"),
        ]
        for (url, flags, message) in elsewhere {
            let result = try await Ferry.run(["sync", url, "sqlite:t.db#users", "--retries", "0"] + flags, in: dir.path)
            #expect(result.status == 2 && result.stderr.contains(message), "\(url): \(result.stderr)")
            #expect(fileBytes(dir.file("t.db")) == before)
        }
        // Writing to an API with a template naming a field records lack.
        try writeUsersCSV(dir.file("u.csv"), count: 3)
        let result = try await Ferry.run(["sync", "file:u.csv", api.endpoint(), "--json", "--target-rest", "update=PUT /users/{nickname}", "--target-rest", "upsert=update-first"], in: dir.path)
        let failed = try? report(result)["failed"]
        #expect(result.status == 1 && failed == 3, "\(result.stdout) \(result.stderr)")
        #expect(try await api.users().count == 5)
    }

    /// A jobs file carries the REST settings, with secrets from the environment.
    @Test func jobsFileCarriesRESTSettings() async throws {
        let api = try UsersAPI(seed: 12, token: "tok")
        let dir = try TempDir()
        try """
        jobs:
          from-api:
            source: \(api.endpoint())
            target: sqlite:jobs.db#users
            source_auth: Bearer ${API_TOKEN}
            source_rest:
              pagination: page
              items: /data
              page_size: 5
        """.write(toFile: dir.file("ferry.yml"), atomically: true, encoding: .utf8)
        let result = try await Ferry.run(["run", "ferry.yml"], in: dir.path, environment: ["API_TOKEN": "tok"])
        #expect(result.status == 0, "\(result.stdout) \(result.stderr)")
        #expect(try countRows(dir.file("jobs.db")) == 12)
        try "jobs:\n  x:\n    source: \(api.endpoint())\n    target: sqlite:j.db#users\n    source_rest:\n      pages: 3\n".write(toFile: dir.file("bad.yml"), atomically: true, encoding: .utf8)
        let bad = try await Ferry.run(["run", "bad.yml"], in: dir.path)
        #expect(bad.status == 2 && bad.stderr.contains("bad.yml:6: unknown source_rest setting \"pages\""), "\(bad.stderr)")
    }
}

@Suite struct RESTUnitTests {
    @Test func linkHeaders() {
        #expect(RESTEndpoint.nextLink(#"<https://api.example/users?page=2>; rel="next""#) == "https://api.example/users?page=2")
        #expect(RESTEndpoint.nextLink(#"<https://a/x?page=1>; rel="prev", <https://a/x?page=3>; rel="next""#) == "https://a/x?page=3")
        #expect(RESTEndpoint.nextLink(#"<https://a/x?page=3>; title="a, b"; rel="last next""#) == "https://a/x?page=3")
        #expect(RESTEndpoint.nextLink(#"<https://a/x?page=9>; rel="last""#) == nil)
        #expect(RESTEndpoint.nextLink(nil) == nil)
        #expect(RESTEndpoint.nextLink("garbage") == nil)
    }

    @Test func templates() throws {
        let config = try RESTConfiguration(["update": "PATCH /teams/{team}/users/{key}"], path: "/users")
        let key = RecordKey(.int(5))!
        #expect(config.create.description == "POST /users" && config.delete.description == "DELETE /users/{key}")
        #expect(try config.update.path(key: key, fields: ["team": "a b/c"], keyField: "id").get() == "/teams/a%20b%2Fc/users/5")
        #expect((try? config.update.path(key: key, fields: [:], keyField: "id").get()) == nil)
        // The key field's own name works as the placeholder too.
        let byName = try RESTConfiguration(["delete": "DELETE /users/{id}"], path: "/users")
        #expect(try byName.delete.path(key: key, fields: nil, keyField: "id").get() == "/users/5")
    }

    @Test func credentials() throws {
        #expect(try HTTPTransport.Credentials.parse("a:b") == .header(name: "Authorization", value: "Basic YTpi"))
        #expect(try HTTPTransport.Credentials.parse("Bearer t") == .header(name: "Authorization", value: "Bearer t"))
        #expect(try HTTPTransport.Credentials.parse("header:X-Key=v=1") == .header(name: "X-Key", value: "v=1"))
        #expect(try HTTPTransport.Credentials.parse("query:k=v") == .query(name: "k", value: "v"))
        #expect(throws: SyncError.self) { try HTTPTransport.Credentials.parse("header:=v") }
        #expect(throws: SyncError.self) { try HTTPTransport.Credentials.parse("header:X Y=v") }
        #expect(throws: SyncError.self) { try HTTPTransport.Credentials.parse("Bearer a\r\nX: y") }
    }

    @Test func sizeParameterDefaultsFollowTheStyle() throws {
        #expect(try RESTConfiguration(["pagination": "page"], path: "/u").sizeParam == "per_page")
        #expect(try RESTConfiguration(["pagination": "offset"], path: "/u").sizeParam == "limit")
        #expect(try RESTConfiguration(["pagination": "offset", "size_param": ""], path: "/u").sizeParam == nil)
        #expect(try RESTConfiguration([:], path: "/u").sizeParam == nil)
    }
}
