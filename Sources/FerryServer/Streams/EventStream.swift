import CoreMetrics
import FerryCore
import FerryStore
import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOConcurrencyHelpers
import NIOCore
public import ServiceLifecycle

/// `GET /v1/buckets/B/collections/C/records` with `Accept: text/event-stream`: every change
/// of the collection as a Server-Sent Event, from `_since` or `Last-Event-ID` on.
///
/// Each event is `id: <last_modified>` and `data: <record or tombstone JSON>`; timestamps
/// increase strictly within a collection, so a client that reconnects with the last id it
/// saw misses nothing and sees nothing twice. Idle streams get a `: heartbeat` comment every
/// `stream_heartbeat` seconds. Every read of the feed checks read permission again: a stream
/// whose permission is withdrawn, or whose collection is deleted, ends with `event: error`.
///
/// A client that goes away is noticed when a write to it fails: the server does not read the
/// connection while it streams, so its slot is freed at the second heartbeat or event after the
/// disconnection (at most about 2 × `stream_heartbeat`).
struct EventStream: Sendable {
    let bucket: String
    let collection: String

    var collectionURI: String { "/buckets/\(bucket)/collections/\(collection)" }

    /// The stream a request asks for: a GET of a records list that accepts `text/event-stream`.
    static func target(path: String, accept: String?) -> EventStream? {
        guard let accept, accept.lowercased().contains("text/event-stream") else { return nil }
        let parts = path.split(separator: "/", omittingEmptySubsequences: false)
        // "", "v1", "buckets", B, "collections", C, "records"
        guard parts.count == 7, parts[0].isEmpty, parts[1] == "v1", parts[2] == "buckets", parts[4] == "collections", parts[6] == "records",
              !parts[3].isEmpty, !parts[5].isEmpty else { return nil }
        return EventStream(bucket: String(parts[3]), collection: String(parts[5]))
    }

    /// Where the stream starts: `Last-Event-ID` (a reconnecting client), else `_since`, else now.
    static func start(lastEventID: String?, query: [(String, String)]) throws(KintoError) -> Int64? {
        if let lastEventID = lastEventID?.trimmingCharacters(in: .whitespaces), !lastEventID.isEmpty {
            guard let value = Int64(lastEventID), value >= 0 else {
                throw .invalidParameters(location: "header", name: "Last-Event-ID", description: "Last-Event-ID must be a timestamp (an event's id), not \"\(lastEventID.prefix(40))\"")
            }
            return value
        }
        for (name, value) in query {
            switch name {
            case "_since":
                guard let since = Int64(value.trimmingCharacters(in: CharacterSet(charactersIn: "\""))), since >= 0 else {
                    throw .invalidParameters(location: "querystring", name: "_since", description: "Invalid value for _since")
                }
                return since
            case "_limit", "_sort", "_token", "_fields", "_before", "_to", "_wait":
                throw .invalidParameters(location: "querystring", name: name, description: "\(name) does not apply to an event stream (it takes _since only)")
            default:
                if !name.hasPrefix("_") {
                    throw .invalidParameters(location: "querystring", name: name, description: "an event stream takes no filters (it sends every change)")
                }
            }
        }
        return nil
    }

    /// The SSE text of some changes.
    static func events(_ changes: [StoredObject]) -> ByteBuffer {
        var buffer = ByteBuffer()
        for change in changes {
            buffer.writeString("id: \(change.lastModified)\ndata: ")
            buffer.writeString(change.json)
            buffer.writeString("\n\n")
        }
        return buffer
    }

    static func errorEvent(_ error: KintoError) -> ByteBuffer {
        ByteBuffer(string: "event: error\ndata: " + String(decoding: error.body.serializedBytes(), as: UTF8.self) + "\n\n")
    }
}

/// Counts open streams against `max_streams`.
final class StreamSlots: Sendable {
    private let count = NIOLockedValueBox(0)
    func take(max: Int) -> Bool { count.withLockedValue { if $0 >= max { return false }; $0 += 1; return true } }
    func give() { count.withLockedValue { $0 -= 1 } }
}

