public import FerryCore
import FerrySync
public import Foundation
import HTTPTypes
public import Hummingbird

/// A webhook delivery the receiver accepted: signed with the secret, recent, and new.
public struct WebhookDelivery: Sendable {
    /// The `Ferry-Delivery` id (the same on every retry of one delivery).
    public var id: String
    /// When the sender signed it, in Unix seconds.
    public var signedAt: Int
    public var bucket: String?
    public var collection: String?
    /// The id of the server's webhook that sent it.
    public var webhook: String?
    /// The largest `last_modified` among the changes.
    public var timestamp: Int64?
    /// The changed records and tombstones, as sent.
    public var changes: [JSON]
}

/// Answers the POSTs of a Ferry server's webhook: checks each signature, refuses replays and
/// answers retries as duplicates, and hands every new delivery to `onDelivery`.
///
/// | answer | when |
/// | --- | --- |
/// | 202 `{"status":"accepted","delivery":ID}` | a new, correctly signed delivery (after `onDelivery` returned) |
/// | 200 `{"status":"duplicate","delivery":ID}` | a delivery id accepted before: a retry, or a replay within the tolerance |
/// | 400 `{"status":"error","message":…}` | no valid `Ferry-Delivery`; a body that is not a JSON object with a `changes` array, or whose `id` is not the `Ferry-Delivery` |
/// | 401 | `Ferry-Signature` missing, malformed or wrong, or dated outside the tolerance (a replay of an old delivery) |
/// | 404 | a path other than `/` and `/webhook` |
/// | 405 | a method other than POST |
/// | 413 | a body over ``Configuration/maxBodySize`` |
///
/// The signature is checked before the body is read as JSON, and the secret never reaches
/// an answer or the log. `onDelivery` is awaited before the 202, so it should only hand the
/// delivery on (``CoalescedRuns/trigger(_:)`` does), not do the work.
public struct WebhookReceiver: HTTPResponder {
    public typealias Context = BasicRequestContext

    public struct Configuration: Sendable {
        /// The secret shared with the server's webhook. Never logged.
        public var secret: String
        /// Seconds a signature's timestamp may be from this machine's clock, either way.
        public var tolerance = WebhookSignature.defaultTolerance
        /// The largest body accepted, in bytes (10 MB).
        public var maxBodySize = 10 << 20
        /// The most delivery ids remembered to spot duplicates.
        public var rememberedDeliveries = 100_000

        public init(secret: String, tolerance: Int = WebhookSignature.defaultTolerance) {
            self.secret = secret
            self.tolerance = tolerance
        }
    }

    /// The paths deliveries may be posted to.
    static let paths: Set<String> = ["/", "/webhook"]

    let configuration: Configuration
    let accepted: AcceptedDeliveries
    /// This machine's clock, in Unix seconds.
    let now: @Sendable () -> Int
    /// Where one line per delivery goes (accepted or refused, and why).
    let log: @Sendable (String) -> Void
    let onDelivery: @Sendable (WebhookDelivery) async -> Void

    public init(configuration: Configuration, now: @escaping @Sendable () -> Int = { Int(Date().timeIntervalSince1970) },
         log: @escaping @Sendable (String) -> Void = { _ in }, onDelivery: @escaping @Sendable (WebhookDelivery) async -> Void) {
        self.configuration = configuration
        self.accepted = AcceptedDeliveries(limit: configuration.rememberedDeliveries)
        self.now = now
        self.log = log
        self.onDelivery = onDelivery
    }

    public func respond(to request: Request, context: Context) async throws -> Response {
        let (status, body) = await answer(request)
        var headers = HTTPFields()
        headers[.contentType] = "application/json"
        if status == .methodNotAllowed { headers[.allow] = "POST" }
        return Response(status: status, headers: headers, body: ResponseBody(byteBuffer: ByteBuffer(bytes: body.serializedBytes() + [0x0A])))
    }

