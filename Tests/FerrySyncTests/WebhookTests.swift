import FerryCore
import FerryTestSupport
import Foundation
import NIOHTTP1
import Testing

/// The receiver of Fixtures/webhook_receiver.py (standard library only), as a child process.
final class WebhookReceiver {
    let process = Process()
    private(set) var port = 0

    init(port wanted: Int = 0) throws {
        let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures/webhook_receiver.py").path
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", script, "--port", String(wanted)]
        port = try launch(process, output: Pipe(), port: #"listening on 127\.0\.0\.1:(\d+)"#, what: "webhook_receiver.py")
    }

    deinit { crash() }

    func crash() {
        process.stop(signal: SIGKILL)
    }

    var url: String { "http://127.0.0.1:\(port)/hook" }

    /// Every delivery so far: (delivery id, signature header, body, status answered).
    func received() async throws -> [(delivery: String, signature: String, body: String, status: Int)] {
        let (_, list) = try await jsonRequest(.GET, "http://127.0.0.1:\(port)/_received")
        return (list?.arrayValue ?? []).map {
            ($0["delivery"]?.stringValue ?? "", $0["signature"]?.stringValue ?? "", $0["body"]?.stringValue ?? "", Int($0["status"]?.intValue ?? 0))
        }
    }

    /// - Parameter hold: deliveries get no answer until a later call sets it false.
    func mode(fail: Int = 0, status: Int = 500, delay: Double = 0, hold: Bool = false) async throws {
        _ = try await jsonRequest(.POST, "http://127.0.0.1:\(port)/_mode",
                                  body: ["fail": .int(Int64(fail)), "status": .int(Int64(status)), "delay": .double(delay), "hold": .bool(hold)])
    }
}

/// Webhooks of a real `ferry serve`, delivered to a real receiver over loopback.
@Suite(.serialized) struct WebhookTests {
    static let secret = "a-webhook-secret-of-32-characters"
    static let hooks = "/buckets/main/collections/users/webhooks"
    static let records = "/buckets/main/collections/users/records/"

    static func server(_ environment: [String: String] = ["FERRY_WEBHOOK_ALLOW_HOSTS": "127.0.0.1"], directory: TempDir? = nil, port: Int = 0) async throws -> ServeProcess {
        let server = try ServeProcess(directory: directory, port: port, environment: environment)
        _ = try await server.request(.PUT, "/buckets/main")
        _ = try await server.request(.PUT, "/buckets/main/collections/users")
        return server
    }

    /// The changes delivered, in delivery order, after checking each signature.
    static func changes(_ deliveries: [(delivery: String, signature: String, body: String, status: Int)]) throws -> [JSON] {
        var result: [JSON] = []
        for delivery in deliveries where delivery.status == 200 {
            let body = Array(delivery.body.utf8)
            _ = try WebhookSignature.verify(header: delivery.signature, secret: secret, delivery: delivery.delivery, body: body,
                                            now: Int(Date().timeIntervalSince1970), tolerance: 300)
            let json = try JSON.parse(bytes: body)
            #expect(json["id"]?.stringValue == delivery.delivery)
            #expect(json["event"] == "changes" && json["bucket"] == "main" && json["collection"] == "users")
            result += json["changes"]?.arrayValue ?? []
        }
        return result
    }

