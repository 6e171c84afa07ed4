import FerryCore
import FerryTestSupport
import FerryServer
import Foundation
import HTTPTypes
import HummingbirdTesting
import NIOCore
import Testing

/// A raw TCP connection to loopback, for requests no well-behaved client sends.
final class RawConnection {
    let fd: Int32

    init(port: Int) throws {
        fd = try Self.connectLoopback(port)
        var timeout = timeval(tv_sec: 10, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    }

    /// A TCP socket connected to 127.0.0.1:`port`.
    static func connectLoopback(_ port: Int) throws -> Int32 {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let result = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard result == 0 else {
            close(fd)
            throw CocoaError(.fileReadUnknown)
        }
        return fd
    }

    deinit { close(fd) }

    func send(_ text: String) {
        _ = text.utf8CString.withUnsafeBufferPointer { Glibc.send(fd, $0.baseAddress, $0.count - 1, 0) }
    }

    /// What the server answers before it closes or 10 s pass.
    func receive() -> String {
        var out = [UInt8]()
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = recv(fd, &buffer, buffer.count, 0)
            if n <= 0 { break }
            out += buffer[0..<n]
            if String(decoding: out, as: UTF8.self).contains("\r\n\r\n") { break }
        }
        return String(decoding: out, as: UTF8.self)
    }
}

/// Limits, TLS and logs of a real `ferry serve` process.
@Suite(.serialized) struct LimitsProcessTests {
    static let alice: HTTPFields = [.authorization: "Basic " + Data("alice:secret".utf8).base64EncodedString()]
    static let bob: HTTPFields = [.authorization: "Basic " + Data("bob:secret".utf8).base64EncodedString()]

    static func dataFolder() throws -> String { try temporaryDirectory("limits") }

