import FerryCore
import FerryTestSupport
import Foundation
import HTTPTypes
import HummingbirdTesting
import NIOCore
import Testing

/// A `ferry serve` child process on a data folder.
final class ServerProcess: @unchecked Sendable {
    let process = Process()
    let output = Pipe()
    private(set) var port = 0
    private let log = NSLock()
    private var logText = ""

    /// Everything the server printed so far.
    var printed: String { log.lock(); defer { log.unlock() }; return logText }

    /// The `ferry` binary built next to the test bundle.
    static var binary: String {
        if let path = ProcessInfo.processInfo.environment["FERRY_BIN"] { return path }
        let exe = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        return URL(fileURLWithPath: exe).deletingLastPathComponent().appendingPathComponent("ferry").path
    }

    init(data: String, extra: [String] = [], logLevel: String = "notice", environment: [String: String] = [:]) throws {
        process.executableURL = URL(fileURLWithPath: Self.binary)
        process.arguments = ["serve", "--port", "0", "--data", data, "--log-level", logLevel] + extra
        var env = ProcessInfo.processInfo.environment
        for (k, v) in environment { env[k] = v }
        process.environment = env
        process.standardOutput = output
        process.standardError = output
        try process.run()
        // The notice line names the URL with the port the OS picked.
        var text = ""
        let deadline = Date().addingTimeInterval(30)
        while Date() < deadline {
            let chunk = output.fileHandleForReading.availableData
            if chunk.isEmpty { if !process.isRunning { break }; continue }
            text += String(decoding: chunk, as: UTF8.self)
            if let range = text.range(of: #"127\.0\.0\.1:(\d+)/v1/"#, options: .regularExpression) {
                let match = text[range]
                port = Int(match.split(separator: ":")[1].split(separator: "/")[0])!
                // Keep reading for the server's whole life: a full pipe would block it.
                logText = text
                let handle = output.fileHandleForReading
                Thread.detachNewThread { [self] in
                    while true {
                        let chunk = handle.availableData
                        if chunk.isEmpty { return }
                        log.lock()
                        logText += String(decoding: chunk, as: UTF8.self)
                        log.unlock()
                    }
                }
                return
            }
        }
        process.terminate()
        throw CocoaError(.fileReadUnknown, userInfo: [NSLocalizedDescriptionKey: "ferry serve did not start: \(text)"])
    }

    func kill(_ signal: Int32) {
        Foundation.kill(process.processIdentifier, signal)
    }

    func waitForExit(timeout: TimeInterval) -> Int32? {
        let deadline = Date().addingTimeInterval(timeout)
        while process.isRunning && Date() < deadline { usleep(10_000) }
        return process.isRunning ? nil : process.terminationStatus
    }

    func client() -> TestClient {
        let client = TestClient(host: "127.0.0.1", port: port, configuration: .init(timeout: .seconds(90)))
        client.connect()
        return client
    }
}

@Suite(.serialized) struct ProcessTests {
    let auth: HTTPFields = [.authorization: "Basic " + Data("alice:secret".utf8).base64EncodedString()]

    /// Invariant 3: every write answered 2xx is still there after `kill -9` and a restart.
    @Test func acknowledgedWritesSurviveKill9() async throws {
        let data = try temporaryDirectory("crash")
        let first = try ServerProcess(data: data)
        let client = first.client()
        #expect(try await client.put("/v1/buckets/b", headers: auth, body: ByteBuffer()).status == .created)
        #expect(try await client.put("/v1/buckets/b/collections/c", headers: auth, body: ByteBuffer()).status == .created)
        var acknowledged: [String] = []
        let killer = Task {
            try await Task.sleep(for: .milliseconds(400))
            first.kill(SIGKILL)
        }
        var i = 0
        while true {
            let id = "r\(i)"
            do {
                let response = try await client.put("/v1/buckets/b/collections/c/records/\(id)", headers: auth,
                                                    body: ByteBuffer(string: #"{"data": {"n": \#(i)}}"#))
                if response.status == .created { acknowledged.append(id) }
            } catch {
                break  // the server died mid-request: that write was never acknowledged
            }
            i += 1
        }
        _ = try await killer.value
        _ = first.waitForExit(timeout: 10)
        try? await client.shutdown()
        #expect(acknowledged.count > 0)

        let second = try ServerProcess(data: data)
        defer { second.kill(SIGKILL) }
        let reader = second.client()
        let response = try await reader.get("/v1/buckets/b/collections/c/records?_limit=10000", headers: auth)
        let ids = Set(try JSON.parse(bytes: Array(response.body!.readableBytesView))["data"]!.arrayValue!.map { $0["id"]!.stringValue! })
        let missing = acknowledged.filter { !ids.contains($0) }
        #expect(missing.isEmpty, Comment(rawValue: "lost \(missing.count) of \(acknowledged.count) acknowledged writes"))
        try? await reader.shutdown()
    }

    /// SIGTERM stops the server cleanly (exit 0) and keeps the data.
    @Test func sigtermShutsDownGracefully() async throws {
        let data = try temporaryDirectory("term")
        let server = try ServerProcess(data: data)
        let client = server.client()
        #expect(try await client.put("/v1/buckets/kept", headers: auth, body: ByteBuffer()).status == .created)
        try? await client.shutdown()
        server.kill(SIGTERM)
        #expect(server.waitForExit(timeout: 20) == 0)
        let again = try ServerProcess(data: data)
        defer { again.kill(SIGKILL) }
        let reader = again.client()
        #expect(try await reader.get("/v1/buckets/kept", headers: auth).status == .ok)
        try? await reader.shutdown()
    }

    /// The first SIGTERM waits for the requests still open (here one whose body never finishes
    /// arriving); a second signal ends the server at once, with 130, as every long-running
    /// command does.
    @Test func aSecondSignalStopsAtOnceWith130() async throws {
        let server = try ServerProcess(data: try temporaryDirectory("second-signal"))
        defer { server.kill(SIGKILL) }
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = UInt16(server.port).bigEndian
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        #expect(connected == 0)
        let partial = "PUT /v1/buckets/b HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"
        #expect(partial.withCString { send(fd, $0, strlen($0), 0) } == partial.utf8.count)
        try await Task.sleep(for: .milliseconds(300))  // the request has reached the server
        server.kill(SIGTERM)
        for _ in 0..<600 where !server.printed.contains("SIGTERM: stopping once open requests and streams end") {
            try await Task.sleep(for: .milliseconds(100))
        }
        #expect(server.printed.contains("SIGTERM: stopping once open requests and streams end"), "\(server.printed)")
        try await Task.sleep(for: .milliseconds(500))
        #expect(server.process.isRunning, "the server waits for the open request: \(server.printed)")
        server.kill(SIGINT)
        for _ in 0..<600 where server.process.isRunning { try await Task.sleep(for: .milliseconds(100)) }
        #expect(!server.process.isRunning && server.process.terminationStatus == 130, "\(server.printed)")
        #expect(server.printed.contains("second signal: stopping now"), "\(server.printed)")
    }

    /// A bad flag is one clear line and a non-zero exit.
    @Test func badFlagExitsNonZeroWithOneLine() throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: ServerProcess.binary)
        process.arguments = ["serve", "--port", "http"]
        let pipe = Pipe()
        process.standardError = pipe
        process.standardOutput = pipe
        try process.run()
        process.waitUntilExit()
        let text = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        #expect(process.terminationStatus != 0)
        #expect(text.contains("--port: port must be a whole number"))
    }
}
