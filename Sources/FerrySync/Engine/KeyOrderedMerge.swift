public import FerryCore

/// A side that can be read a batch at a time in the byte order of its keys' text (pulled rather
/// than pushed, so that two sides can be walked side by side): `diff` and `verify` then hold two
/// batches instead of a key → hash map of a whole side.
protocol KeyOrderedReading: Endpoint {
    /// Whether ``records(after:limit:)`` can be used: the records come in the byte order of their
    /// ``RecordKey/text``.
    var readsInKeyOrder: Bool { get }

    /// Up to `limit` live records whose keys come after `after` (from the first when nil), in that
    /// order. Records without a key are left out. Fewer than `limit`: there are no more.
    func records(after: RecordKey?, limit: Int) async throws -> [[String: JSON]]
}

/// One side of a merge: the batch being walked and where the next one starts.
struct SortedSide<Item> {
    let endpoint: any KeyOrderedReading
    let name: String
    let keyField: String
    let batchSize: Int
    private(set) var items: [(key: RecordKey, item: Item)] = []
    private var index = 0
    private var after: RecordKey? = nil
    private var exhausted = false
    /// The last key handed out, to check the order.
    private var last: RecordKey? = nil

    init(_ endpoint: any KeyOrderedReading, keyField: String, batchSize: Int) {
        self.endpoint = endpoint
        name = endpoint.displayName
        self.keyField = keyField
        self.batchSize = batchSize
    }

    /// Records held in memory now.
    var held: Int { items.count - index }

    /// The current record, reading the next batch when this one is done; nil at the end.
    /// - Parameter map: what a batch of raw records becomes (records it drops are skipped).
    mutating func head(_ map: ([[String: JSON]]) throws -> [(key: RecordKey, item: Item)]) async throws -> (key: RecordKey, item: Item)? {
        while index == items.count {
            if exhausted { return nil }
            let raw = try await endpoint.records(after: after, limit: batchSize)
            if raw.count < batchSize { exhausted = true }
            if let lastRaw = raw.last?[keyField].flatMap(RecordKey.init) { after = lastRaw }
            items = try map(raw)
            index = 0
            // The merge is only right on sorted sides: check it before anything acts on a record.
            for item in items {
                if let last, !last.text.utf8.lexicographicallyPrecedes(item.key.text.utf8) {
                    throw SyncError(.protocolError, "\(name): key \"\(item.key.text)\" came after \"\(last.text)\": the keys are not in byte order (a key stored as a BLOB?); the comparison stopped there")
                }
                last = item.key
            }
        }
        return items[index]
    }

    mutating func advance() { index += 1 }
}

/// How two keys compare in the merge (the byte order of their text).
func keyOrder(_ a: RecordKey, _ b: RecordKey) -> Int {
    if a.text == b.text { return 0 }
    return a.text.utf8.lexicographicallyPrecedes(b.text.utf8) ? -1 : 1
}

extension Transform {
    /// Whether the key field comes through unchanged (so a source's key order is kept).
    func keepsKey(_ keyField: String) -> Bool {
        !rename.keys.contains(keyField) && !rename.values.contains(keyField) && !drop.contains(keyField)
            && set[keyField] == nil && cast[keyField] == nil
    }
}

extension SyncEngine {
    /// The two sides when both read in key order and the transform leaves the key alone.
    static func keyOrdered(source: any Endpoint, target: (any Endpoint)?, job: SyncJob) -> (source: any KeyOrderedReading, target: any KeyOrderedReading)? {
        guard let source = source as? any KeyOrderedReading, source.readsInKeyOrder,
              let target = target as? any KeyOrderedReading, target.readsInKeyOrder,
              job.transform.keepsKey(job.keyField) else { return nil }
        return (source, target)
    }