    @Test func rateLimitAnswers429WithRetryAfter() async throws {
        // Three an hour: one comes back every 20 minutes, so however slowly a loaded machine
        // sends the first three (at 3/60 a request came back every 20 s, and in CI it did), the
        // fourth is refused.
        let server = try ServeProcess(data: Self.dataFolder(), extra: ["--rate-limit", "3/3600"])
        defer { server.kill(SIGKILL) }
        let client = server.client()
        defer { Task { try? await client.shutdown() } }
        for _ in 0..<3 { #expect(try await client.get("/v1/", headers: Self.alice).status == .ok) }
        let refused = try await client.put("/v1/buckets/b", headers: Self.alice, body: ByteBuffer())
        // How long is left of the 20 minutes depends on how fast the three went.
        let retryAfter = Int(refused.headers[.retryAfter] ?? "") ?? 0
        #expect(refused.status.code == 429 && (1...1200).contains(retryAfter), "Retry-After: \(retryAfter)")
        let body = try JSON.parse(bytes: Array(refused.body!.readableBytesView))
        #expect(body["errno"] == 117)
        // Another principal has a bucket of its own; the refused write changed nothing.
        #expect(try await client.get("/v1/buckets/b", headers: Self.bob).status == .forbidden)
        #expect(try await client.get("/v1/", headers: Self.bob).status == .ok)
    }

    @Test func aBodyThatDoesNotArriveGets408AndLoadBringsBackoff() async throws {
        let server = try ServeProcess(data: Self.dataFolder(), environment: ["FERRY_BODY_TIMEOUT": "3", "FERRY_BUSY_THRESHOLD": "1", "FERRY_BUSY_BACKOFF": "7"])
        defer { server.kill(SIGKILL) }
        let slow = try RawConnection(port: server.port)
        let started = ContinuousClock.now
        slow.send("PUT /v1/buckets/slow HTTP/1.1\r\nHost: x\r\nAuthorization: Basic \(Data("alice:secret".utf8).base64EncodedString())\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"da")
        // While the slow request is in flight (once the server has read its head; a loaded
        // machine may take a while), the server is over its threshold of 1.
        let client = server.client()
        defer { Task { try? await client.shutdown() } }
        var backoff: String? = nil
        while backoff == nil && ContinuousClock.now - started < .milliseconds(2500) {
            try await Task.sleep(for: .milliseconds(100))
            let busy = try await client.get("/v1/", headers: Self.alice)
            #expect(busy.status == .ok)
            backoff = busy.headers[HTTPField.Name("Backoff")!]
        }
        #expect(backoff == "7")
        let answer = slow.receive()
        #expect(answer.hasPrefix("HTTP/1.1 408"), "\(answer)")
        #expect(try await client.get("/v1/buckets/slow", headers: Self.alice).status == .forbidden)
        // Alone again: no Backoff.
        #expect(try await client.get("/v1/", headers: Self.alice).headers[HTTPField.Name("Backoff")!] == nil)
    }

    /// Runs a program to its end: its exit status, and its stdout followed by its stderr.
    static func run(_ executable: String, _ arguments: [String]) async throws -> (Int32, String) {
        let result = try await Spawn.detached(executable, arguments)
        return (result.status, result.stdout + result.stderr)
    }

    @Test func servesHTTPSWithTheGivenCertificate() async throws {
        let folder = try Self.dataFolder()
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        let (cert, key) = (folder + "/cert.pem", folder + "/key.pem")
        let made = try await Self.run("/usr/bin/openssl", ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert,
                                                     "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"])
        #expect(made.0 == 0, "\(made.1)")
        let server = try ServeProcess(data: folder + "/data", extra: ["--tls-cert", cert, "--tls-key", key])
        defer { server.kill(SIGKILL) }
        #expect(server.printed.contains("https://127.0.0.1:\(server.port)/v1/"))
        let secure = try await Self.run("/usr/bin/curl", ["-s", "--cacert", cert, "-u", "alice:secret", "https://127.0.0.1:\(server.port)/v1/"])
        #expect(secure.0 == 0 && (try? JSON.parse(secure.1))?["project_name"] == "ferry", "\(secure.1)")
        // The links it writes carry the scheme the client used (they said http:// before).
        #expect((try? JSON.parse(secure.1))?["url"] == .string("https://127.0.0.1:\(server.port)/v1/"), "\(secure.1)")
        let base = "https://127.0.0.1:\(server.port)/v1/buckets/b"
        for (method, url) in [("PUT", base), ("PUT", base + "/collections/c"), ("PUT", base + "/collections/c/records/r1"),
                              ("PUT", base + "/collections/c/records/r2")] {
            #expect(try await Self.run("/usr/bin/curl", ["-s", "-f", "--cacert", cert, "-u", "alice:secret", "-X", method, url]).0 == 0)
        }
        let page = try await Self.run("/usr/bin/curl", ["-s", "-D", "-", "-o", "/dev/null", "--cacert", cert, "-u", "alice:secret",
                                                  base + "/collections/c/records?_limit=1"])
        #expect(page.1.lowercased().contains("next-page: https://127.0.0.1:\(server.port)/v1/buckets/b/collections/c/records?"), "\(page.1)")
        // Plain HTTP to the TLS port gets no API answer.
        let plain = try await Self.run("/usr/bin/curl", ["-s", "-m", "5", "http://127.0.0.1:\(server.port)/v1/"])
        #expect((try? JSON.parse(plain.1))?["project_name"] == nil)
        // A certificate that is not there stops the server with one clear line.
        let bad = try await Self.run(Ferry.binary, ["serve", "--port", "0", "--data", folder + "/data2", "--tls-cert", folder + "/missing.pem", "--tls-key", key])
        #expect(bad.0 != 0 && bad.1.contains("tls_cert: cannot read a PEM certificate"), "\(bad.1)")
    }

    @Test func secretsNeverReachTheLog() async throws {
        let token = "fy_supersecrettoken0123456789abcdef"
        let hash = try await Self.run(Ferry.binary, ["token", "svc"])
        #expect(hash.0 == 0 && hash.1.contains("svc:"))
        let server = try ServeProcess(data: Self.dataFolder(), logLevel: "trace", environment: [
            "FERRY_PASSWORD_ROUNDS": "1000", "FERRY_TOKENS": "svc:" + TokenHash.sha256Hex(token),
        ])
        defer { server.kill(SIGKILL) }
        let client = server.client()
        defer { Task { try? await client.shutdown() } }
        let password = "Corr3ct-Horse-Battery"
        #expect(try await client.put("/v1/accounts/dana", body: ByteBuffer(string: #"{"data": {"password": "\#(password)"}}"#)).status == .created)
        let basic = "Basic " + Data("dana:\(password)".utf8).base64EncodedString()
        #expect(try await client.get("/v1/", headers: [.authorization: basic]).status == .ok)
        #expect(try await client.get("/v1/", headers: [.authorization: "Basic " + Data("dana:\(password)x".utf8).base64EncodedString()]).status == .unauthorized)
        #expect(try await client.get("/v1/", headers: [.authorization: "Bearer " + token]).status == .ok)
        #expect(try await client.get("/v1/", headers: [.authorization: "Bearer " + token + "x"]).status == .unauthorized)
        try await Task.sleep(nanoseconds: 300_000_000)
        let log = server.printed
        #expect(log.contains("ferry.route"), "the requests were not logged at all: \(log.prefix(500))")
        for secret in [password, token, Data("dana:\(password)".utf8).base64EncodedString(), "Authorization", "authorization:"] {
            #expect(!log.contains(secret), "the log holds \(secret)")
        }
    }
}
