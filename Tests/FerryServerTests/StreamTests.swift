import FerryCore
import FerryTestSupport
import Foundation
import HTTPTypes
import HummingbirdTesting
import NIOCore
import Testing

/// A Server-Sent Events client over a raw socket: sends one GET, then decodes the chunked
/// body into events as they arrive.
final class EventStreamClient {
    struct Event: Equatable {
        var id: String?
        var name: String?
        var data: String
    }

    let fd: Int32
    /// The status line and headers.
    private(set) var head = ""
    private var raw: [UInt8] = []
    private var body: [UInt8] = []
    private(set) var events: [Event] = []
    private(set) var comments: [String] = []
    private(set) var closed = false

    init(port: Int, path: String, headers: [String: String] = [:]) throws {
        fd = try RawConnection.connectLoopback(port)
        var request = "GET \(path) HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n"
        for (name, value) in headers { request += "\(name): \(value)\r\n" }
        request += "\r\n"
        _ = request.utf8CString.withUnsafeBufferPointer { Glibc.send(fd, $0.baseAddress, $0.count - 1, 0) }
    }

    deinit { close(fd) }

    var status: Int { Int(head.split(separator: " ").dropFirst().first ?? "") ?? 0 }

    /// Reads until `done` holds, the server closes, or `timeout` passes; returns whether `done` held.
    @discardableResult
    func read(timeout: TimeInterval = 10, until done: (EventStreamClient) -> Bool) -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        var buffer = [UInt8](repeating: 0, count: 65536)
        while !done(self) {
            if closed { return false }
            let left = deadline.timeIntervalSinceNow
            if left <= 0 { return false }
            var poller = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            guard poll(&poller, 1, Int32(max(1, left * 1000))) > 0 else { continue }
            let n = recv(fd, &buffer, buffer.count, 0)
            if n <= 0 {
                closed = true
                continue
            }
            raw += buffer[0..<n]
            decode()
        }
        return true
    }

    func read(events count: Int, timeout: TimeInterval = 10) -> Bool { read(timeout: timeout) { $0.events.count >= count } }

    private func decode() {
        if head.isEmpty {
            guard let end = raw.firstRange(of: Array("\r\n\r\n".utf8)) else { return }
            head = String(decoding: raw[..<end.lowerBound], as: UTF8.self)
            raw.removeSubrange(..<end.upperBound)
        }
        if head.lowercased().contains("transfer-encoding: chunked") {
            while let lineEnd = raw.firstRange(of: Array("\r\n".utf8)) {
                let size = Int(String(decoding: raw[..<lineEnd.lowerBound], as: UTF8.self), radix: 16) ?? 0
                guard raw.count >= lineEnd.upperBound + size + 2 else { break }
                if size == 0 { closed = true }
                body += raw[lineEnd.upperBound..<(lineEnd.upperBound + size)]
                raw.removeSubrange(..<(lineEnd.upperBound + size + 2))
            }
        } else {
            body += raw
            raw = []
        }
        while let end = body.firstRange(of: Array("\n\n".utf8)) {
            let block = String(decoding: body[..<end.lowerBound], as: UTF8.self)
            body.removeSubrange(..<end.upperBound)
            var event = Event(data: "")
            var isEvent = false
            for line in block.split(separator: "\n", omittingEmptySubsequences: false) {
                if line.hasPrefix(":") {
                    comments.append(String(line.dropFirst()).trimmingCharacters(in: .whitespaces))
                } else if line.hasPrefix("id: ") {
                    event.id = String(line.dropFirst(4))
                    isEvent = true
                } else if line.hasPrefix("event: ") {
                    event.name = String(line.dropFirst(7))
                    isEvent = true
                } else if line.hasPrefix("data: ") {
                    event.data += String(line.dropFirst(6))
                    isEvent = true
                }
            }
            if isEvent { events.append(event) }
        }
    }

    /// The body received so far when the answer is not a stream (an error).
    var text: String { String(decoding: body + raw, as: UTF8.self) }

    /// The `id` of each change event, as JSON records.
    var records: [JSON] { events.filter { $0.name == nil }.compactMap { try? JSON.parse($0.data) } }
}

