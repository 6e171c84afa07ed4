import FerryCore
import FerryTestSupport
import Foundation
import HTTPTypes
import HummingbirdTesting
import NIOCore
import Testing

/// A `ferry serve` whose PostgreSQL is behind a ``FaultProxy``: connections reset, dropped,
/// answers cut or slowed. Every write is answered, 201 or 503 (never a 500, never a hang);
/// nothing acknowledged is lost; the server recovers by itself when the network does.
@Suite(.serialized, .enabled(if: PostgresCluster.enabled, "PostgreSQL is not installed: its tests are skipped (CI sets FERRY_REQUIRE_POSTGRES=1 and runs them)"))
struct PostgresFaultTests {
    static let alice: HTTPFields = [.authorization: "Basic " + Data("alice:secret".utf8).base64EncodedString(),
                                    .contentType: "application/json"]
    static let records = "/v1/buckets/b/collections/c/records/"

    @Test func writesDuringNetworkFaultsAre503AndNothingAcknowledgedIsLost() async throws {
        let cluster = try PostgresCluster.shared()
        let direct = try cluster.createDatabase("faults")
        let proxy = try FaultProxy(upstreamPort: cluster.port)
        defer { proxy.stop() }
        let url = direct.replacingOccurrences(of: ":\(cluster.port)/", with: ":\(proxy.port)/") + "?connect_timeout=3&statement_timeout=5000"
        let server = try ServeProcess(data: temporaryDirectory("pg-faults"),
                                       environment: ["FERRY_DATABASE": url, "FERRY_PASSWORD_ROUNDS": "1000", "FERRY_REQUEST_TIMEOUT": "10",
                                                     "SWIFT_BACKTRACE": "enable=yes,interactive=no"])
        defer { server.kill(SIGKILL) }
        let client = server.client()
        defer { Task { try? await client.shutdown() } }
        #expect(try await client.put("/v1/buckets/b", headers: Self.alice, body: ByteBuffer()).status == .created)
        #expect(try await client.put("/v1/buckets/b/collections/c", headers: Self.alice, body: ByteBuffer()).status == .created)

        var acknowledged: [String] = []
        var refused = 0
        var n = 0
        /// One write: 201 (kept as acknowledged) or 503 with Retry-After; anything else fails the test.
        func write() async throws {
            n += 1
            let id = "r\(n)"
            let started = ContinuousClock.now
            let answer: TestClient.Response
            do {
                answer = try await client.put(Self.records + id, headers: Self.alice, body: ByteBuffer(string: #"{"data":{"n":\#(n)}}"#))
            } catch {
                // A server that died (trapped) closes the client's connection: say why it died
                // (its backtrace takes a few seconds to print).
                for _ in 0..<100 where server.process.isRunning { try? await Task.sleep(for: .milliseconds(100)) }
                try? await Task.sleep(for: .milliseconds(500))
                Issue.record("\(id): \(error); the server \(server.process.isRunning ? "runs" : "ended"), it printed:\n\(server.printed.suffix(20_000))")
                throw error
            }
            #expect(ContinuousClock.now - started < .seconds(30), "\(id) took \(ContinuousClock.now - started)")
            switch answer.status {
            case .created: acknowledged.append(id)
            case .serviceUnavailable:
                refused += 1
                #expect(answer.headers[.retryAfter] != nil)
            default:
                Issue.record("\(id): \(answer.status) \(String(buffer: answer.body ?? ByteBuffer()))")
            }
        }
        for _ in 0..<5 { try await write() }
        #expect(acknowledged.count == 5)

        let faults: [FaultProxy.Fault] = [.drop, .resetAnswerAfter(bytes: 50), .resetRequestAfter(bytes: 30),
                                          .truncateAnswerAfter(bytes: 200), .delay(milliseconds: 100)]
        for fault in faults {
            proxy.override = fault
            proxy.cutAll(reset: fault != .truncateAnswerAfter(bytes: 200))
            for _ in 0..<4 { try await write() }
        }
        #expect(refused > 0, "the faults refused no write")

        // The network is back: the server recovers by itself.
        proxy.override = nil
        let deadline = ContinuousClock.now + .seconds(60)
        var recovered = false
        while !recovered && ContinuousClock.now < deadline {
            let before = acknowledged.count
            try await write()
            recovered = acknowledged.count > before
            if !recovered { try await Task.sleep(for: .milliseconds(200)) }
        }
        #expect(recovered)
        for _ in 0..<5 { try await write() }

        // Everything acknowledged is there, read back through a direct connection to the database.
        let stored = Set(try cluster.psql(direct.split(separator: "/").last.map(String.init)!,
                                          "SELECT id FROM objects WHERE resource_name = 'record' AND NOT deleted ORDER BY id")
            .split(separator: "\n").map(String.init))
        let missing = Set(acknowledged).subtracting(stored)
        #expect(missing.isEmpty, "acknowledged but lost: \(missing.sorted())")
        #expect(proxy.faultsInjected > 0)
        // A network fault never takes the server down.
        #expect(server.process.isRunning, "the server ended; it printed:\n\(server.printed.suffix(20_000))")
    }
}
