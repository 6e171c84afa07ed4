import FerryCore
import FerryStore
import FerryTestSupport
import Foundation
import HTTPTypes
import HummingbirdTesting
import NIOCore
import Testing

/// `request_timeout` bounds the storage work too: a request answered with the timeout's 503
/// never commits afterwards, on SQLite and on PostgreSQL. Real `ferry serve` processes, with
/// every wait a poll of generous deadline (the 1 s timeout is the server's, not the test's).
@Suite(.serialized)
struct RequestTimeoutTests {
    static let alice: HTTPFields = [.authorization: "Basic " + Data("alice:secret".utf8).base64EncodedString(),
                                    .contentType: "application/json"]
    static let collection = "/v1/buckets/b/collections/c"

    enum Backend: String, CaseIterable, CustomTestStringConvertible {
        case sqlite, postgres
        var testDescription: String { rawValue }
    }

    /// A server with a 1 s request timeout on `backend`, and a storage of the test's own on the
    /// same data; nil when PostgreSQL is not installed (CI requires it).
    static func server(_ backend: Backend) async throws -> (ServeProcess, any Storage)? {
        let data = try temporaryDirectory("timeout")
        var environment = ["FERRY_REQUEST_TIMEOUT": "1", "FERRY_BATCH_MAX_REQUESTS": "10000", "FERRY_MAX_BODY_SIZE": "20000000",
                           "FERRY_PASSWORD_ROUNDS": "1000"]
        switch backend {
        case .sqlite:
            let server = try ServeProcess(data: data, environment: environment)
            return (server, try SQLiteStorage(path: data + "/ferry.sqlite"))
        case .postgres:
            guard PostgresCluster.enabled else { return nil }
            let url = try PostgresCluster.shared().createDatabase("timeout")
            environment["FERRY_DATABASE"] = url
            let server = try ServeProcess(data: data, environment: environment)
            return (server, try await PostgresStorage(configuration: .init(url: url)))
        }
    }

    static func ids(_ client: TestClient) async throws -> [String] {
        let answer = try await client.get(collection + "/records?_sort=id", headers: alice)
        #expect(answer.status == .ok)
        let body = try JSON.parse(bytes: Array(answer.body!.readableBytesView))
        return (body["data"]?.arrayValue ?? []).compactMap { $0["id"]?.stringValue }
    }

    static func message(_ answer: TestClient.Response) -> String {
        (try? JSON.parse(bytes: Array(answer.body!.readableBytesView)))?["message"]?.stringValue ?? ""
    }

