import AsyncHTTPClient
import FerryCore
import FerryTestSupport
import Foundation
import GRDB
import NIOCore
import NIOHTTP1
import Testing

/// A temporary folder, removed when the test is done with it.
final class TempDir {
    let path: String
    init() throws {
        path = try temporaryDirectory("sync")
    }
    deinit { try? FileManager.default.removeItem(atPath: path) }
    func file(_ name: String) -> String { path + "/" + name }
}

/// The `ferry` binary built next to the test bundle (or FERRY_BIN).
enum Ferry {
    static var binary: String {
        if let path = ProcessInfo.processInfo.environment["FERRY_BIN"] { return path }
        let exe = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        return URL(fileURLWithPath: exe).deletingLastPathComponent().appendingPathComponent("ferry").path
    }

    struct Result {
        var status: Int32
        var stdout: String
        var stderr: String
    }

    /// Runs `ferry ARGS` in `directory` and waits for it, on a thread of its own: a test waiting
    /// here never holds a thread of Swift's cooperative pool (as many as cores), which every
    /// in-process server and client of the other tests running meanwhile needs.
    static func run(_ arguments: [String], in directory: String, environment: [String: String] = [:]) async throws -> Result {
        try await withCheckedThrowingContinuation { continuation in
            Thread.detachNewThread {
                continuation.resume(with: Swift.Result { try runBlocking(arguments, in: directory, environment: environment) })
            }
        }
    }

    /// ``run(_:in:environment:)``, blocking the calling thread (``Spawn``: Foundation's
    /// `waitUntilExit()` once never returned here, the child long gone).
    private static func runBlocking(_ arguments: [String], in directory: String, environment: [String: String]) throws -> Result {
        let result = try Spawn.run(binary, arguments, in: directory, environment: childEnvironment(environment))
        return Result(status: result.status, stdout: result.stdout, stderr: result.stderr)
    }

    /// The environment of a `ferry` child: this process's without the credentials a test may have
    /// set, plus `extra`.
    static func childEnvironment(_ extra: [String: String]) -> [String: String] {
        var env = ProcessInfo.processInfo.environment
        env.removeValue(forKey: "FERRY_SOURCE_AUTH")
        env.removeValue(forKey: "FERRY_TARGET_AUTH")
        env.removeValue(forKey: "FERRY_WEBHOOK_SECRET")
        for (k, v) in extra { env[k] = v }
        return env
    }

    static func start(_ arguments: [String], in directory: String, environment: [String: String] = [:], quiet: Bool = false) -> Process {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: binary)
        process.arguments = arguments
        process.currentDirectoryURL = URL(fileURLWithPath: directory)
        process.environment = childEnvironment(environment)
        if quiet {
            process.standardOutput = FileHandle.nullDevice
            process.standardError = FileHandle.nullDevice
        } else {
            process.standardOutput = Pipe()
            process.standardError = Pipe()
        }
        try! process.run()
        return process
    }
}

extension Process {
    /// Waits for the process to end on a thread of its own. A test that waited with
    /// `waitUntilExit()` held a thread of Swift's cooperative pool (there are as many as cores):
    /// two kill -9 tests doing so at once left none for the in-process servers and clients of
    /// the tests running beside them, and the whole suite hung (it did, in a fresh-clone run).
    func exited() async {
        let process = UncheckedProcess(process: self)
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            Thread.detachNewThread {
                process.process.waitUntilExit()
                continuation.resume()
            }
        }
    }
}

/// A `Process` handed to the thread that waits for it (it is not `Sendable`; only
/// `waitUntilExit()` is called on it there).
private struct UncheckedProcess: @unchecked Sendable {
    let process: Process
}

extension DispatchGroup {
    /// Waits for the group without holding a thread (see ``Process/exited()``).
    func done() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            notify(queue: .global()) { continuation.resume() }
        }
    }
}

final class LockedData: @unchecked Sendable {
    private let lock = NSLock()
    private var data = Data()
    func set(_ d: Data) { lock.lock(); data = d; lock.unlock() }
    func append(_ d: Data) { lock.lock(); data.append(d); lock.unlock() }
    func get() -> Data { lock.lock(); defer { lock.unlock() }; return data }

    /// Appends everything `handle` gives until its end, on a thread of its own (a child's full
    /// pipe would block it).
    func collect(_ handle: FileHandle) {
        Thread.detachNewThread {
            while true {
                let chunk = handle.availableData
                if chunk.isEmpty { return }
                self.append(chunk)
            }
        }
    }
}

/// A `ferry serve` child process on a fresh data folder.
final class Server {
    let process = Process()
    let output = Pipe()
    let directory: TempDir
    private(set) var port = 0

    /// - Parameters:
    ///   - directory: the data folder of an earlier server (a restart); a new one when nil.
    ///   - port: the port to take again after a restart; 0 picks a free one.
    init(directory: TempDir? = nil, port: Int = 0, extra: [String] = [], environment: [String: String] = [:]) throws {
        self.directory = try directory ?? TempDir()
        process.executableURL = URL(fileURLWithPath: Ferry.binary)
        process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        process.arguments = ["serve", "--port", String(port), "--data", self.directory.path, "--log-level", "notice"] + extra
        self.port = try launch(process, output: output, port: #"127\.0\.0\.1:(\d+)/v1/"#, what: "ferry serve")
    }

    deinit {
        process.stop()
    }

    /// `kill -9`: the server dies mid-request, as in a crash.
    func crash() {
        process.stop(signal: SIGKILL)
    }

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

/// Starts a child process that prints the port it listens on, and returns that port.
///
/// Its output is drained on a thread of its own for its whole life (a full pipe would block
/// it); the wait for the line naming the port has a deadline.
/// - Parameters:
///   - pattern: a regular expression whose first group is the port.
///   - log: collects everything the process prints, stdout and stderr together.
func launch(_ process: Process, output: Pipe, port pattern: String, what: String, log: LockedData = LockedData()) throws -> Int {
    let regex = try Regex(pattern)
    process.standardOutput = output
    process.standardError = output
    try process.run()
    log.collect(output.fileHandleForReading)
    let deadline = Date().addingTimeInterval(30)
    while Date() < deadline && process.isRunning {
        let text = String(decoding: log.get(), as: UTF8.self)
        if let match = text.firstMatch(of: regex), let group = match.output[1].substring, let port = Int(group) {
            return port
        }
        usleep(20_000)
    }
    kill(process.processIdentifier, SIGKILL)
    throw SyncTestError("\(what) did not start: \(String(decoding: log.get(), as: UTF8.self))")
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

    var stderr: String { String(decoding: log.get(), as: UTF8.self) }
    var stdout: String { String(decoding: out.get(), as: UTF8.self) }

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