    /// The status and JSON body for one request.
    func answer(_ request: Request) async -> (HTTPResponse.Status, JSON) {
        guard Self.paths.contains(request.uri.path) else {
            return Self.error(.notFound, "no such path: deliveries go to / or /webhook")
        }
        guard request.method == .post else { return Self.error(.methodNotAllowed, "webhook deliveries are POSTed") }
        let tooLarge = Self.error(.contentTooLarge, "the body is larger than \(configuration.maxBodySize) bytes")
        if let length = request.headers[.contentLength].flatMap({ Int($0) }), length > configuration.maxBodySize { return tooLarge }
        let body: [UInt8]
        do {
            body = Array(try await request.body.collect(upTo: configuration.maxBodySize).readableBytesView)
        } catch {
            return tooLarge
        }
        let deliveryHeaders = request.headers[values: HTTPField.Name(WebhookSignature.deliveryHeaderName)!]
        guard deliveryHeaders.count == 1, let id = deliveryHeaders.first, WebhookSignature.isValidDeliveryID(id) else {
            return refuse(.badRequest, "\(WebhookSignature.deliveryHeaderName) must be given once, as 1 to 200 letters, digits, . _ : or -", id: nil)
        }
        let signatures = request.headers[values: HTTPField.Name(WebhookSignature.headerName)!]
        guard signatures.count <= 1 else { return refuse(.unauthorized, "\(WebhookSignature.headerName) is given more than once", id: id) }
        let signedAt: Int
        do throws(WebhookSignatureError) {
            signedAt = try WebhookSignature.verify(header: signatures.first, secret: configuration.secret, delivery: id, body: body,
                                                   now: now(), tolerance: configuration.tolerance)
        } catch {
            return refuse(.unauthorized, error.message, id: id)
        }
        let delivery: WebhookDelivery
        do throws(SyncError) {
            delivery = try Self.delivery(id: id, signedAt: signedAt, body: body)
        } catch {
            return refuse(.badRequest, error.message, id: id)
        }
        let now = now()
        guard await accepted.insert(id, expires: max(signedAt, now) + configuration.tolerance, now: now) else {
            log("delivery \(id) is a duplicate: already accepted, not run again")
            return (.ok, ["status": "duplicate", "delivery": .string(id)])
        }
        var what = "\(delivery.changes.count) change" + (delivery.changes.count == 1 ? "" : "s")
        if let bucket = delivery.bucket, let collection = delivery.collection { what += " in \(bucket)/\(collection)" }
        log("delivery \(id) accepted: \(what)")
        await onDelivery(delivery)
        return (.accepted, ["status": "accepted", "delivery": .string(id)])
    }

    /// The delivery a signed body describes.
    /// - Throws: ``SyncError`` when the body is not a JSON object with a `changes` array, or names another delivery.
    static func delivery(id: String, signedAt: Int, body: [UInt8]) throws(SyncError) -> WebhookDelivery {
        guard let json = try? JSON.parse(bytes: body), let fields = json.objectValue else {
            throw .badInput("the body must be a JSON object with a changes array")
        }
        guard let changes = fields["changes"]?.arrayValue else { throw .badInput("the body has no changes array") }
        if let bodyID = fields["id"], bodyID != .string(id) {
            throw .badInput("the body's id is not the \(WebhookSignature.deliveryHeaderName) header")
        }
        return WebhookDelivery(id: id, signedAt: signedAt, bucket: fields["bucket"]?.stringValue, collection: fields["collection"]?.stringValue,
                               webhook: fields["webhook"]?.stringValue, timestamp: fields["timestamp"]?.intValue, changes: changes)
    }

    func refuse(_ status: HTTPResponse.Status, _ message: String, id: String?) -> (HTTPResponse.Status, JSON) {
        log("refused a delivery\(id.map { " \($0)" } ?? "") (\(status.code)): \(message)")
        return Self.error(status, message)
    }

    static func error(_ status: HTTPResponse.Status, _ message: String) -> (HTTPResponse.Status, JSON) {
        (status, ["status": "error", "message": .string(message)])
    }
}

/// The delivery ids accepted lately, so that a retry is answered as a duplicate instead of
/// running the jobs again.
///
/// An id is kept at least until a signature of it can no longer pass the time check (the
/// later of its signing time and its acceptance, plus the tolerance); at most `limit` ids
/// are kept, the oldest dropped first.
actor AcceptedDeliveries {
    private var expiries: [String: Int] = [:]
    /// Ids in the order they were accepted; `head` is the oldest still in ``expiries``' care.
    private var order: [(id: String, expires: Int)] = []
    private var head = 0
    let limit: Int

    init(limit: Int) {
        self.limit = limit
    }

    /// How many ids are remembered.
    var count: Int { expiries.count }

    /// Records `id` as accepted.
    /// - Returns: false when it already was (a duplicate).
    func insert(_ id: String, expires: Int, now: Int) -> Bool {
        while head < order.count, order[head].expires < now || expiries.count > limit {
            drop(order[head])
            head += 1
        }
        if head > 1024, head * 2 > order.count {
            order.removeFirst(head)
            head = 0
        }
        if let expiry = expiries[id], expiry >= now { return false }
        expiries[id] = expires
        order.append((id, expires))
        if expiries.count > limit {
            drop(order[head])
            head += 1
        }
        return true
    }

    private func drop(_ entry: (id: String, expires: Int)) {
        // A later acceptance of the same id has its own entry further on.
        if expiries[entry.id] == entry.expires { expiries[entry.id] = nil }
    }
}