    /// Writes `id` once the server accepts writes again (each refused try changed nothing).
    static func writeWhenPossible(_ client: TestClient, id: String) async throws {
        let deadline = ContinuousClock.now + .seconds(60)
        while true {
            let answer = try await client.put(collection + "/records/" + id, headers: alice, body: ByteBuffer(string: #"{"data":{}}"#))
            if answer.status == .created { return }
            #expect(answer.status == .serviceUnavailable, "\(answer.status)")
            guard ContinuousClock.now < deadline else { Issue.record("the server never accepted the write of \(id)"); return }
            try await Task.sleep(for: .milliseconds(200))
        }
    }

    /// `body` with a client of a new server on `backend` (bucket `b`, collection `c` made), and
    /// the test's own storage on its data; nothing when PostgreSQL is not installed.
    static func withServer(_ backend: Backend, _ body: (TestClient, any Storage) async throws -> Void) async throws {
        guard let (server, storage) = try await server(backend) else { return }
        defer { server.kill(SIGKILL); try? storage.close() }
        let client = server.client()
        defer { Task { try? await client.shutdown() } }
        #expect(try await client.put("/v1/buckets/b", headers: alice, body: ByteBuffer()).status == .created)
        #expect(try await client.put(collection, headers: alice, body: ByteBuffer()).status == .created)
        try await body(client, storage)
    }

    /// The write waits for a lock another transaction holds past the timeout: the client gets
    /// the 503 at the deadline, and when the lock is released the write does not commit.
    @Test(arguments: Backend.allCases)
    func aWriteAnsweredWithTheTimeoutNeverCommitsAfterwards(_ backend: Backend) async throws {
        try await Self.withServer(backend) { client, storage in
            // Another writer takes a lock the late write needs and keeps it until the late write
            // was answered (SQLite: the database's write lock; PostgreSQL: the row of record
            // `late`, which it writes and deletes, so that only a tombstone of it is left when it
            // commits). A fixed hold let a loaded machine deliver the request after the release.
            let held = Flag(), release = Flag()
            let key = ResourceKey(parentID: "/buckets/b/collections/c", resourceName: "record")
            let holder = Task {
                try await storage.write { session in
                    _ = try session.put(key, id: "holder", data: [:], requestedTimestamp: nil)
                    _ = try session.put(key, id: "late", data: [:], requestedTimestamp: nil)
                    _ = try session.delete(key, id: "late", requestedTimestamp: nil)
                    held.set()
                    let end = Date().addingTimeInterval(60)
                    while !release.isSet && Date() < end { Thread.sleep(forTimeInterval: 0.02) }
                }
            }
            let deadline = ContinuousClock.now + .seconds(60)
            while !held.isSet && ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(20)) }
            #expect(held.isSet)

            let late = try await client.put(Self.collection + "/records/late", headers: Self.alice, body: ByteBuffer(string: #"{"data":{"v":1}}"#))
            #expect(late.status == .serviceUnavailable)
            #expect(late.headers[.retryAfter] != nil)
            #expect(Self.message(late).contains("request_timeout"), "\(Self.message(late))")
            release.set()
            try await holder.value

            // A write after it commits, and the late one never did.
            try await Self.writeWhenPossible(client, id: "after")
            #expect(try await Self.ids(client) == ["after", "holder"])
            #expect(try await client.get(Self.collection + "/records/late", headers: Self.alice).status == .notFound)
        }
    }

    /// A batch too big for the timeout is stopped and rolled back whole; the server goes on.
    @Test(arguments: Backend.allCases)
    func aBatchThatRunsOutOfTimeIsRolledBack(_ backend: Backend) async throws {
        try await Self.withServer(backend) { client, _ in
            try await Self.writeWhenPossible(client, id: "before")
            let timestamp = try await client.get(Self.collection + "/records", headers: Self.alice).headers[.eTag]

            // 10,000 writes, each checked against a unique field (a look-up through the records
            // written before it): many seconds of work on any machine this runs on, against 1 s,
            // however fast a batch of plain records gets.
            let unique = try await client.put(Self.collection, headers: Self.alice, body: ByteBuffer(string: #"{"data":{"unique_fields":["n"]}}"#))
            #expect(unique.status == .ok)
            let requests = (0..<10_000).map { #"{"path":"\#(Self.collection)/records/r\#($0)","body":{"data":{"n":\#($0),"text":"\#(String(repeating: "x", count: 200))"}}}"# }
            let body = #"{"defaults":{"method":"PUT"},"requests":["# + requests.joined(separator: ",") + "]}"
            let started = ContinuousClock.now
            let batch = try await client.post("/v1/batch", headers: Self.alice, body: ByteBuffer(string: body))
            #expect(batch.status == .serviceUnavailable, "after \(ContinuousClock.now - started)")
            #expect(Self.message(batch).contains("rolled back"), "\(Self.message(batch))")

            try await Self.writeWhenPossible(client, id: "after")
            #expect(try await Self.ids(client) == ["after", "before"])
            // The collection's timestamp moved once, for "after": nothing of the batch is in the feed.
            let feed = try await client.get(Self.collection + "/records?_since=" + (timestamp ?? "0").replacingOccurrences(of: "\"", with: ""), headers: Self.alice)
            let changes = try JSON.parse(bytes: Array(feed.body!.readableBytesView))["data"]?.arrayValue ?? []
            #expect(changes.compactMap { $0["id"]?.stringValue } == ["after"])
        }
    }

    /// Reads are bounded too, and a long-poll's `_wait` comes on top of the timeout.
    @Test func aLongPollMayWaitLongerThanTheTimeout() async throws {
        try await Self.withServer(.sqlite) { client, _ in
            let started = ContinuousClock.now
            let poll = try await client.get(Self.collection + "/records?_since=0&_wait=2", headers: Self.alice)
            #expect(poll.status == .ok)
            #expect(ContinuousClock.now - started >= .seconds(2))
        }
    }
}

/// Set once, read from anywhere.
final class Flag: @unchecked Sendable {
    private let lock = NSLock()
    private var value = false
    func set() { lock.withLock { value = true } }
    var isSet: Bool { lock.withLock { value } }
}
