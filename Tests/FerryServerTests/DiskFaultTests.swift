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
        var server = try ServeProcess(data: data, environment: ["FERRY_PASSWORD_ROUNDS": "1000"])
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

        // Reads go on; the refused write changed nothing.
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
        server = try ServeProcess(data: data, environment: ["FERRY_PASSWORD_ROUNDS": "1000"])
        client = server.client()
        #expect(try await Self.ids(client) == acknowledged)
        try? await client.shutdown()
    }

    /// A data folder that is read-only when the server starts: the server serves reads from it and
    /// answers writes 503 with a clear error, changing nothing; once the folder is writable again,
    /// writes resume by themselves, without a restart, while reads go on answering throughout; what
    /// they acknowledged survives a `kill -9`. On a read-only folder with no database yet it stops
    /// at start-up with one clear line and a non-zero status. (Linux cannot turn a mount read-only
    /// while the server holds its files open for writing, so the server is restarted before it is
    /// made read-only; making it writable under the running server is allowed: see ReadOnlyMount.)
    @Test func aReadOnlyDataFolderKeepsReadsRefusesWritesWith503AndResumesWhenWritable() async throws {
        guard let folder = ReadOnlyMount.orSkip("DiskFaultTests") else { return }
        defer { folder.remove() }
        let data = folder.path + "/data", empty = folder.path + "/empty"
        try FileManager.default.createDirectory(atPath: empty, withIntermediateDirectories: true)
        let environment = ["FERRY_PASSWORD_ROUNDS": "1000"]
        var server = try ServeProcess(data: data, environment: environment)
        var client = server.client()
        #expect(try await client.put("/v1/buckets/b", headers: Self.alice, body: ByteBuffer()).status == .created)
        #expect(try await client.put("/v1/buckets/b/collections/c", headers: Self.alice, body: ByteBuffer()).status == .created)
        for i in 0..<5 {
            #expect(try await client.put(Self.records + "/r\(i)", headers: Self.alice, body: ByteBuffer(string: #"{"data":{"n":\#(i)}}"#)).status == .created)
        }
        try? await client.shutdown()
        server.kill(SIGTERM)
        try await Self.exited(server.process)

        try folder.makeReadOnly()
        server = try ServeProcess(data: data, environment: environment)
        defer { server.kill(SIGKILL) }
        client = server.client()
        let stored: Set<String> = ["r0", "r1", "r2", "r3", "r4"]
        #expect(try await Self.ids(client) == stored)
        #expect(try await client.get(Self.records + "/r0", headers: Self.alice).status == .ok)
        let body = ByteBuffer(string: #"{"data":{}}"#)
        // Twice, more than a second apart: a second try to open the database again finds the
        // folder still read-only and changes nothing either.
        for round in 0..<2 {
            if round == 1 { try await Task.sleep(for: .milliseconds(1_200)) }
            for (what, refusal) in [("PUT", try await client.put(Self.records + "/new", headers: Self.alice, body: body)),
                                    ("DELETE", try await client.delete(Self.records + "/r0", headers: Self.alice, body: ByteBuffer())),
                                    ("POST", try await client.post(Self.records, headers: Self.alice, body: body))] {
                #expect(refusal.status == .serviceUnavailable, "\(what)")
                #expect(refusal.headers[.retryAfter] != nil)
                let message = (try JSON.parse(bytes: Array(refusal.body!.readableBytesView)))["message"]?.stringValue ?? ""
                #expect(message.contains("readonly database") && message.contains("read-only")
                        && message.contains("until it is writable again"), "\(message)")
            }
        }
        #expect(try await Self.ids(client) == stored)

        // No database yet on a read-only folder: one clear line, a non-zero status.
        let start = try await Spawn.detached(Ferry.binary, ["serve", "--port", "0", "--data", empty])
        let text = start.stdout + start.stderr
        #expect(start.status != 0)
        #expect(text.contains("cannot open the SQLite database at \(empty)/") && text.contains("is not writable: Read-only file system"), "\(text)")

        // Writable again under the running server: a reader polls all along (every answer 200
        // and every stored record there), while writes are retried until one is acknowledged.
        try folder.makeWritable()
        let reader = server.client()
        let kept = stored.subtracting(["r0"])  // r0 is deleted below
        let reading = Task { () -> [String] in
            var problems: [String] = []
            while !Task.isCancelled {
                do {
                    let answer = try await reader.get(Self.records + "?_fields=id&_limit=10000", headers: Self.alice)
                    let body = try JSON.parse(bytes: Array(answer.body!.readableBytesView))
                    let ids = Set((body["data"]?.arrayValue ?? []).compactMap { $0["id"]?.stringValue })
                    if answer.status != .ok || !ids.isSuperset(of: kept) { problems.append("\(answer.status) \(ids.sorted()) \(String(buffer: answer.body!))") }
                } catch {
                    // The cancellation below ends a request in flight: that is the test stopping, not a failed read.
                    if Task.isCancelled { break }
                    problems.append("\(error)")
                }
                try? await Task.sleep(for: .milliseconds(20))
            }
            return problems
        }
        let deadline = ContinuousClock.now + .seconds(60)
        var resumed = false
        while !resumed && ContinuousClock.now < deadline {
            let answer = try await client.put(Self.records + "/new", headers: Self.alice, body: body)
            resumed = answer.status == .created
            if !resumed {
                #expect(answer.status == .serviceUnavailable)
                try await Task.sleep(for: .milliseconds(200))
            }
        }
        #expect(resumed, "writes did not resume within 60 s of the folder becoming writable")
        for i in 0..<20 {
            #expect(try await client.put(Self.records + "/after\(i)", headers: Self.alice, body: body).status == .created)
        }
        #expect(try await client.delete(Self.records + "/r0", headers: Self.alice, body: ByteBuffer()).status == .ok)
        reading.cancel()
        let problems = await reading.value
        try? await reader.shutdown()
        #expect(problems.isEmpty, "reads failed while writes resumed: \(problems.prefix(5))")
        #expect(server.printed.contains("writable again: writes resume"), "\(server.printed)")
        var acknowledged = stored.union(["new"]).union((0..<20).map { "after\($0)" })
        acknowledged.remove("r0")
        #expect(try await Self.ids(client) == acknowledged)

        // What was acknowledged after the reopening survives a crash.
        try? await client.shutdown()
        server.kill(SIGKILL)
        _ = server.waitForExit(timeout: 30)
        server = try ServeProcess(data: data, environment: environment)
        client = server.client()
        #expect(try await Self.ids(client) == acknowledged)
        try? await client.shutdown()
    }

    /// Waits (polling, off the cooperative pool's threads, 60 s at most) for `process` to exit.
    static func exited(_ process: Process) async throws {
        let deadline = ContinuousClock.now + .seconds(60)
        while process.isRunning && ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(50)) }
        #expect(!process.isRunning, "the process did not exit within 60 s")
    }
}
