import AsyncHTTPClient
import CoreMetrics
public import FerryCore
import FerryStore
import Foundation
public import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
public import ServiceLifecycle

/// Delivers each collection's changes to its webhooks.
///
/// The change feed is the queue: each webhook keeps a cursor (the last timestamp its receiver
/// acknowledged with a 2xx) and its worker POSTs the next `batch_size` changes after it. So
/// deliveries go in order per collection, a slow or dead receiver costs no memory (nothing is
/// queued; the feed is on disk), writes never wait for deliveries, and a restart resumes at the
/// cursor. A failed delivery is retried with exponential backoff (1 s doubling to 1 h, with
/// jitter), under the same delivery id (`WEBHOOK-TIMESTAMP`), so receivers can drop repeats.
/// Every attempt lands in the webhook's log (the newest ``KintoAPI/webhookLogSize``).
///
/// With several server processes on one database (PostgreSQL), one of them delivers: the one
/// that leads `webhooks` (``Storage/whileLeading(_:_:)``); another takes over when it goes away,
/// at the cursors it left. `ferry_webhooks_leading` says which one it is.
public final class WebhookDispatcher: Service, Sendable {
    let api: KintoAPI
    let logger: Logger
    let timeout: TimeAmount
    let metrics: ServerMetrics?
    let timeoutSeconds: Int
    private let workers = NIOLockedValueBox<[String: Task<Void, Never>]>([:])

    public init(api: KintoAPI, logger: Logger, timeoutSeconds: Int = 10, metrics: ServerMetrics? = nil) {
        self.api = api
        self.logger = logger
        self.metrics = metrics
        self.timeoutSeconds = timeoutSeconds
        timeout = .seconds(Int64(timeoutSeconds))
    }

    public func run() async throws {
        // Made here, not in init: a client must be shut down, and only a running dispatcher does that.
        var configuration = HTTPClient.Configuration()
        // A redirect could lead past the address policy: receivers must answer themselves.
        configuration.redirectConfiguration = .disallow
        configuration.timeout = .init(connect: .seconds(Int64(min(timeoutSeconds, 10))), read: .seconds(Int64(timeoutSeconds)))
        let client = HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
        await cancelWhenGracefulShutdown {
            await self.api.storage.whileLeading("webhooks") {
                self.metrics?.webhooksLeading.record(1)
                await self.deliver(client)
                self.metrics?.webhooksLeading.record(0)
            }
        }
        try? await client.shutdown()
    }

    /// Keeps one worker per webhook until cancelled, then stops them.
    func deliver(_ client: HTTPClient) async {
        while !Task.isCancelled {
            await reconcile(client)
            _ = await api.webhooksChanged.wait(timeout: .seconds(30))
        }
        let running = workers.withLockedValue { workers in
            defer { workers = [:] }
            return Array(workers.values)
        }
        for task in running { task.cancel() }
        for task in running { await task.value }
    }

    /// One worker per registered webhook.
    func reconcile(_ client: HTTPClient) async {
        let ids: [String]
        do {
            ids = try await api.storage.read { session in
                var ids: [String] = []
                try session.list(KintoAPI.webhooksKey, query: ListQuery(sort: [])) { hook in
                    ids.append(hook.id)
                    return true
                }
                return ids
            }
        } catch {
            logger.warning("webhooks: cannot list them", metadata: ["ferry.error": .string("\(error)")])
            return
        }
        let wanted = Set(ids)
        workers.withLockedValue { workers in
            for id in ids where workers[id] == nil {
                workers[id] = Task { await self.work(id, client: client) }
            }
            for (id, task) in workers where !wanted.contains(id) {
                task.cancel()
                workers[id] = nil
            }
        }
    }

    /// What a worker reads in one transaction.
    enum Next {
        case deleted
        case collectionGone
        /// Retention purged tombstones after the cursor: the feed from it would miss deletes.
        case behindHorizon(KintoError)
        case deliver(url: String, secret: String, changes: [StoredObject], notBefore: Int64?)
    }