    /// ``verify(source:target:job:)`` by a merge of both sides in key order: memory for two batches.
    func mergedVerify(source: any KeyOrderedReading, target: any KeyOrderedReading, job: SyncJob) async throws -> Verification {
        let keyField = job.keyField
        var result = Verification()
        var sourceDigest = CollectionDigest()
        var targetDigest = CollectionDigest()
        var differing = 0
        let limit = job.verifyLimit
        var sources = SortedSide<RecordHash>(source, keyField: keyField, batchSize: job.effectiveBatchSize)
        var targets = SortedSide<RecordHash>(target, keyField: keyField, batchSize: job.effectiveBatchSize)
        let transform = job.transform
        func hashes(_ raw: [[String: JSON]], transformed: Bool) -> [(key: RecordKey, item: RecordHash)] {
            raw.compactMap { raw in
                let fields: [String: JSON]
                if transformed {
                    guard case .keep(let kept) = transform.apply(raw) else { return nil }
                    fields = kept
                } else {
                    fields = raw
                }
                guard let key = fields[keyField].flatMap(RecordKey.init) else { return nil }
                return (key: key, item: RecordHash(fields: fields, keyField: keyField, keyText: key.text))
            }
        }
        while true {
            let a = try await sources.head { hashes($0, transformed: true) }
            let b = try await targets.head { hashes($0, transformed: false) }
            result.peakRecordsHeld = max(result.peakRecordsHeld, sources.held + targets.held)
            guard a != nil || b != nil else { break }
            let order = if let a, let b { keyOrder(a.key, b.key) } else { a == nil ? 1 : -1 }
            if order < 0, let a {
                sourceDigest.add(a.item)
                differing += 1
                if result.missingInTarget.count < limit { result.missingInTarget.append(a.key.text) }
                sources.advance()
            } else if order > 0, let b {
                targetDigest.add(b.item)
                differing += 1
                if result.extraInTarget.count < limit { result.extraInTarget.append(b.key.text) }
                targets.advance()
            } else if let a, let b {
                sourceDigest.add(a.item)
                targetDigest.add(b.item)
                if a.item != b.item {
                    differing += 1
                    if result.different.count < limit { result.different.append(a.key.text) }
                }
                sources.advance()
                targets.advance()
            }
        }
        result.settle(source: sourceDigest, target: targetDigest, differing: differing)
        return result
    }
}

extension Run {
    /// ``diff(source:target:progress:total:)`` by a merge of both sides in key order. Safe while
    /// the target changes under it: every key it writes or deletes is at or before the target
    /// batch already read, and the next batch starts after that.
    mutating func mergedDiff(source: any KeyOrderedReading, target: any KeyOrderedReading, progress: ((Int, Int?) -> Void)?, total: Int?) async throws {
        let keyField = job.keyField
        var sources = SortedSide<Record>(source, keyField: keyField, batchSize: job.effectiveBatchSize)
        var targets = SortedSide<RecordHash>(target, keyField: keyField, batchSize: job.effectiveBatchSize)
        var plan = DiffPlan()
        var this = self
        defer { self = this }
        var peak = 0
        while true {
            let a = try await sources.head { raw in
                let changes = try this.prepare(raw.map { .record($0) }, incremental: false)
                progress?(this.report.read, total)
                return changes.compactMap { change in
                    guard case .upsert(let record) = change else { return nil }
                    return (key: record.key, item: record)
                }
            }
            let b = try await targets.head { raw in
                raw.compactMap { fields in
                    guard let key = fields[keyField].flatMap(RecordKey.init) else { return nil }
                    return (key: key, item: RecordHash(fields: fields, keyField: keyField, keyText: key.text))
                }
            }
            peak = max(peak, sources.held + targets.held + plan.pending.count)
            guard a != nil || b != nil else { break }
            let order = if let a, let b { keyOrder(a.key, b.key) } else { a == nil ? 1 : -1 }
            if order < 0, let a {
                try await plan.upsert(a.item, exists: false, run: &this)
                sources.advance()
            } else if order > 0, let b {
                try await plan.delete(b.key, run: &this)
                targets.advance()
            } else if let a, let b {
                let hash = RecordHash(fields: a.item.fields, keyField: keyField, keyText: a.key.text)
                if hash == b.item {
                    this.report.unchanged += 1
                } else {
                    try await plan.upsert(a.item, exists: true, run: &this)
                }
                sources.advance()
                targets.advance()
            }
        }
        this.report.peakRecordsHeld = peak
        try await plan.finish(run: &this)
    }
}
