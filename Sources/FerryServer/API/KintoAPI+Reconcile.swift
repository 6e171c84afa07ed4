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
            let reply: ReconcileMessage
            if ids == nil, let uri = path.collectionURI {
                let items = try self.reconcileCache.current(uri, key: handler.key, collection: path.requiredParents.last, session: session)
                reply = Reconciler(items, configuration: .init(frameLimit: Self.reconcileFrameLimit)).respond(to: message)
            } else {
                reply = Reconciler(SortedReconcileItems(sortedUnique: try Self.reconcileItems(session: session, key: handler.key, ids: ids)), configuration: .init(frameLimit: Self.reconcileFrameLimit)).respond(to: message)
            }
            return APIResponse(body: .bytes(reply.encoded(), contentType: ReconcileMessage.mediaType))
        })
    }

    /// The collection's live records as reconciliation items, from the content hashes the
    /// storage keeps on every write (``StorageSession/contentHashes(_:ids:_:)``: the hash the sync
    /// engine computes for a record read from this server, without `last_modified`). No JSON is
    /// parsed; the rows come in id order, so nothing is sorted either.
    static func reconcileItems(session: any StorageSession, key: ResourceKey, ids: [String]?) throws -> [ReconcileItem] {
        var items: [ReconcileItem] = []
        try session.contentHashes(key, ids: ids) { id, hash in
            items.append(ReconcileItem(id: id, hash: hash))
        }
        return items
    }
}

/// The items of the last few collections reconciled, each as of one records timestamp, kept
/// up to date from the change feed: a round reads only the records written since the items
/// were last used (their ids from the `last_modified` index, their stored hashes by id) and
/// applies them to the chunks that hold them (``ChunkedReconcileItems``), so its work grows
/// with the writes since, not with the collection. The collection is read in full only the
/// first time, when the feed cannot say what changed (tombstones purged past the kept
/// timestamp, the collection deleted and made again), or when more changed than
/// ``catchUpLimit``. Only for callers who may read every record of the collection.
final class ReconcileItemsCache: Sendable {
    /// How many collections are kept (each holds its items in memory).
    static let capacity = 4
    /// The most changes applied to kept items; beyond, the collection is read again.
    static let catchUpLimit = 20_000

    struct Entry: Sendable {
        var uri: String
        /// The collection object's `last_modified`: made again, it holds other records.
        var collection: Int64
        /// The records timestamp the items are as of.
        var timestamp: Int64
        var items: ChunkedReconcileItems
    }

    private let entries = NIOLockedValueBox<[Entry]>([])

    /// The collection's items as of this session's snapshot, caught up or read in full.
    /// - Parameter collection: the collection's path and id (the last of the record's required parents).
    func current(_ uri: String, key: ResourceKey, collection: (ObjectPath, String)?, session: any StorageSession) throws -> ChunkedReconcileItems {
        let timestamp = try session.timestamp(key)
        let horizon = try session.tombstoneHorizon(key)
        let made = try collection.flatMap { try session.get($0.0.storageKey, id: $0.1, includeDeleted: false)?.lastModified } ?? 0
        if var entry = entries.withLockedValue({ entries in entries.first { $0.uri == uri } }),
           entry.collection == made, entry.timestamp <= timestamp, horizon <= entry.timestamp {
            if entry.timestamp == timestamp { return entry.items }
            if try Self.catchUp(&entry.items, key: key, since: entry.timestamp, session: session) {
                entry.timestamp = timestamp
                keep(entry)
                return entry.items
            }
        }
        let items = try KintoAPI.reconcileItems(session: session, key: key, ids: nil)
        let entry = Entry(uri: uri, collection: made, timestamp: timestamp, items: ChunkedReconcileItems(sortedUnique: items))
        keep(entry)
        return entry.items
    }

    /// Applies the records written after `since` (creates, updates, deletes) to `items`;
    /// false, with `items` untouched, when there are more than ``catchUpLimit``.
    static func catchUp(_ items: inout ChunkedReconcileItems, key: ResourceKey, since: Int64, session: any StorageSession) throws -> Bool {
        var live: [String] = []
        var deleted: [String] = []
        let query = ListQuery(filters: [Filter("last_modified", .gt, .int(since))], sort: [], limit: catchUpLimit + 1, includeDeleted: true)
        try session.list(key, query: query) { object in
            if object.deleted { deleted.append(object.id) } else { live.append(object.id) }
            return true
        }
        guard live.count + deleted.count <= catchUpLimit else { return false }
        var changes = items
        for id in deleted { changes.remove(Array(id.utf8)) }
        if !live.isEmpty {
            try session.contentHashes(key, ids: live) { id, hash in changes.set(ReconcileItem(id: id, hash: hash)) }
        }
        changes.reindex()
        items = changes
        return true
    }

    /// Keeps an entry unless a newer one of the same collection is kept already.
    private func keep(_ entry: Entry) {
        entries.withLockedValue { entries in
            if let index = entries.firstIndex(where: { $0.uri == entry.uri }) {
                if entries[index].collection == entry.collection, entries[index].timestamp > entry.timestamp { return }
                entries.remove(at: index)
            }
            entries.append(entry)
            if entries.count > Self.capacity { entries.removeFirst() }
        }
    }
}
