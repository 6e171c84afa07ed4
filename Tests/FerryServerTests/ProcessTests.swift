import FerryCore
import FerryTestSupport
import Foundation
import HTTPTypes
import HummingbirdTesting
import NIOConcurrencyHelpers
import NIOCore
import Testing

/// The server tests' client of a live server.
extension ServeProcess {
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
        let first = try ServeProcess(data: data)
        let client = first.client()
        #expect(try await client.put("/v1/buckets/b", headers: auth, body: ByteBuffer()).status == .created)
        #expect(try await client.put("/v1/buckets/b/collections/c", headers: auth, body: ByteBuffer()).status == .created)
        var acknowledged: [String] = []
        // Killed 400 ms after the first write is acknowledged (not 400 ms after the start: on a
        // loaded machine the first answer can take longer, and a test with no acknowledged write
        // proves nothing), while writes are in flight.
        let firstAcknowledged = NIOLockedValueBox(false)
        let killer = Task {
            // At most a minute: a server that acknowledges nothing is killed all the same (and the
            // test fails below), rather than written to for ever.
            let giveUp = ContinuousClock.now + .seconds(60)
            while !firstAcknowledged.withLockedValue({ $0 }), ContinuousClock.now < giveUp { try await Task.sleep(for: .milliseconds(10)) }
            try await Task.sleep(for: .milliseconds(400))
            first.kill(SIGKILL)
        }
        var i = 0
        while true {
            let id = "r\(i)"
            do {
                let response = try await client.put("/v1/buckets/b/collections/c/records/\(id)", headers: auth,
                                                    body: ByteBuffer(string: #"{"data": {"n": \#(i)}}"#))
                if response.status == .created {
                    acknowledged.append(id)
                    firstAcknowledged.withLockedValue { $0 = true }
                }
            } catch {
                break  // the server died mid-request: that write was never acknowledged
            }
            i += 1
        }
        _ = try await killer.value
        _ = first.waitForExit(timeout: 10)
        try? await client.shutdown()
        #expect(acknowledged.count > 0)

        let second = try ServeProcess(data: data)
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
        let server = try ServeProcess(data: data)
        let client = server.client()
        #expect(try await client.put("/v1/buckets/kept", headers: auth, body: ByteBuffer()).status == .created)
        try? await client.shutdown()
        server.kill(SIGTERM)
        #expect(server.waitForExit(timeout: 20) == 0)
        let again = try ServeProcess(data: data)
        defer { again.kill(SIGKILL) }
        let reader = again.client()
        #expect(try await reader.get("/v1/buckets/kept", headers: auth).status == .ok)
        try? await reader.shutdown()
    }

    /// The first SIGTERM waits for the requests still open (here one whose body never finishes
    /// arriving); a second signal ends the server at once, with 130, as every long-running
    /// command does.
    @Test func aSecondSignalStopsAtOnceWith130() async throws {
        let server = try ServeProcess(data: try temporaryDirectory("second-signal"))
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
    @Test func badFlagExitsNonZeroWithOneLine() async throws {
        let result = try await Spawn.detached(Ferry.binary, ["serve", "--port", "http"])
        #expect(result.status != 0)
        #expect((result.stdout + result.stderr).contains("--port: port must be a whole number"))
    }
}