    func work(_ storageID: String, client: HTTPClient) async {
        let parts = storageID.split(separator: "/").map(String.init)
        guard parts.count == 3 else { return }
        let (bucket, collection, hookID) = (parts[0], parts[1], parts[2])
        let records = ResourceKey(parentID: "/buckets/\(bucket)/collections/\(collection)", resourceName: "record")
        let subscription = api.changeHub.subscribe(records.parentID)
        defer {
            api.changeHub.unsubscribe(subscription)
            workers.withLockedValue { _ = $0.removeValue(forKey: storageID) }
        }
        while !Task.isCancelled && !subscription.isClosed {
            let next: Next
            do {
                next = try await api.storage.read { session in
                    guard let stored = try session.get(KintoAPI.webhooksKey, id: storageID, includeDeleted: false) else { return .deleted }
                    let collectionKey = ResourceKey(parentID: "/buckets/\(bucket)", resourceName: "collection")
                    guard try session.get(collectionKey, id: collection, includeDeleted: false) != nil else { return .collectionGone }
                    let fields = try stored.parsed()
                    let cursor = fields["cursor"]?.intValue ?? 0
                    let size = Int(fields["batch_size"]?.intValue ?? 100)
                    var changes: [StoredObject] = []
                    let query = ListQuery(filters: [Filter("last_modified", .gt, .int(cursor))], sort: [Sort("last_modified")],
                                          limit: size, includeDeleted: true)
                    try session.list(records, query: query) { object in
                        changes.append(object)
                        return true
                    }
                    // Read after the page, as a records list does (the horizon only grows).
                    let horizon = try session.tombstoneHorizon(records)
                    if cursor > 0, cursor < horizon {
                        return .behindHorizon(.beforeTombstoneHorizon("The webhook's cursor", since: cursor, horizon: horizon))
                    }
                    return .deliver(url: fields["url"]?.stringValue ?? "", secret: fields["secret"]?.stringValue ?? "",
                                    changes: changes, notBefore: fields["next_attempt"]?.intValue)
                }
            } catch {
                logger.warning("webhooks: cannot read", metadata: ["ferry.webhook": .string(storageID), "ferry.error": .string("\(error)")])
                try? await Task.sleep(for: .seconds(5))
                continue
            }
            switch next {
            case .deleted:
                return
            case .collectionGone:
                // The collection was deleted: so are its webhooks, as its records are.
                _ = try? await api.storage.write { session in
                    _ = try session.delete(KintoAPI.webhooksKey, id: storageID, requestedTimestamp: nil)
                }
                return
            case .behindHorizon(let error):
                // Delivering what is left would silently skip deletes: stop, and say why where
                // the webhook's owner reads it. Setting `since` again (PUT) moves the cursor.
                do {
                    try await stall(storageID: storageID, error: error.message)
                } catch {
                    logger.warning("webhooks: cannot save the delivery state", metadata: ["ferry.webhook": .string(storageID), "ferry.error": .string("\(error)")])
                }
                _ = await subscription.wait(timeout: .seconds(30))
            case .deliver(let url, let secret, let changes, let notBefore):
                if changes.isEmpty {
                    _ = await subscription.wait(timeout: .seconds(30))
                    continue
                }
                let now = Self.nowMilliseconds()
                if let notBefore, notBefore > now {
                    // Backing off; a changed registration (a new url, `since`) wakes the dispatcher, which restarts nothing: check every few seconds.
                    try? await Task.sleep(for: .milliseconds(min(notBefore - now, 5_000)))
                    continue
                }
                let attempt = await deliver(url: url, secret: secret, changes: changes, bucket: bucket, collection: collection, hookID: hookID, client: client)
                do {
                    try await record(attempt, storageID: storageID)
                } catch {
                    logger.warning("webhooks: cannot save the delivery state", metadata: ["ferry.webhook": .string(storageID), "ferry.error": .string("\(error)")])
                    try? await Task.sleep(for: .seconds(1))
                }
            }
        }
    }

    /// One delivery attempt's outcome.
    struct Attempt {
        var delivery: String
        var lastTimestamp: Int64
        var count: Int
        var status: Int?
        var error: String?
        var milliseconds: Int64
        var at: Int64
        var succeeded: Bool { error == nil && (200..<300).contains(status ?? 0) }
    }