extension FerryResponder {
    enum StreamOpening {
        case opened(Response)
        case refused(APIResponse)
    }

    /// Checks the caller may read the collection and opens its stream; errors are answered as usual.
    /// The caller is the one ``AuthenticationMiddleware`` admitted.
    func openStream(_ request: Request, stream: EventStream, context: Context) async -> StreamOpening {
        let headers = context.headers
        let identity = context.identity ?? .anonymous
        let requestID = context.requestID
        let since: Int64?
        do {
            since = try EventStream.start(lastEventID: headers["last-event-id"], query: APIRequest.parseQuery(Substring(request.uri.query ?? "")))
        } catch {
            return .refused(APIResponse(error: error))
        }
        guard streamSlots.take(max: limits.maxStreams) else {
            return .refused(APIResponse(error: .backend("This server holds \(limits.maxStreams) event streams already (max_streams). Retry later.",
                                                        retryAfter: api.settings.retryAfterSeconds)))
        }
        let api = self.api
        let hub = api.changeHub
        // Subscribe before the first read: a change committed in between still wakes the stream.
        let subscription = hub.subscribe(stream.collectionURI)
        let first: (changes: [StoredObject], timestamp: Int64)
        do {
            first = try await api.changes(bucket: stream.bucket, collection: stream.collection, since: since, identity: identity)
        } catch {
            hub.unsubscribe(subscription)
            streamSlots.give()
            return .refused(api.errorResponse(error))
        }
        let heartbeat = Duration.milliseconds(Int64(limits.streamHeartbeat * 1000))
        let metrics = self.metrics
        let slots = streamSlots
        let logger = context.logger
        var fields = HTTPFields()
        fields[.contentType] = "text/event-stream; charset=utf-8"
        fields[.cacheControl] = "no-cache"
        fields[HTTPField.Name("X-Accel-Buffering")!] = "no"
        let body = ResponseBody { writer in
            metrics.openStreams.increment()
            var sent = 0
            defer {
                hub.unsubscribe(subscription)
                slots.give()
                metrics.openStreams.decrement()
                logger.info("stream closed", metadata: ["ferry.request.id": .string(requestID), "ferry.events": .stringConvertible(sent)])
            }
            var cursor = since ?? first.timestamp
            var batch = first.changes
            try await writer.write(ByteBuffer(string: "retry: 1000\n: ferry change stream of \(stream.collectionURI) after \(cursor)\n\n"))
            while !Task.isCancelled {
                if !batch.isEmpty {
                    try await writer.write(EventStream.events(batch))
                    sent += batch.count
                    metrics.streamEvents.increment(by: Int64(batch.count))
                    cursor = batch[batch.count - 1].lastModified
                }
                if batch.count < KintoAPI.changesPerRead {
                    let woken = await subscription.wait(timeout: heartbeat)
                    if subscription.isClosed || Task.isCancelled { break }
                    if !woken {
                        try await writer.write(ByteBuffer(string: ": heartbeat\n\n"))
                        batch = []
                        continue
                    }
                }
                do {
                    batch = try await api.sharedChanges(bucket: stream.bucket, collection: stream.collection, since: cursor, identity: identity)
                } catch let error as KintoError {
                    try await writer.write(EventStream.errorEvent(error))
                    break
                } catch {
                    try await writer.write(EventStream.errorEvent(.backend("The storage backend failed: \(error). Reconnect later.", retryAfter: 1)))
                    break
                }
            }
            try await writer.finish(nil)
        }
        return .opened(Response(status: .ok, headers: fields, body: body))
    }
}

/// Ends every event stream and long-poll when the server starts to shut down, so the HTTP
/// server's graceful shutdown does not wait for them forever. Run it beside the application,
/// after it in the service list (services shut down in reverse order).
public struct ChangeHubCloser: Service {
    let hub: ChangeHub

    public init(hub: ChangeHub) {
        self.hub = hub
    }

    public func run() async throws {
        try? await gracefulShutdown()
        hub.close()
    }
}
