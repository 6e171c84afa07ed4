import FerryCore

/// `--mode diff` and `ferry verify` against a server that announces reconciliation
/// (`capabilities.reconcile`): the other side is read and hashed here, the server's side
/// is compared in a few round trips of fingerprints, and only what differs is moved.
/// The plan (creates, updates, deletes) is the one a full read of both sides gives.
extension SyncEngine {
    /// The server to reconcile with, and whether the side read here is the source (when both
    /// are servers, the target is reconciled and the source read).
    /// A server source qualifies only without a transform (its hashes are of untransformed
    /// records); the key must be `id` (what the server hashes records under).
    static func reconcilingServer(source: any Endpoint, target: (any Endpoint)?, job: SyncJob) -> (server: any ReconcilingEndpoint, localIsSource: Bool)? {
        guard job.reconcile, job.keyField == "id" else { return nil }
        if let server = target as? any ReconcilingEndpoint, server.reconciles { return (server, true) }
        if job.transform.isIdentity, let server = source as? any ReconcilingEndpoint, server.reconciles { return (server, false) }
        return nil
    }

    /// The whole exchange of one side's hashes with a server. Keys no server can hold (empty or
    /// longer than ``ReconcileItem/maxIDLength`` bytes) do not travel: they are this side's alone.
    static func reconcile(_ hashes: [RecordKey: RecordHash], with server: any ReconcilingEndpoint) async throws -> ReconcileExchange<SortedReconcileItems>.Outcome {
        var items: [ReconcileItem] = []
        var unsendable: [ReconcileItem] = []
        items.reserveCapacity(hashes.count)
        for (key, hash) in hashes {
            let item = ReconcileItem(id: key.text, hash: hash)
            if item.isCarriable { items.append(item) } else { unsendable.append(item) }
        }
        var outcome = try await ReconcileExchange(Reconciler(SortedReconcileItems(items))).run { try await server.reconcile($0) }
        outcome.differences.onlyHere += unsendable
        return outcome
    }

    /// `verify` by reconciliation, or nil when neither side is a server that reconciles.
    func reconciledVerify(source: any Endpoint, target: any Endpoint, job: SyncJob) async throws -> Verification? {
        guard let (server, localIsSource) = Self.reconcilingServer(source: source, target: target, job: job) else { return nil }
        let keyField = job.keyField
        var hashes: [RecordKey: RecordHash] = [:]
        _ = try await (localIsSource ? source : target).readAll(batchSize: job.effectiveBatchSize) { items in
            for case .record(let raw) in items {
                var fields = raw
                if localIsSource {
                    guard case .keep(let kept) = job.transform.apply(raw) else { continue }
                    fields = kept
                }
                guard let key = fields[keyField].flatMap(RecordKey.init) else { continue }
                hashes[key] = RecordHash(fields: fields, keyField: keyField, keyText: key.text)
            }
        }
        let outcome = try await Self.reconcile(hashes, with: server)
        let found = outcome.differences
        // The server's side, rebuilt from this side and what differs.
        var remote = hashes
        for item in found.onlyHere { remote[RecordKey(item)] = nil }
        for item in found.changed + found.onlyThere { remote[RecordKey(item)] = item.hash }
        var localDigest = CollectionDigest()
        hashes.values.forEach { localDigest.add($0) }
        var remoteDigest = CollectionDigest()
        remote.values.forEach { remoteDigest.add($0) }

        var result = Verification()
        let limit = job.verifyLimit
        let (missing, extra) = localIsSource ? (found.onlyHere, found.onlyThere) : (found.onlyThere, found.onlyHere)
        result.missingInTarget = Array(missing.map(\.idText).sorted().prefix(limit))
        result.extraInTarget = Array(extra.map(\.idText).sorted().prefix(limit))
        result.different = Array(found.changed.map(\.idText).sorted().prefix(limit))
        result.differingCount = found.count
        let (sourceDigest, targetDigest) = localIsSource ? (localDigest, remoteDigest) : (remoteDigest, localDigest)
        result.sourceCount = sourceDigest.count
        result.targetCount = targetDigest.count
        result.sourceDigest = sourceDigest.description
        result.targetDigest = targetDigest.description
        result.reconciliation = ReconciliationCost(outcome)
        return result
    }
}

