import AsyncHTTPClient
import FerryCore
import FerryTestSupport
import Foundation
import GRDB
import NIOCore
import NIOHTTP1
import Testing

/// The sync tests' ways to reach a server.
extension ServeProcess {
    func collection(_ bucket: String = "main", _ collection: String = "users") -> String {
        "http://127.0.0.1:\(port)/v1/buckets/\(bucket)/collections/\(collection)"
    }

    /// One request as `user` (password "pw"); returns status and parsed body.
    func request(_ method: HTTPMethod, _ path: String, body: JSON? = nil, user: String? = "alice") async throws -> (Int, JSON?) {
        let authorization = user.map { "Basic " + Data("\($0):pw".utf8).base64EncodedString() }
        return try await jsonRequest(method, "http://127.0.0.1:\(port)/v1" + path, body: body, authorization: authorization)
    }
}

/// One HTTP request with an optional JSON body; returns the status and the parsed answer.
func jsonRequest(_ method: HTTPMethod, _ url: String, body: JSON? = nil, authorization: String? = nil) async throws -> (Int, JSON?) {
    var request = HTTPClientRequest(url: url)
    request.method = method
    if let authorization { request.headers.add(name: "Authorization", value: authorization) }
    if let body {
        request.headers.add(name: "Content-Type", value: "application/json")
        request.body = .bytes(ByteBuffer(bytes: body.serializedBytes()))
    }
    let response = try await HTTPClient.shared.execute(request, timeout: .seconds(60))
    let bytes = try await response.body.collect(upTo: 64 << 20)
    return (Int(response.status.code), try? JSON.parse(bytes: Array(bytes.readableBytesView)))
}

struct SyncTestError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// Writes `count` user records as JSON Lines: id u0000001…, username, age, address, updated_at
/// (ten records share each updated_at, so cursors must handle ties).
func writeUsers(_ path: String, count: Int, offset: Int = 0) throws {
    var out = ""
    out.reserveCapacity(count * 100)
    for i in offset..<(offset + count) {
        out += #"{"id":"u\#(String(format: "%07d", i))","username":"user\#(i)","age":\#(18 + i % 60),"address":"\#(i) Main Street","updated_at":\#(1_000_000 + i / 10)}"#
        out += "\n"
    }
    try out.write(toFile: path, atomically: true, encoding: .utf8)
}

/// Changes a file of ``writeUsers(_:count:offset:)``: lines 10 and 21 deleted (ids u0000010 and
/// u0000021), line 5 updated (an age of 1000, the old age as `was`), a record `new` created.
func editUsers(_ path: String) throws {
    var lines = try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n").map(String.init)
    lines.remove(at: 10)
    lines.remove(at: 20)
    lines[5] = lines[5].replacingOccurrences(of: "\"age\":", with: "\"age\":1000,\"was\":")
    lines.append(#"{"id":"new","age":1}"#)
    try (lines.joined(separator: "\n") + "\n").write(toFile: path, atomically: true, encoding: .utf8)
}

/// Fills a SQLite table `users` like ``writeUsers(_:count:offset:)``.
func writeUsersTable(_ path: String, count: Int) throws {
    let queue = try DatabaseQueue(path: path)
    try queue.write { db in
        try db.execute(sql: "CREATE TABLE users (id TEXT PRIMARY KEY, username TEXT NOT NULL, age INTEGER, address TEXT, updated_at INTEGER NOT NULL)")
        let statement = try db.makeStatement(sql: "INSERT INTO users VALUES (?, ?, ?, ?, ?)")
        for i in 0..<count {
            try statement.execute(arguments: ["u" + String(format: "%07d", i), "user\(i)", 18 + i % 60, "\(i) Main Street", 1_000_000 + i / 10])
        }
    }
    try queue.close()
}

func countRows(_ path: String, _ table: String = "users") throws -> Int {
    let queue = try DatabaseQueue(path: path)
    defer { try? queue.close() }
    return try queue.read { try Int.fetchOne($0, sql: "SELECT count(*) FROM \(table)")! }
}

func fileBytes(_ path: String) -> Data? { FileManager.default.contents(atPath: path) }

/// A long-running `ferry` command (`sync --follow`, `run`), its stdout and stderr collected as it goes.
final class LongRunning {
    let process: Process
    let log = LockedData()
    let out = LockedData()

    init(_ arguments: [String], in dir: TempDir, environment: [String: String] = [:]) {
        process = Ferry.start(arguments, in: dir.path, environment: environment)
        log.collect((process.standardError as! Pipe).fileHandleForReading)
        out.collect((process.standardOutput as! Pipe).fileHandleForReading)
    }

    var stderr: String { log.text }
    var stdout: String { out.text }

    /// Waits, without holding a thread, for the process to end and all it printed to be collected.
    func ended() async {
        await process.exited()
        await log.ended()
        await out.ended()
    }

    /// The port printed after `what` (`status at`, `webhook deliveries at`).
    func port(_ what: String) throws -> Int {
        let regex = try Regex(what + #" http://127\.0\.0\.1:(\d+)"#)
        let deadline = Date().addingTimeInterval(30)
        while Date() < deadline && process.isRunning {
            if let match = stderr.firstMatch(of: regex), let port = Int(match.output[1].substring ?? "") { return port }
            usleep(20_000)
        }
        throw SyncTestError("ferry printed no \(what) port: \(stderr)")
    }

    /// SIGTERM, then the exit status (nil if it did not stop within 15 s).
    func terminate() -> Int32? {
        kill(process.processIdentifier, SIGTERM)
        let deadline = Date().addingTimeInterval(15)
        while process.isRunning && Date() < deadline { usleep(20_000) }
        if process.isRunning {
            kill(process.processIdentifier, SIGKILL)
            return nil
        }
        return process.terminationStatus
    }

    deinit { if process.isRunning { kill(process.processIdentifier, SIGKILL) } }
}