    static func eventually(_ timeout: Double = 20, _ condition: () async throws -> Bool) async rethrows -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if try await condition() { return true }
            try? await Task.sleep(for: .milliseconds(50))
        }
        return try await condition()
    }

    @Test func everyChangeIsDeliveredSignedAndInOrder() async throws {
        let server = try await Self.server()
        let receiver = try WebhookReceiver()
        let (status, created) = try await server.request(.PUT, Self.hooks + "/sink", body: ["data": ["url": .string(receiver.url), "secret": .string(Self.secret)]])
        #expect(status == 201)
        #expect(created?["data"]?["secret"] == nil && !(created?.serialized().contains(Self.secret) ?? true))
        for i in 0..<20 { _ = try await server.request(.PUT, Self.records + "r\(i)", body: ["data": ["n": .int(Int64(i))]]) }
        _ = try await server.request(.DELETE, Self.records + "r3")
        // Like `_since`, deliveries carry each record's latest state: a record changed twice before
        // its delivery arrives once. Replayed in order, they rebuild exactly the server's collection.
        let (_, feed) = try await server.request(.GET, Self.records.dropLast() + "?_since=0&_sort=last_modified")
        let expected = Dictionary(uniqueKeysWithValues: (feed?["data"]?.arrayValue ?? []).map { ($0["id"]!.stringValue!, $0) })
        var replayed: [String: JSON] = [:]
        #expect(try await Self.eventually {
            replayed = [:]
            for change in try Self.changes(try await receiver.received()) { replayed[change["id"]!.stringValue!] = change }
            return replayed == expected
        }, "\(replayed.count) of \(expected.count)")
        #expect(replayed["r3"]?["deleted"] == true)
        let changes = try Self.changes(try await receiver.received())
        let stamps = changes.map { $0["last_modified"]!.intValue! }
        #expect(zip(stamps, stamps.dropFirst()).allSatisfy { $0 < $1 })
        let ids = try await receiver.received().map(\.delivery)
        #expect(Set(ids).count == ids.count)
        let (_, hook) = try await server.request(.GET, Self.hooks + "/sink")
        #expect(hook?["data"]?["delivered"] == .int(Int64(changes.count)), "\(hook?.serialized() ?? "")")
        #expect(hook?["data"]?["log"]?.arrayValue?.first?["status"] == 200)
        #expect(!(hook?.serialized().contains(Self.secret) ?? true))
        let (_, log) = try await server.request(.GET, Self.hooks + "/sink/deliveries")
        #expect((log?["data"]?.arrayValue?.count ?? 0) == ids.count)
    }

    /// A receiver that fails gets the same delivery again, with backoff, until it takes it; order holds.
    @Test func failedDeliveriesAreRetriedWithTheSameIDAndOrderHolds() async throws {
        let server = try await Self.server()
        let receiver = try WebhookReceiver()
        try await receiver.mode(fail: 3, status: 503)
        _ = try await server.request(.PUT, Self.hooks + "/sink", body: ["data": ["url": .string(receiver.url), "secret": .string(Self.secret)]])
        _ = try await server.request(.PUT, Self.records + "first", body: ["data": ["n": 1]])
        #expect(try await Self.eventually(30) { try Self.changes(try await receiver.received()).count >= 1 })
        for i in 0..<5 { _ = try await server.request(.PUT, Self.records + "next\(i)", body: ["data": ["n": .int(Int64(i))]]) }
        #expect(try await Self.eventually(30) { try Self.changes(try await receiver.received()).count == 6 })
        let all = try await receiver.received()
        #expect(all.prefix(4).map(\.status) == [503, 503, 503, 200])
        #expect(Set(all.prefix(4).map(\.delivery)).count == 1, "a retry is the same delivery")
        #expect(try Self.changes(all).map { $0["id"]!.stringValue! } == ["first"] + (0..<5).map { "next\($0)" })
        let (_, log) = try await server.request(.GET, Self.hooks + "/sink/deliveries")
        let statuses = log?["data"]?.arrayValue?.compactMap { $0["status"]?.intValue } ?? []
        #expect(statuses.filter { $0 == 503 }.count == 3, "\(statuses)")
    }

    /// The queue is the change feed on disk: a server that restarts while the receiver is down
    /// delivers everything once the receiver is back.
    @Test func deliveriesSurviveAServerRestartAndAReceiverOutage() async throws {
        var server: ServeProcess? = try await Self.server()
        let data = server!.directory
        let serverPort = server!.port
        var receiver: WebhookReceiver? = try WebhookReceiver()
        let receiverPort = receiver!.port
        _ = try await server!.request(.PUT, Self.hooks + "/sink", body: ["data": ["url": .string(receiver!.url), "secret": .string(Self.secret), "batch_size": 4]])
        _ = try await server!.request(.PUT, Self.records + "before", body: ["data": ["n": 0]])
        #expect(try await Self.eventually { try Self.changes(try await receiver!.received()).count == 1 })
        receiver!.crash()
        receiver = nil
        for i in 0..<10 { _ = try await server!.request(.PUT, Self.records + "down\(i)", body: ["data": ["n": .int(Int64(i))]]) }
        server!.crash()
        server = try await Self.server(directory: data, port: serverPort)
        receiver = try WebhookReceiver(port: receiverPort)
        #expect(try await Self.eventually(40) { try Self.changes(try await receiver!.received()).count == 10 })
        let ids = try Self.changes(try await receiver!.received()).map { $0["id"]!.stringValue! }
        #expect(ids == (0..<10).map { "down\($0)" })
        let (_, hook) = try await server!.request(.GET, Self.hooks + "/sink")
        #expect(hook?["data"]?["failures"] == 0)
    }

    /// A slow receiver holds up neither the writes nor the other webhooks' deliveries.
    @Test func aSlowReceiverDoesNotHoldUpWrites() async throws {
        let server = try await Self.server()
        let slow = try WebhookReceiver()
        try await slow.mode(hold: true)  // answers nothing until released
        let fast = try WebhookReceiver()
        _ = try await server.request(.PUT, Self.hooks + "/slow", body: ["data": ["url": .string(slow.url), "secret": .string(Self.secret)]])
        _ = try await server.request(.PUT, Self.hooks + "/fast", body: ["data": ["url": .string(fast.url), "secret": .string(Self.secret)]])
        for i in 0..<50 {
            let (status, _) = try await server.request(.PUT, Self.records + "w\(i)", body: ["data": ["n": .int(Int64(i))]])
            #expect(status == 201)
        }
        #expect(try await Self.eventually { try Self.changes(try await fast.received()).count == 50 })
        #expect(try await slow.received().isEmpty)
        // Released, the slow receiver gets every change too (a delivery the server gave up on
        // while it was held comes again, so ids, not deliveries, are counted).
        try await slow.mode(hold: false)
        let ids = { try Set(Self.changes(try await slow.received()).compactMap { $0["id"]?.stringValue }) }
        _ = try await Self.eventually(60) { try await ids().count == 50 }
        let arrived = try await ids().count
        #expect(arrived == 50, "\(arrived) of 50 changes reached the released receiver")
    }

    /// Webhooks may not point inside the server's network unless allowed; nothing is stored.
    @Test func internalAddressesAreRefusedByDefault() async throws {
        let server = try await Self.server([:])
        let cases: [(String, String)] = [
            ("http://127.0.0.1:9/hook", "internal address 127.0.0.1"),
            ("http://localhost:9/hook", "internal address"),
            ("http://10.0.0.7/hook", "internal address 10.0.0.7"),
            ("http://169.254.169.254/latest/meta-data", "internal address 169.254.169.254"),
            ("http://[::1]:9/hook", "internal address ::1"),
            ("http://[::ffff:192.168.1.1]/hook", "internal address"),
            ("http://0.0.0.0/hook", "internal address"),
            ("file:///etc/passwd", "http:// or https://"),
            ("gopher://example.com/", "http:// or https://"),
            ("http://user:pw@example.com/", "credentials"),
            ("not a url", "absolute"),
        ]
        for (url, mention) in cases {
            let (status, body) = try await server.request(.PUT, Self.hooks + "/h", body: ["data": ["url": .string(url), "secret": .string(Self.secret)]])
            #expect(status == 400, "\(url)")
            #expect(body?["message"]?.stringValue?.contains(mention) == true, "\(url): \(body?.serialized() ?? "")")
        }
        let (_, list) = try await server.request(.GET, Self.hooks)
        #expect(list?["data"]?.arrayValue?.isEmpty == true)
    }

    @Test func badRegistrationsAreRefusedAndChangeNothing() async throws {
        let server = try await Self.server()
        let receiver = try WebhookReceiver()
        let cases: [(JSON, String)] = [
            (["data": ["secret": .string(Self.secret)]], "url"),
            (["data": ["url": .string(receiver.url)]], "secret"),
            (["data": ["url": .string(receiver.url), "secret": "short"]], "secret"),
            (["data": ["url": .string(receiver.url), "secret": .string(Self.secret), "batch_size": 0]], "batch_size"),
            (["data": ["url": .string(receiver.url), "secret": .string(Self.secret), "batch_size": "ten"]], "batch_size"),
            (["data": ["url": .string(receiver.url), "secret": .string(Self.secret), "since": -1]], "since"),
            (["data": ["url": .string(receiver.url), "secret": .string(Self.secret), "events": ["create"]]], "unknown field"),
            (["data": ["url": 42, "secret": .string(Self.secret)]], "url"),
            (["nodata": true], "data"),
        ]
        for (body, mention) in cases {
            let (status, answer) = try await server.request(.PUT, Self.hooks + "/h", body: body)
            #expect(status == 400, "\(body.serialized())")
            #expect(answer?["message"]?.stringValue?.contains(mention) == true, "\(answer?.serialized() ?? "")")
        }
        let (badID, _) = try await server.request(.PUT, Self.hooks + "/bad%20id", body: ["data": ["url": .string(receiver.url), "secret": .string(Self.secret)]])
        #expect(badID == 400)
        let (noCollection, _) = try await server.request(.PUT, "/buckets/main/collections/nope/webhooks/h", body: ["data": ["url": .string(receiver.url), "secret": .string(Self.secret)]])
        #expect(noCollection == 404)
        let (_, list) = try await server.request(.GET, Self.hooks)
        #expect(list?["data"]?.arrayValue?.isEmpty == true)
    }

    /// Only who may write the collection sees or changes its webhooks.
    @Test func onlyTheCollectionsWritersManageItsWebhooks() async throws {
        let server = try await Self.server()
        let receiver = try WebhookReceiver()
        #expect(try await server.request(.PUT, Self.hooks + "/sink", body: ["data": ["url": .string(receiver.url), "secret": .string(Self.secret)]]).0 == 201)
        // bob may read the collection, not write it.
        let (_, hello) = try await server.request(.GET, "/", user: "bob")
        let bob = hello?["user"]?["id"]?.stringValue ?? ""
        _ = try await server.request(.PATCH, "/buckets/main/collections/users", body: ["permissions": ["read": [.string(bob)]]])
        for (method, path) in [(HTTPMethod.GET, Self.hooks), (.GET, Self.hooks + "/sink"), (.GET, Self.hooks + "/sink/deliveries"), (.DELETE, Self.hooks + "/sink")] {
            #expect(try await server.request(method, path, user: "bob").0 == 403, "\(method) \(path)")
            #expect(try await server.request(method, path, user: nil).0 == 401, "\(method) \(path)")
        }
        #expect(try await server.request(.PUT, Self.hooks + "/mine", body: ["data": ["url": .string(receiver.url), "secret": .string(Self.secret)]], user: "bob").0 == 403)
        let (_, list) = try await server.request(.GET, Self.hooks)
        #expect(list?["data"]?.arrayValue?.map { $0["id"]!.stringValue! } == ["sink"])
        #expect(try await server.request(.DELETE, Self.hooks + "/sink").0 == 200)
        #expect(try await server.request(.GET, Self.hooks + "/sink").0 == 404)
    }
}