extension RecordKey {
    /// The key of a reconciled item (its id is text).
    init(_ item: ReconcileItem) {
        self = RecordKey(.string(item.idText))!
    }
}

extension Run {
    /// diff against a server target that reconciles: read and hash the source, reconcile with the
    /// target, apply only the differences.
    /// - Parameter resume: save where the read of the source ended as the checkpoint.
    mutating func reconciledDiff(source: any Endpoint, server: any ReconcilingEndpoint, progress: ((Int, Int?) -> Void)?, total: Int?,
                                 resume: Bool) async throws {
        let keyField = job.keyField
        var records: [RecordKey: Record] = [:]
        var hashes: [RecordKey: RecordHash] = [:]
        var this = self
        let end = try await source.readAll(batchSize: job.effectiveBatchSize) { items in
            for case .upsert(let record) in try this.prepare(items, incremental: false) {
                records[record.key] = record
                hashes[record.key] = RecordHash(fields: record.fields, keyField: keyField, keyText: record.key.text)
            }
            progress?(this.report.read, total)
        }
        let outcome = try await SyncEngine.reconcile(hashes, with: server)
        let found = outcome.differences
        var plan = DiffPlan()
        for item in found.onlyHere.sorted() { try await plan.upsert(records[RecordKey(item)]!, exists: false, run: &this) }
        for item in found.changed.sorted() { try await plan.upsert(records[RecordKey(item)]!, exists: true, run: &this) }
        for item in found.onlyThere.sorted() { try await plan.delete(RecordKey(item), run: &this) }
        this.report.unchanged += records.count - found.onlyHere.count - found.changed.count
        this.report.reconciliation = ReconciliationCost(outcome)
        try await plan.finish(run: &this, cursor: resume ? end : nil)
        self = this
    }

    /// diff from a server source that reconciles into a target that is read here: hash the
    /// target, reconcile with the source, then read from the source only the records that
    /// differ, by id (``KintoEndpoint/records(ids:_:)``). The unchanged records never travel.
    /// - Parameter resume: save the source's timestamp from before the exchange as the
    ///   checkpoint (an incremental run after a 410 goes on from there; a change made during
    ///   the exchange is read again by the next run, never missed).
    mutating func reconciledFetch(server: any ReconcilingEndpoint, target: any Endpoint, resume: Bool) async throws {
        let keyField = job.keyField
        let start: Cursor? = resume ? .since(try await server.currentTimestamp()) : nil
        var hashes: [RecordKey: RecordHash] = [:]
        _ = try await target.readAll(batchSize: job.effectiveBatchSize) { items in
            for case .record(let fields) in items {
                guard let key = fields[keyField].flatMap(RecordKey.init) else { continue }
                hashes[key] = RecordHash(fields: fields, keyField: keyField, keyText: key.text)
            }
        }
        report.peakRecordsHeld = hashes.count
        let outcome = try await SyncEngine.reconcile(hashes, with: server)
        let found = outcome.differences
        let existing = Set(found.changed.map(RecordKey.init))
        var plan = DiffPlan()
        var this = self
        try await server.records(ids: (found.onlyThere + found.changed).sorted().map(\.idText)) { items in
            for case .upsert(let record) in try this.prepare(items, incremental: false) {
                try await plan.upsert(record, exists: existing.contains(record.key), run: &this)
            }
        }
        for item in found.onlyHere.sorted() { try await plan.delete(RecordKey(item), run: &this) }
        this.report.unchanged += hashes.count - found.onlyHere.count - found.changed.count
        this.report.reconciliation = ReconciliationCost(outcome)
        try await plan.finish(run: &this, cursor: start)
        self = this
    }
}
