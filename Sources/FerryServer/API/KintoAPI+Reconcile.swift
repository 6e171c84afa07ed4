import FerryCore
import FerryStore
import NIOConcurrencyHelpers

/// `POST /v1/buckets/{bid}/collections/{cid}/reconcile`: one round of range-based set
/// reconciliation (``Reconciler``) over the collection's records as (id, ``RecordHash``),
/// the hash the sync engine's diff and verify compute, so a client can find the records
/// that differ in a few round trips without reading them. Stateless: the body is the
/// client's message, the answer the server's. Whoever may list the records may call it,
/// over the records they may read.
///
/// The items are the live records; a deleted record is simply absent, so a record the
/// client holds and the server deleted shows as held by the client only. (Tombstones as
/// items would make every tombstone a difference against an endpoint without them.)
extension KintoAPI {
    /// The most bytes in a message, either way.
    static let reconcileFrameLimit = 131_072

    /// `capabilities.reconcile` of `GET /v1/`.
    func reconcileCapability(projectURL: JSON?) -> JSON {
        .object([
            "description": .string("Range-based set reconciliation of a collection's records: POST \(ReconcileMessage.mediaType) messages to /buckets/B/collections/C/reconcile"),
            "url": projectURL,
            "version": .int(Int64(ReconcileMessage.version)),
            "frame_limit": .int(Int64(Self.reconcileFrameLimit)),
            "hash": "sha256-128 of RFC 8785 canonical JSON without null fields and last_modified",
        ].compactMapValues { $0 })
    }

    func reconcileOperation(_ request: APIRequest, path: ObjectPath, inBatch: Bool) throws -> Operation {
        if inBatch {
            throw KintoError.invalidParameters(location: "body", name: "requests", description: "A reconciliation message (a binary body) cannot be sent in a batch")
        }
        if let type = request.header("Content-Type"), !type.hasPrefix(ReconcileMessage.mediaType), !type.hasPrefix("application/octet-stream") {
            throw KintoError.invalidParameters(location: "header", name: "Content-Type",
                                               description: "A reconciliation message is sent as \(ReconcileMessage.mediaType), not \(type)")
        }
        // Decoded before the transaction (bounded, linear in the bytes), refused inside it
        // after the permission check: who may not read learns nothing from a 400.
        let decoded = Result { () throws(ReconcileError) in try ReconcileMessage(decoding: request.body, limit: Self.reconcileFrameLimit) }
        return Operation(.snapshot, session: { session in
            let handler = ResourceHandler(api: self, request: request, path: path, session: session)
            let ids = try handler.visibleIDs("read")
            try handler.ensureParents()
            let message: ReconcileMessage
            switch decoded {
            case .success(let value): message = value
            case .failure(let error):
                throw KintoError.invalidParameters(location: "body", name: "message", description: "Invalid reconciliation message (\(error.code)): \(error.message)")
            }
            let items: SortedReconcileItems
            if ids == nil, let uri = path.collectionURI {
                // Every round of an exchange reads the same collection: its items are kept per
                // collection timestamp, which moves on every write (deletes included).
                let timestamp = try session.timestamp(handler.key)
                if let cached = self.reconcileCache.items(uri, timestamp: timestamp) {
                    items = cached
                } else {
                    items = try Self.reconcileItems(session: session, key: handler.key, ids: nil)
                    self.reconcileCache.keep(items, uri, timestamp: timestamp)
                }
            } else {
                items = try Self.reconcileItems(session: session, key: handler.key, ids: ids)
            }
            let reply = Reconciler(items, configuration: .init(frameLimit: Self.reconcileFrameLimit)).respond(to: message)
            return APIResponse(body: .bytes(reply.encoded(), contentType: ReconcileMessage.mediaType))
        })
    }

    /// The collection's live records as reconciliation items, from the content hashes the
    /// storage keeps on every write (``StorageSession/contentHashes(_:ids:_:)``: the hash the sync
    /// engine computes for a record read from this server, without `last_modified`). No JSON is
    /// parsed; the rows come in id order, so nothing is sorted either.
    static func reconcileItems(session: any StorageSession, key: ResourceKey, ids: [String]?) throws -> SortedReconcileItems {
        var items: [ReconcileItem] = []
        try session.contentHashes(key, ids: ids) { id, hash in
            items.append(ReconcileItem(id: id, hash: hash))
        }
        return SortedReconcileItems(sortedUnique: items)
    }
}

/// The items of the last few collections reconciled, each valid at one collection timestamp:
/// the rounds of one exchange (and exchanges of several clients) read the stored hashes and
/// sum them once, not once per round. Only for callers who may read every record of the collection.
final class ReconcileItemsCache: Sendable {
    /// How many collections are kept (each holds its items and prefix sums in memory).
    static let capacity = 4
    private let entries = NIOLockedValueBox<[(uri: String, timestamp: Int64, items: SortedReconcileItems)]>([])

    func items(_ uri: String, timestamp: Int64) -> SortedReconcileItems? {
        entries.withLockedValue { entries in entries.first { $0.uri == uri && $0.timestamp == timestamp }?.items }
    }

    func keep(_ items: SortedReconcileItems, _ uri: String, timestamp: Int64) {
        entries.withLockedValue { entries in
            entries.removeAll { $0.uri == uri }
            entries.append((uri, timestamp, items))
            if entries.count > Self.capacity { entries.removeFirst() }
        }
    }
}
