import FerryCore
import FerryTestSupport
import Foundation
import HTTPTypes
import HummingbirdTesting
import NIOCore
import Testing

/// A `ferry serve` whose data folder fills up: writes answer 503 with a clear error, reads go
/// on, nothing acknowledged is lost (even across a `kill -9`), and writes resume by themselves
/// once space comes back. The data folder is a small tmpfs the test mounts (root; CI is root).
@Suite(.serialized)
struct DiskFaultTests {
    static let alice: HTTPFields = [.authorization: "Basic " + Data("alice:secret".utf8).base64EncodedString(),
                                    .contentType: "application/json"]
    static let records = "/v1/buckets/b/collections/c/records"

    static func ids(_ client: TestClient) async throws -> Set<String> {
        let answer = try await client.get(records + "?_fields=id&_limit=10000", headers: alice)
        #expect(answer.status == .ok)
        let body = try JSON.parse(bytes: Array(answer.body!.readableBytesView))
        return Set((body["data"]?.arrayValue ?? []).compactMap { $0["id"]?.stringValue })
    }

    @Test func aFullDiskRefusesWritesWith503KeepsReadsAndRecovers() async throws {
        guard let disk = SmallDisk.orSkip(megabytes: 4, "DiskFaultTests") else { return }
        defer { disk.remove() }
        let data = disk.path + "/data"
        var server = try ServerProcess(data: data, environment: ["FERRY_PASSWORD_ROUNDS": "1000"])
        defer { server.kill(SIGKILL) }
        var client = server.client()
        #expect(try await client.put("/v1/buckets/b", headers: Self.alice, body: ByteBuffer()).status == .created)
        #expect(try await client.put("/v1/buckets/b/collections/c", headers: Self.alice, body: ByteBuffer()).status == .created)

        // 50 KB records until the disk is full.
        let pad = String(repeating: "x", count: 50_000)
        var acknowledged: Set<String> = []
        var full: TestClient.Response? = nil
        for i in 0..<400 where full == nil {
            let answer = try await client.put(Self.records + "/r\(i)", headers: Self.alice, body: ByteBuffer(string: #"{"data":{"pad":"\#(pad)"}}"#))
            if answer.status == .created { acknowledged.insert("r\(i)") } else { full = answer }
        }
        let refusal = try #require(full, "4 MB took 400 records of 50 KB")
        #expect(refusal.status == .serviceUnavailable)
        #expect(refusal.headers[.retryAfter] != nil)
        let message = (try JSON.parse(bytes: Array(refusal.body!.readableBytesView)))["message"]?.stringValue ?? ""
        #expect(message.contains("disk is full"), "\(message)")
        #expect(acknowledged.count > 5)

        // Reads go on; a small write is refused too while the disk is full, and changes nothing.
        #expect(try await Self.ids(client) == acknowledged)
        #expect(try await client.get(Self.records + "/r0", headers: Self.alice).status == .ok)

        // Space comes back: writes resume without a restart.
        try disk.resize(megabytes: 64)
        let deadline = ContinuousClock.now + .seconds(60)
        var resumed = false
        while !resumed && ContinuousClock.now < deadline {
            resumed = try await client.put(Self.records + "/after", headers: Self.alice, body: ByteBuffer(string: #"{"data":{}}"#)).status == .created
            if !resumed { try await Task.sleep(for: .milliseconds(200)) }
        }
        #expect(resumed)
        acknowledged.insert("after")
        #expect(try await Self.ids(client) == acknowledged)

        // Acknowledged writes survive a crash after the disk was full.
        server.kill(SIGKILL)
        _ = server.waitForExit(timeout: 30)
        try? await client.shutdown()
        server = try ServerProcess(data: data, environment: ["FERRY_PASSWORD_ROUNDS": "1000"])
        client = server.client()
        #expect(try await Self.ids(client) == acknowledged)
        try? await client.shutdown()
    }
}
