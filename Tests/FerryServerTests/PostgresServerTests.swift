import FerryCore
import FerryTestSupport
import Foundation
import HTTPTypes
import HummingbirdTesting
import NIOCore
import Testing

/// Two `ferry serve` processes on one PostgreSQL database, over loopback.
@Suite(.serialized, .enabled(if: PostgresCluster.enabled, "PostgreSQL is not installed: its tests are skipped (CI sets FERRY_REQUIRE_POSTGRES=1 and runs them)"))
struct PostgresServerTests {
    static let alice: HTTPFields = [.authorization: "Basic " + Data("alice:secret".utf8).base64EncodedString()]

    static func pair(on cluster: PostgresCluster? = nil) throws -> (ServeProcess, ServeProcess, String) {
        let url = try (cluster ?? PostgresCluster.shared()).createDatabase("serve")
        // No secret given: the first process stores its own in the database and the second uses
        // it, so a basicauth user is the same user on either process.
        let environment = ["FERRY_DATABASE": url, "FERRY_PASSWORD_ROUNDS": "1000"]
        let a = try ServeProcess(data: temporaryDirectory("pg-a"), environment: environment)
        let b = try ServeProcess(data: temporaryDirectory("pg-b"), environment: environment)
        return (a, b, url)
    }

    /// Two processes on a new database and a client of each, for `body`; then the clients are
    /// shut down and the processes killed.
    static func withPair(_ body: (ServeProcess, ServeProcess, TestClient, TestClient) async throws -> Void) async throws {
        let (a, b, _) = try pair()
        defer {
            a.kill(SIGKILL)
            b.kill(SIGKILL)
        }
        let clientA = a.client()
        let clientB = b.client()
        do {
            try await body(a, b, clientA, clientB)
        } catch {
            try? await clientA.shutdown()
            try? await clientB.shutdown()
            throw error
        }
        try? await clientA.shutdown()
        try? await clientB.shutdown()
    }

