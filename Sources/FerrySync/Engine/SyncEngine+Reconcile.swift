import FerryCore

/// `--mode diff` and `ferry verify` against a server that announces reconciliation
/// (`capabilities.reconcile`): the other side is read and hashed here, the server's side
/// is compared in a few round trips of fingerprints, and only what differs is moved.
/// The plan (creates, updates, deletes) is the one a full read of both sides gives.
extension SyncEngine {
    /// The server to reconcile with, and whether the side read here is the source (when both
    /// are servers and ``reconcilingServers(source:target:job:)`` does not apply, e.g. a
    /// transform, the target is reconciled and the source read).
    /// A server source qualifies only without a transform (its hashes are of untransformed
    /// records); the key must be `id` (what the server hashes records under).
    static func reconcilingServer(source: any Endpoint, target: (any Endpoint)?, job: SyncJob) -> (server: any ReconcilingEndpoint, localIsSource: Bool)? {
        guard job.reconcile, job.keyField == "id" else { return nil }
        if let server = target as? any ReconcilingEndpoint, server.reconciles { return (server, true) }
        if job.transform.isIdentity, let server = source as? any ReconcilingEndpoint, server.reconciles { return (server, false) }
        return nil
    }

    /// Both sides when both are servers that reconcile (and the job moves records unchanged,
    /// under `id`): the engine relays messages between them and reads neither.
    static func reconcilingServers(source: any Endpoint, target: (any Endpoint)?, job: SyncJob) -> (source: any ReconcilingEndpoint, target: any ReconcilingEndpoint)? {
        guard job.reconcile, job.keyField == "id", job.transform.isIdentity,
              let source = source as? any ReconcilingEndpoint, source.reconciles,
              let target = target as? any ReconcilingEndpoint, target.reconciles else { return nil }
        return (source, target)
    }

    /// Two servers compared with each other through the engine (``ReconcileRelay``): side A is
    /// the target, B the source, so the differences read as from the target's side, as
    /// ``reconcile(_:with:)`` gives them for a target read here.
    static func relay(target: any ReconcilingEndpoint, source: any ReconcilingEndpoint) async throws -> ReconcileOutcome {
        try await ReconcileRelay().run { side, message in
            try await (side == .a ? target : source).reconcile(message)
        }
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
        if let servers = Self.reconcilingServers(source: source, target: target, job: job) {
            return try await relayedVerify(source: servers.source, target: servers.target, job: job)
        }
        guard let (server, localIsSource) = Self.reconcilingServer(source: source, target: target, job: job) else { return nil }
        let keyField = job.keyField
        var hashes: [RecordKey: RecordHash] = [:]
        try await (localIsSource ? source : target).readAll(batchSize: job.effectiveBatchSize).forEach { items in
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

extension SyncEngine {
    /// `verify` of two servers by relaying between them: neither is read. The counts are the
    /// servers' own (`Total-Records`); the digests, which need every hash, are not computed:
    /// both say so, and the result is equal when the counts agree and nothing differs.
    func relayedVerify(source: any ReconcilingEndpoint, target: any ReconcilingEndpoint, job: SyncJob) async throws -> Verification {
        let outcome = try await Self.relay(target: target, source: source)
        let found = outcome.differences
        var result = Verification()
        let limit = job.verifyLimit
        result.missingInTarget = Array(found.onlyThere.map(\.idText).sorted().prefix(limit))
        result.extraInTarget = Array(found.onlyHere.map(\.idText).sorted().prefix(limit))
        result.different = Array(found.changed.map(\.idText).sorted().prefix(limit))
        result.differingCount = found.count
        result.sourceCount = try await source.estimatedCount() ?? 0
        result.targetCount = try await target.estimatedCount() ?? 0
        result.sourceDigest = Self.relayedDigest
        result.targetDigest = Self.relayedDigest
        result.reconciliation = ReconciliationCost(outcome)
        return result
    }

    /// The digest reported for a server compared by relay (not read, so not hashed here).
    static let relayedDigest = "not computed: reconciled server to server"
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
        let end = try await source.readAll(batchSize: job.effectiveBatchSize).forEach { items in
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
    /// When the target is a server that reconciles too, neither side is read: the engine
    /// relays the exchange between them (``SyncEngine/relay(target:source:)``) and reads from
    /// the source only the records that differ.
    mutating func reconciledFetch(server: any ReconcilingEndpoint, target: any Endpoint, resume: Bool) async throws {
        let keyField = job.keyField
        let start: Cursor? = resume ? .since(try await server.currentTimestamp()) : nil
        let outcome: ReconcileOutcome
        let targetCount: Int
        if let servers = SyncEngine.reconcilingServers(source: server, target: target, job: job) {
            outcome = try await SyncEngine.relay(target: servers.target, source: servers.source)
            targetCount = try await servers.target.estimatedCount() ?? 0
        } else {
            var hashes: [RecordKey: RecordHash] = [:]
            try await target.readAll(batchSize: job.effectiveBatchSize).forEach { items in
                for case .record(let fields) in items {
                    guard let key = fields[keyField].flatMap(RecordKey.init) else { continue }
                    hashes[key] = RecordHash(fields: fields, keyField: keyField, keyText: key.text)
                }
            }
            report.peakRecordsHeld = hashes.count
            outcome = try await SyncEngine.reconcile(hashes, with: server)
            targetCount = hashes.count
        }
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
        this.report.unchanged += max(0, targetCount - found.onlyHere.count - found.changed.count)
        this.report.reconciliation = ReconciliationCost(outcome)
        try await plan.finish(run: &this, cursor: start)
        self = this
    }
}