/// Real-time streams and long-polls on a real `ferry serve` over loopback.
@Suite(.serialized) struct StreamTests {
    static let alice = "Basic " + Data("alice:secret".utf8).base64EncodedString()
    static let bob = "Basic " + Data("bob:secret".utf8).base64EncodedString()
    static let records = "/v1/buckets/b/collections/c/records"

    static func server(environment: [String: String] = [:]) async throws -> (ServeProcess, TestClient) {
        let server = try ServeProcess(data: try temporaryDirectory("stream"), environment: environment)
        let client = server.client()
        #expect(try await client.put("/v1/buckets/b", headers: [.authorization: alice], body: ByteBuffer()).status == .created)
        #expect(try await client.put("/v1/buckets/b/collections/c", headers: [.authorization: alice], body: ByteBuffer()).status == .created)
        return (server, client)
    }

    @discardableResult
    static func write(_ client: TestClient, _ id: String, _ n: Int, auth: String = alice) async throws -> Int64 {
        let response = try await client.put("\(records)/\(id)", headers: [.authorization: auth], body: ByteBuffer(string: #"{"data":{"n":\#(n)}}"#))
        #expect(response.status.code < 300)
        return try JSON.parse(bytes: Array(response.body!.readableBytesView))["data"]!["last_modified"]!.intValue!
    }

    @Test func streamSendsEveryChangeInOrderWithTimestampsAsIDs() async throws {
        let (server, client) = try await Self.server()
        defer { server.kill(SIGKILL) }
        let before = try await Self.write(client, "old", 0)
        let stream = try EventStreamClient(port: server.port, path: "\(Self.records)?_since=0", headers: ["Authorization": Self.alice])
        #expect(stream.read(events: 1))
        #expect(stream.status == 200)
        #expect(stream.head.lowercased().contains("content-type: text/event-stream"))
        #expect(stream.records.first?["id"] == "old")
        #expect(stream.events.first?.id == String(before))
        let updated = try await Self.write(client, "r1", 1)
        let deleted = try await client.delete("\(Self.records)/old", headers: [.authorization: Self.alice], body: ByteBuffer())
        #expect(deleted.status == .ok)
        #expect(stream.read(events: 3))
        #expect(stream.records.map { $0["id"]?.stringValue } == ["old", "r1", "old"])
        #expect(stream.records[2]["deleted"] == true)
        #expect(stream.events[1].id == String(updated))
        let ids = stream.events.compactMap { $0.id.flatMap { Int64($0) } }
        #expect(ids == ids.sorted() && Set(ids).count == 3)
        try? await client.shutdown()
    }

    /// Without _since, a stream starts now: nothing of the past, everything after.
    @Test func streamWithoutSinceStartsNow() async throws {
        let (server, client) = try await Self.server()
        defer { server.kill(SIGKILL) }
        try await Self.write(client, "past", 0)
        let stream = try EventStreamClient(port: server.port, path: Self.records, headers: ["Authorization": Self.alice])
        #expect(stream.read { $0.comments.contains { $0.hasPrefix("ferry change stream") } })
        try await Self.write(client, "future", 1)
        #expect(stream.read(events: 1))
        #expect(stream.records.map { $0["id"]?.stringValue } == ["future"])
        try? await client.shutdown()
    }

    /// A client that reconnects with Last-Event-ID gets exactly what it missed.
    @Test func reconnectWithLastEventIDMissesNothingAndRepeatsNothing() async throws {
        let (server, client) = try await Self.server()
        defer { server.kill(SIGKILL) }
        var stream: EventStreamClient? = try EventStreamClient(port: server.port, path: "\(Self.records)?_since=0", headers: ["Authorization": Self.alice])
        for i in 0..<5 { try await Self.write(client, "a\(i)", i) }
        #expect(stream!.read(events: 5))
        let last = stream!.events.last!.id!
        stream = nil  // disconnect
        for i in 0..<7 { try await Self.write(client, "b\(i)", i) }
        let again = try EventStreamClient(port: server.port, path: "\(Self.records)?_since=0",
                                          headers: ["Authorization": Self.alice, "Last-Event-ID": last])
        #expect(again.read(events: 7))
        try await Self.write(client, "c0", 0)
        #expect(again.read(events: 8))
        #expect(again.records.map { $0["id"]!.stringValue! } == (0..<7).map { "b\($0)" } + ["c0"])
        try? await client.shutdown()
    }

    /// Invariant 2 through a stream: concurrent writers, one stream, every change exactly once.
    @Test func concurrentWritersStreamIsGapFree() async throws {
        let (server, client) = try await Self.server()
        defer { server.kill(SIGKILL) }
        let stream = try EventStreamClient(port: server.port, path: "\(Self.records)?_since=0", headers: ["Authorization": Self.alice])
        let port = server.port
        try await withThrowingTaskGroup(of: Void.self) { group in
            for writer in 0..<4 {
                group.addTask {
                    let own = TestClient(host: "127.0.0.1", port: port, configuration: .init(timeout: .seconds(90)))
                    own.connect()
                    for i in 0..<100 { try await Self.write(own, "w\(writer)-\(i)", i) }
                    try? await own.shutdown()
                }
            }
            try await group.waitForAll()
        }
        #expect(stream.read(events: 400, timeout: 30))
        let ids = stream.records.map { $0["id"]!.stringValue! }
        #expect(ids.count == 400 && Set(ids).count == 400)
        let stamps = stream.events.map { Int64($0.id!)! }
        #expect(zip(stamps, stamps.dropFirst()).allSatisfy { $0 < $1 })
        try? await client.shutdown()
    }

    /// One write reaches every one of many open streams.
    @Test func manyStreamsEachReceiveTheWrite() async throws {
        let (server, client) = try await Self.server()
        defer { server.kill(SIGKILL) }
        let streams = try (0..<200).map { _ in try EventStreamClient(port: server.port, path: Self.records, headers: ["Authorization": Self.alice]) }
        for stream in streams { #expect(stream.read { !$0.comments.isEmpty }) }
        try await Self.write(client, "everyone", 1)
        let received = streams.filter { $0.read(events: 1) && $0.records.first?["id"] == "everyone" }.count
        #expect(received == 200)
        let metrics = try await client.get("/metrics")
        #expect(String(buffer: metrics.body!).contains("ferry_streams_open 200"))
        try? await client.shutdown()
    }

    @Test func idleStreamsGetHeartbeats() async throws {
        let (server, client) = try await Self.server(environment: ["FERRY_STREAM_HEARTBEAT": "1"])
        defer { server.kill(SIGKILL) }
        let stream = try EventStreamClient(port: server.port, path: Self.records, headers: ["Authorization": Self.alice])
        #expect(stream.read(timeout: 5) { $0.comments.filter { $0 == "heartbeat" }.count >= 2 })
        #expect(stream.events.isEmpty)
        try? await client.shutdown()
    }

    /// Read permission is checked when the stream opens and on every read after.
    @Test func permissionIsEnforcedPerStream() async throws {
        let (server, client) = try await Self.server()
        defer { server.kill(SIGKILL) }
        let anonymous = try EventStreamClient(port: server.port, path: Self.records)
        #expect(anonymous.read(timeout: 5) { $0.status != 0 && $0.text.contains("}") })
        #expect(anonymous.status == 401)
        let stranger = try EventStreamClient(port: server.port, path: Self.records, headers: ["Authorization": Self.bob])
        #expect(stranger.read(timeout: 5) { $0.status != 0 && $0.text.contains("}") })
        #expect(stranger.status == 403)
        #expect(stranger.events.isEmpty)

        // Shared, then unshared: the stream ends with an error event.
        let bobID = try JSON.parse(bytes: Array(try await client.get("/v1/", headers: [.authorization: Self.bob]).body!.readableBytesView))["user"]!["id"]!.stringValue!
        let share = #"{"permissions":{"read":["\#(bobID)"]}}"#
        #expect(try await client.execute(.init("/v1/buckets/b/collections/c", method: .patch, headers: [.authorization: Self.alice], body: ByteBuffer(string: share))).status == .ok)
        let bobs = try EventStreamClient(port: server.port, path: Self.records, headers: ["Authorization": Self.bob])
        #expect(bobs.read { !$0.comments.isEmpty })  // open (it starts now) before the write
        try await Self.write(client, "seen", 1)
        #expect(bobs.read(events: 1))
        #expect(bobs.status == 200)
        let unshare = #"{"permissions":{"read":[]}}"#
        #expect(try await client.execute(.init("/v1/buckets/b/collections/c", method: .patch, headers: [.authorization: Self.alice], body: ByteBuffer(string: unshare))).status == .ok)
        try await Self.write(client, "unseen", 2)
        #expect(bobs.read { $0.closed })
        #expect(bobs.records.map { $0["id"]?.stringValue } == ["seen"])
        #expect(bobs.events.last?.name == "error")
        #expect(bobs.events.last?.data.contains("\"code\":403") == true)
        try? await client.shutdown()
    }

    @Test func deletingTheCollectionEndsItsStreams() async throws {
        let (server, client) = try await Self.server()
        defer { server.kill(SIGKILL) }
        let stream = try EventStreamClient(port: server.port, path: Self.records, headers: ["Authorization": Self.alice])
        #expect(stream.read { !$0.comments.isEmpty })
        #expect(try await client.delete("/v1/buckets/b/collections/c", headers: [.authorization: Self.alice], body: ByteBuffer()).status == .ok)
        #expect(stream.read { $0.closed })
        #expect(stream.events.last?.name == "error")
        #expect(stream.events.last?.data.contains("\"code\":404") == true)
        try? await client.shutdown()
    }

    /// Bad stream parameters get a 400 in Kinto's format; nothing is streamed and nothing changes.
    @Test func badStreamParametersAreRefused() async throws {
        let (server, client) = try await Self.server()
        defer { server.kill(SIGKILL) }
        try await Self.write(client, "kept", 1)
        let cases: [(String, [String: String], String)] = [
            ("?_since=yesterday", [:], "_since"),
            ("?_since=-5", [:], "_since"),
            ("", ["Last-Event-ID": "abc"], "Last-Event-ID"),
            ("", ["Last-Event-ID": "-1"], "Last-Event-ID"),
            ("?_limit=5", [:], "_limit"),
            ("?_sort=id", [:], "_sort"),
            ("?n=1", [:], "filters"),
            ("?_wait=5&_since=0", [:], "_wait"),
        ]
        for (query, headers, mention) in cases {
            var all = headers
            all["Authorization"] = Self.alice
            let stream = try EventStreamClient(port: server.port, path: Self.records + query, headers: all)
            #expect(stream.read(timeout: 5) { $0.status != 0 && $0.text.contains("}") })
            #expect(stream.status == 400, Comment(rawValue: query))
            #expect(stream.text.contains(mention), Comment(rawValue: stream.text))
            #expect(stream.events.isEmpty)
        }
        let list = try await client.get(Self.records, headers: [.authorization: Self.alice])
        #expect(try JSON.parse(bytes: Array(list.body!.readableBytesView))["data"]!.arrayValue!.count == 1)
        try? await client.shutdown()
    }

    @Test func maxStreamsAnswers503() async throws {
        let (server, client) = try await Self.server(environment: ["FERRY_MAX_STREAMS": "2"])
        defer { server.kill(SIGKILL) }
        let first = try EventStreamClient(port: server.port, path: Self.records, headers: ["Authorization": Self.alice])
        let second = try EventStreamClient(port: server.port, path: Self.records, headers: ["Authorization": Self.alice])
        #expect(first.read { !$0.comments.isEmpty } && second.read { !$0.comments.isEmpty })
        let third = try EventStreamClient(port: server.port, path: Self.records, headers: ["Authorization": Self.alice])
        #expect(third.read(timeout: 5) { $0.status != 0 && $0.text.contains("}") })
        #expect(third.status == 503)
        #expect(third.head.contains("Retry-After"))
        try? await client.shutdown()
    }

    /// A client that disconnects frees its stream slot once writes to it fail: within two heartbeats.
    @Test func aClosedConnectionFreesItsSlotWithinTwoHeartbeats() async throws {
        let (server, client) = try await Self.server(environment: ["FERRY_MAX_STREAMS": "1", "FERRY_STREAM_HEARTBEAT": "1"])
        defer { server.kill(SIGKILL) }
        var first: EventStreamClient? = try EventStreamClient(port: server.port, path: Self.records, headers: ["Authorization": Self.alice])
        #expect(first!.read { !$0.comments.isEmpty })
        first = nil  // closes the socket; no write follows
        var opened = false
        let deadline = Date().addingTimeInterval(5)
        while !opened && Date() < deadline {
            let next = try EventStreamClient(port: server.port, path: Self.records, headers: ["Authorization": Self.alice])
            next.read(timeout: 2) { $0.status != 0 }
            opened = next.status == 200
            if !opened { usleep(100_000) }
        }
        #expect(opened)
        _ = first
        try? await client.shutdown()
    }

    /// SIGTERM ends open streams, so the server stops promptly and cleanly.
    @Test func sigtermWithOpenStreamsExitsCleanly() async throws {
        let (server, client) = try await Self.server()
        let stream = try EventStreamClient(port: server.port, path: Self.records, headers: ["Authorization": Self.alice])
        #expect(stream.read { !$0.comments.isEmpty })
        try? await client.shutdown()
        server.kill(SIGTERM)
        #expect(server.waitForExit(timeout: 10) == 0)
        #expect(stream.read { $0.closed })
    }

    @Test func longPollAnswersWhenAChangeArrives() async throws {
        let (server, client) = try await Self.server()
        defer { server.kill(SIGKILL) }
        let since = try await Self.write(client, "first", 1)
        // A change already there: at once.
        let ready = try await client.get("\(Self.records)?_since=0&_wait=30", headers: [.authorization: Self.alice])
        #expect(try JSON.parse(bytes: Array(ready.body!.readableBytesView))["data"]!.arrayValue!.count == 1)
        // None yet: answered by the write that comes during the wait.
        let port = server.port
        let waiting = Task {
            let own = TestClient(host: "127.0.0.1", port: port, configuration: .init(timeout: .seconds(90)))
            own.connect()
            defer { Task { try? await own.shutdown() } }
            let started = ContinuousClock.now
            let answer = try await own.get("\(Self.records)?_since=\(since)&_wait=30", headers: [.authorization: Self.alice])
            return (answer, ContinuousClock.now - started)
        }
        try await Task.sleep(for: .milliseconds(300))
        try await Self.write(client, "second", 2)
        let (answer, waited) = try await waiting.value
        #expect(answer.status == .ok)
        #expect(try JSON.parse(bytes: Array(answer.body!.readableBytesView))["data"]!.arrayValue!.map { $0["id"]!.stringValue! } == ["second"])
        #expect(waited < .seconds(20))
        // Nothing comes: the empty list when the wait ends.
        let last = try await Self.write(client, "third", 3)
        let empty = try await client.get("\(Self.records)?_since=\(last)&_wait=1", headers: [.authorization: Self.alice])
        #expect(String(buffer: empty.body!) == #"{"data":[]}"#)
        try? await client.shutdown()
    }

    @Test func badLongPollParametersAreRefused() async throws {
        let (server, client) = try await Self.server()
        defer { server.kill(SIGKILL) }
        for query in ["_wait=5", "_since=0&_wait=abc", "_since=0&_wait=-1", "_since=0&_wait=100000", "_since=0&_wait=nan"] {
            let answer = try await client.get("\(Self.records)?\(query)", headers: [.authorization: Self.alice])
            #expect(answer.status == .badRequest, Comment(rawValue: query))
            #expect(String(buffer: answer.body!).contains("_wait"))
        }
        let anonymous = try await client.get("\(Self.records)?_since=0&_wait=5")
        #expect(anonymous.status == .unauthorized)
        try? await client.shutdown()
    }

    @Test func helloAnnouncesStreamsAndLongPoll() async throws {
        let (server, client) = try await Self.server()
        defer { server.kill(SIGKILL) }
        let hello = try JSON.parse(bytes: Array(try await client.get("/v1/").body!.readableBytesView))
        #expect(hello["capabilities"]?["streams"] != nil)
        #expect(hello["capabilities"]?["long_poll"]?["max_wait"] == 300)
        try? await client.shutdown()
    }
}