/// Two `ferry serve` processes on one PostgreSQL database: one of them delivers the webhooks,
/// whichever process they were registered or written through, and the other takes over when it dies.
@Suite(.serialized, .enabled(if: PostgresCluster.enabled, "PostgreSQL is not installed: its tests are skipped (CI sets FERRY_REQUIRE_POSTGRES=1 and runs them)"))
struct PostgresWebhookTests {
    static func leads(_ server: ServeProcess) async -> Bool {
        (try? await getText("http://127.0.0.1:\(server.port)/metrics"))?.contains("ferry_webhooks_leading 1") == true
    }

    /// The ids of the records the receiver has had, and whether each delivery came once.
    static func delivered(_ receiver: WebhookReceiver) async throws -> (ids: Set<String>, repeats: Int) {
        let deliveries = try await receiver.received()
        let ids = try WebhookTests.changes(deliveries).compactMap { $0["id"]?.stringValue }
        return (Set(ids), deliveries.count - Set(deliveries.map(\.delivery)).count)
    }

    @Test func oneProcessDeliversAndAnotherTakesOverWhenItDies() async throws {
        let url = try PostgresCluster.shared().createDatabase("hooks")
        let environment = ["FERRY_DATABASE": url, "FERRY_SECRET": "a-secret-shared-by-both-processes", "FERRY_WEBHOOK_ALLOW_HOSTS": "127.0.0.1"]
        let a = try ServeProcess(environment: environment)
        let b = try ServeProcess(environment: environment)
        let receiver = try WebhookReceiver()
        #expect(try await a.request(.PUT, "/buckets/main").0 == 201)
        #expect(try await b.request(.PUT, "/buckets/main/collections/users").0 == 201)
        // Registered through one process; the other may be the one that delivers.
        let hook: JSON = ["data": ["url": .string(receiver.url), "secret": .string(WebhookTests.secret)]]
        #expect(try await b.request(.PUT, WebhookTests.hooks + "/h", body: hook).0 == 201)
        #expect(await WebhookTests.eventually { await Self.leads(a) != Self.leads(b) }, "not exactly one process leads")

        for i in 0..<20 {
            let server = i % 2 == 0 ? a : b
            #expect(try await server.request(.PUT, WebhookTests.records + "w\(i)", body: ["data": ["n": .int(Int64(i))]]).0 == 201)
        }
        let everyWrite = Set((0..<20).map { "w\($0)" })
        #expect(try await WebhookTests.eventually { try await Self.delivered(receiver).ids == everyWrite })
        // Nothing came twice: the other process did not deliver too.
        try await Task.sleep(for: .seconds(1))
        let before = try await Self.delivered(receiver)
        #expect(before.repeats == 0 && before.ids == everyWrite, "\(before)")

        // The leader dies; the other one takes over, and what is written through it arrives.
        let (leader, survivor) = await Self.leads(a) ? (a, b) : (b, a)
        leader.crash()
        for i in 20..<30 {
            #expect(try await survivor.request(.PUT, WebhookTests.records + "w\(i)", body: ["data": ["n": .int(Int64(i))]]).0 == 201)
        }
        #expect(await WebhookTests.eventually(30) { await Self.leads(survivor) })
        let all = Set((0..<30).map { "w\($0)" })
        #expect(try await WebhookTests.eventually(30) { try await Self.delivered(receiver).ids == all })
    }
}