    /// A write through one process reaches a stream open on the other (LISTEN/NOTIFY), and a poller
    /// of either sees every write of both.
    @Test func aStreamOnOneProcessSeesWritesMadeThroughTheOther() async throws {
        try await Self.withPair { a, _, clientA, clientB in
        #expect(try await clientA.put("/v1/buckets/b", headers: Self.alice, body: ByteBuffer()).status == .created)
        #expect(try await clientB.put("/v1/buckets/b/collections/c", headers: Self.alice, body: ByteBuffer()).status == .created)
        let stream = try EventStreamClient(port: a.port, path: "/v1/buckets/b/collections/c/records",
                                           headers: ["Authorization": "Basic " + Data("alice:secret".utf8).base64EncodedString()])
        #expect(stream.read { !$0.comments.isEmpty })
        for i in 0..<10 {
            let client = i % 2 == 0 ? clientB : clientA
            let response = try await client.put("/v1/buckets/b/collections/c/records/r\(i)", headers: Self.alice, body: ByteBuffer(string: #"{"data":{"n":\#(i)}}"#))
            #expect(response.status == .created)
        }
        #expect(stream.read(events: 10), "\(a.printed)")
        #expect(Set(stream.records.map { $0["id"]!.stringValue! }) == Set((0..<10).map { "r\($0)" }))
        let stamps = stream.events.map { Int64($0.id!)! }
        #expect(zip(stamps, stamps.dropFirst()).allSatisfy { $0 < $1 })
        let list = try await clientA.get("/v1/buckets/b/collections/c/records?_since=0", headers: Self.alice)
        #expect(try JSON.parse(bytes: Array(list.body!.readableBytesView))["data"]!.arrayValue!.count == 10)
        }
    }

    /// A password changed through one process stops working on the other at once, although the
    /// other remembered it (its identity cache is cleared by the announcement of the change).
    @Test func aPasswordChangedThroughOneProcessIsForgottenByTheOther() async throws {
        try await Self.withPair { _, _, clientA, clientB in
        func basic(_ password: String) -> HTTPFields { [.authorization: "Basic " + Data("carol:\(password)".utf8).base64EncodedString()] }
        func user(_ password: String) async throws -> String? {
            let hello = try await clientB.get("/v1/", headers: basic(password))
            return try JSON.parse(bytes: Array(hello.body!.readableBytesView))["user"]?["id"]?.stringValue
        }
        let created = try await clientA.put("/v1/accounts/carol", headers: [.contentType: "application/json"],
                                            body: ByteBuffer(string: #"{"data":{"password":"the first password"}}"#))
        #expect(created.status == .created)
        #expect(try await user("the first password") == "account:carol")  // B now remembers it
        var headers = basic("the first password")
        headers[.contentType] = "application/json"
        let changed = try await clientA.put("/v1/accounts/carol", headers: headers,
                                            body: ByteBuffer(string: #"{"data":{"password":"the second password"}}"#))
        #expect(changed.status == .ok)
        var forgotten = false
        for _ in 0..<50 where !forgotten {
            forgotten = try await user("the first password") != "account:carol"
            if !forgotten { try await Task.sleep(for: .milliseconds(100)) }
        }
        #expect(forgotten, "process B still takes the old password")
        #expect(try await user("the second password") == "account:carol")
        }
    }

    /// The same `Idempotency-Key` sent at once to both processes: one create, every answer the
    /// same record (requests with keys take the lock row first, so the second waits for the first).
    @Test func concurrentRetriesWithOneIdempotencyKeyCreateOnceAcrossProcesses() async throws {
        try await Self.withPair { a, b, clientA, clientB in
        #expect(try await clientA.put("/v1/buckets/b", headers: Self.alice, body: ByteBuffer()).status == .created)
        #expect(try await clientB.put("/v1/buckets/b/collections/c", headers: Self.alice, body: ByteBuffer()).status == .created)
        var headers = Self.alice
        headers[HTTPField.Name("Idempotency-Key")!] = "order-1"
        let keyed = headers
        let ids = try await withThrowingTaskGroup(of: (Int, String?).self) { group in
            for i in 0..<8 {
                group.addTask {
                    // A connection of its own each, half to each process.
                    let client = (i % 2 == 0 ? a : b).client()
                    let response = try await client.post("/v1/buckets/b/collections/c/records", headers: keyed,
                                                         body: ByteBuffer(string: #"{"data":{"item":"book"}}"#))
                    try? await client.shutdown()
                    let id = try JSON.parse(bytes: Array(response.body!.readableBytesView))["data"]?["id"]?.stringValue
                    return (Int(response.status.code), id)
                }
            }
            var all: [(Int, String?)] = []
            for try await answer in group { all.append(answer) }
            return all
        }
        #expect(ids.allSatisfy { $0.0 == 201 }, "\(ids)")
        #expect(Set(ids.compactMap(\.1)).count == 1, "\(ids)")
        let list = try await clientA.get("/v1/buckets/b/collections/c/records", headers: Self.alice)
        #expect(try JSON.parse(bytes: Array(list.body!.readableBytesView))["data"]!.arrayValue!.count == 1)
        }
    }

    /// The database goes away: 503 with Retry-After, and the server recovers by itself when it is back.
    @Test func aDatabaseRestartIsA503ThenRecovers() async throws {
        let cluster = try PostgresCluster.dedicated()
        let (a, b, _) = try Self.pair(on: cluster)
        b.kill(SIGKILL)
        defer { a.kill(SIGKILL) }
        let client = a.client()
        #expect(try await client.put("/v1/buckets/kept", headers: Self.alice, body: ByteBuffer()).status == .created)
        try cluster.stop()
        let down = try await client.put("/v1/buckets/lost", headers: Self.alice, body: ByteBuffer())
        try cluster.start()
        #expect(down.status == .serviceUnavailable)
        #expect(down.headers[.retryAfter] != nil)
        var recovered = false
        for _ in 0..<50 where !recovered {
            recovered = try await client.get("/v1/buckets/kept", headers: Self.alice).status == .ok
            if !recovered { try await Task.sleep(for: .milliseconds(200)) }
        }
        #expect(recovered)
        // The refused write left nothing behind.
        #expect(try await client.get("/v1/buckets/lost", headers: Self.alice).status != .ok)
        try? await client.shutdown()
    }

    /// Two processes on one database sharing one attachments folder (the deployment the README
    /// asks for): a file uploaded through one is served by the other, and a delete through the
    /// other removes it.
    @Test func processesSharingTheAttachmentsFolderServeAndRemoveEachOthersFiles() async throws {
        let url = try PostgresCluster.shared().createDatabase("attach")
        let shared = try temporaryDirectory("pg-attachments")
        let environment = ["FERRY_DATABASE": url, "FERRY_PASSWORD_ROUNDS": "1000"]
        let a = try ServeProcess(data: shared, environment: environment)
        let b = try ServeProcess(data: shared, environment: environment)
        defer {
            a.kill(SIGKILL)
            b.kill(SIGKILL)
        }
        let clientA = a.client()
        let clientB = b.client()
        #expect(try await clientA.put("/v1/buckets/b", headers: Self.alice, body: ByteBuffer()).status == .created)
        #expect(try await clientA.put("/v1/buckets/b/collections/c", headers: Self.alice, body: ByteBuffer()).status == .created)
        var headers = Self.alice
        headers[.contentType] = "multipart/form-data; boundary=bnd"
        let body = "--bnd\r\nContent-Disposition: form-data; name=\"attachment\"; filename=\"f.txt\"\r\nContent-Type: text/plain\r\n\r\nshared file\r\n--bnd--\r\n"
        let upload = try await clientA.post("/v1/buckets/b/collections/c/records/r/attachment", headers: headers, body: ByteBuffer(string: body))
        #expect(upload.status == .created)
        let location = try #require(Wire.json(upload)["location"]?.stringValue)
        let served = try await clientB.get("/attachments/" + location, headers: Self.alice)
        #expect(served.status == .ok && served.body.map { String(buffer: $0) } == "shared file")
        #expect(try await clientB.delete("/v1/buckets/b/collections/c/records/r", headers: Self.alice, body: ByteBuffer()).status == .ok)
        #expect(!FileManager.default.fileExists(atPath: shared + "/attachments/" + location))
        #expect(try await clientA.get("/attachments/" + location, headers: Self.alice).status == .notFound)
        try? await clientA.shutdown()
        try? await clientB.shutdown()
    }
}