    func deliver(url: String, secret: String, changes: [StoredObject], bucket: String, collection: String, hookID: String,
                 client: HTTPClient) async -> Attempt {
        let last = changes[changes.count - 1].lastModified
        let delivery = "\(hookID)-\(last)"
        let started = Self.nowMilliseconds()
        var attempt = Attempt(delivery: delivery, lastTimestamp: last, count: changes.count, milliseconds: 0, at: started)
        defer { metrics?.webhookDelivery(succeeded: attempt.succeeded) }
        if let refusal = api.settings.webhookPolicy.refusal(for: url) {
            attempt.error = "refused: \(refusal)"
            return attempt
        }
        var body: [UInt8] = []
        body.reserveCapacity(changes.reduce(200) { $0 + $1.json.utf8.count + 1 })
        body += Array("{\"bucket\":".utf8)
        JSON.string(bucket).write(to: &body)
        body += Array(",\"changes\":[".utf8)
        for (i, change) in changes.enumerated() {
            if i > 0 { body.append(UInt8(ascii: ",")) }
            body += Array(change.json.utf8)
        }
        body += Array("],\"collection\":".utf8)
        JSON.string(collection).write(to: &body)
        body += Array(",\"event\":\"changes\",\"id\":".utf8)
        JSON.string(delivery).write(to: &body)
        body += Array(",\"timestamp\":\(last),\"webhook\":".utf8)
        JSON.string(hookID).write(to: &body)
        body.append(UInt8(ascii: "}"))

        var request = HTTPClientRequest(url: url)
        request.method = .POST
        request.headers.add(name: "Content-Type", value: "application/json")
        request.headers.add(name: "User-Agent", value: "ferry-webhooks/\(api.settings.version)")
        request.headers.add(name: WebhookSignature.deliveryHeaderName, value: delivery)
        request.headers.add(name: WebhookSignature.eventHeaderName, value: "changes")
        request.headers.add(name: WebhookSignature.headerName,
                            value: WebhookSignature.header(secret: secret, timestamp: Int(Date().timeIntervalSince1970), delivery: delivery, body: body))
        request.body = .bytes(ByteBuffer(bytes: body))
        do {
            let response = try await client.execute(request, timeout: timeout)
            attempt.status = Int(response.status.code)
            // Read (a little of) the answer, so the connection can be used again.
            _ = try? await response.body.collect(upTo: 64 << 10)
            if !attempt.succeeded { attempt.error = "the receiver answered \(response.status.code)" }
        } catch {
            attempt.error = Self.describe(error)
        }
        attempt.milliseconds = Self.nowMilliseconds() - started
        let metadata: Logger.Metadata = [
            "ferry.webhook": .string("\(bucket)/\(collection)/\(hookID)"), "ferry.delivery": .string(delivery),
            "ferry.changes": .stringConvertible(changes.count), "ferry.status": .string(attempt.status.map(String.init) ?? "-"),
            "ferry.duration_ms": .stringConvertible(attempt.milliseconds),
        ]
        if attempt.succeeded {
            logger.info("webhook delivered", metadata: metadata)
        } else {
            logger.warning("webhook delivery failed", metadata: metadata.merging(["ferry.error": .string(attempt.error ?? "")]) { $1 })
        }
        return attempt
    }

    /// Saves an attempt: the log, and on success the new cursor; on failure the next try's time.
    func record(_ attempt: Attempt, storageID: String) async throws {
        try await api.storage.write { session in
            guard let stored = try session.get(KintoAPI.webhooksKey, id: storageID, includeDeleted: false) else { return }
            var fields = try stored.parsed()
            fields["id"] = nil
            fields["last_modified"] = nil
            var entry: [String: JSON] = [
                "id": .string(attempt.delivery), "at": .int(attempt.at), "changes": .int(Int64(attempt.count)),
                "duration_ms": .int(attempt.milliseconds), "status": attempt.status.map { .int(Int64($0)) } ?? .null,
            ]
            if let error = attempt.error { entry["error"] = .string(error) }
            var log = fields["log"]?.arrayValue ?? []
            log.insert(.object(entry), at: 0)
            if log.count > KintoAPI.webhookLogSize { log.removeLast(log.count - KintoAPI.webhookLogSize) }
            fields["log"] = .array(log)
            if attempt.succeeded {
                if (fields["cursor"]?.intValue ?? 0) < attempt.lastTimestamp { fields["cursor"] = .int(attempt.lastTimestamp) }
                fields["delivered"] = .int((fields["delivered"]?.intValue ?? 0) + Int64(attempt.count))
                fields["failures"] = 0
                fields["next_attempt"] = nil
                fields["last_error"] = nil
            } else {
                let failures = (fields["failures"]?.intValue ?? 0) + 1
                fields["failures"] = .int(failures)
                fields["next_attempt"] = .int(Self.nowMilliseconds() + Self.backoffMilliseconds(failures: Int(failures)))
                fields["last_error"] = .string(attempt.error ?? "failed")
            }
            _ = try session.put(KintoAPI.webhooksKey, id: storageID, data: fields, requestedTimestamp: nil)
        }
    }

    /// Saves `last_error` of a webhook that cannot go on (once: an unchanged error writes nothing).
    func stall(storageID: String, error: String) async throws {
        try await api.storage.write { session in
            guard let stored = try session.get(KintoAPI.webhooksKey, id: storageID, includeDeleted: false) else { return }
            var fields = try stored.parsed()
            guard fields["last_error"]?.stringValue != error else { return }
            fields["id"] = nil
            fields["last_modified"] = nil
            fields["last_error"] = .string(error)
            _ = try session.put(KintoAPI.webhooksKey, id: storageID, data: fields, requestedTimestamp: nil)
        }
    }

    /// 1 s, 2 s, 4 s … up to an hour, ±20 %.
    static func backoffMilliseconds(failures: Int, random: Double = Double.random(in: 0.8...1.2)) -> Int64 {
        let seconds = min(3600, pow(2, Double(min(failures - 1, 12))))
        return Int64(seconds * 1000 * random)
    }

    static func nowMilliseconds() -> Int64 { Int64(Date().timeIntervalSince1970 * 1000) }

    static func describe(_ error: any Error) -> String {
        let text = String(describing: error)
        if text.localizedCaseInsensitiveContains("refused") { return "connection refused" }
        if text.localizedCaseInsensitiveContains("timeout") || text.localizedCaseInsensitiveContains("deadline") { return "timed out" }
        return String(text.prefix(200))
    }
}
