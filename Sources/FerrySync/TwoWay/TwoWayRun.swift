public import FerryCore
import Foundation

/// What a two-way run did each way, and its conflicts by outcome.
public struct TwoWayCounts: Sendable, Equatable {
    public var writtenToA = 0
    public var deletedInA = 0
    public var writtenToB = 0
    public var deletedInB = 0
    /// Conflicts the policy settled for A, for B, and those left for a person (manual).
    public var aWon = 0
    public var bWon = 0
    public var manual = 0
    /// Manual conflicts whose decision (`ferry conflicts resolve`) this run applied.
    public var resolved = 0
    /// Changes a server refused because the record changed during the run: the next run picks them up.
    public var changedMeanwhile = 0

    public init() {}

    public var conflicts: Int { aWon + bWon + manual }

    public var json: JSON {
        [
            "toA": ["written": .int(Int64(writtenToA)), "deleted": .int(Int64(deletedInA))],
            "toB": ["written": .int(Int64(writtenToB)), "deleted": .int(Int64(deletedInB))],
            "conflicts": ["aWon": .int(Int64(aWon)), "bWon": .int(Int64(bWon)), "manual": .int(Int64(manual)), "resolved": .int(Int64(resolved))],
            "changedDuringRun": .int(Int64(changedMeanwhile)),
        ]
    }
}

/// One side of a two-way run as read: each record's state, its key, and the fields of those
/// that may have to be copied (changed since the base, or in a conflict).
struct TwoWayScan {
    var sides: [String: SideState] = [:]
    var keys: [String: RecordKey] = [:]
    var changed: [String: [String: JSON]] = [:]
    /// Whether the side was read whole; false when only its change feed since the last run
    /// was (a record not read is then as the last run left it).
    var complete = true
    /// Where the side's change feed stands after this read (saved once the run is done).
    var cursor: Cursor? = nil
}

/// One planned change to one side, with what was read there (for `If-Match`).
struct TwoWayWrite {
    var change: Change
    var exists: Bool
    var version: Int64?
    /// The record's hash as read there (for a table's compare-and-set); nil: absent.
    var hash: String?
}

extension SyncEngine {
    /// Where a server endpoint hands a record's version to a two-way run (no real field has this name).
    static let versionField = "\u{1}ferry.version"

    /// Checks a two-way job before anything is opened: what two-way runs do not take.
    static func checkTwoWay(_ job: SyncJob) throws(SyncError) {
        if !job.transform.isIdentity {
            throw .badInput("--two-way copies records unchanged both ways: a transform (--rename, --drop, --set, --cast, --where) has no inverse, so it does not go with it")
        }
        if job.deleteMissing { try JobRules.delete(mode: .twoWay, .flags) }
        if job.cursorField != nil { throw .badInput("--cursor-field does not go with --two-way (each run compares both sides with the base)") }
        if job.verify { throw .badInput("--verify does not go with --two-way (use ferry verify A B)") }
        if let size = job.batchSize { try JobRules.batchSize(size, .flags) }
        for url in [job.source, job.target] where url.hasPrefix("file:") {
            throw .badInput("--two-way needs two endpoints that take changes record by record (servers, REST APIs, SQLite, PostgreSQL); \(url) is a file, which is rewritten whole")
        }
    }

    /// A two-way run: the source is side A, the target side B.
    ///
    /// Both sides are read and hashed; each record is compared with its base (the hash both
    /// sides agreed on after the last run) and ``TwoWayDecision`` says what to do. Writes go
    /// first, then the base of what they settled: a crash in between leaves both sides equal
    /// on that record, which the next run records as agreed. Nothing is echoed back, since a
    /// record Ferry copied is equal on both sides and to its base afterwards.
    func runTwoWay(_ job: SyncJob) async throws -> SyncReport {
        let started = Date()
        let jobID = job.id
        try Self.checkTwoWay(job)
        var report = SyncReport()
        report.job = jobID
        report.mode = .twoWay
        report.source = connectors.redacted(job.source)
        report.target = connectors.redacted(job.target)
        report.dryRun = job.dryRun

        let a = try endpoint(job, target: false) { $0.versionField = Self.versionField }
        let b = try endpoint(job, target: true) { $0.versionField = Self.versionField }
        if a.displayName == b.displayName {
            throw SyncError.badInput("the two sides are the same: \(a.displayName)")
        }
        var job = job
        job.batchSize = job.batchSize ?? [a.preferredBatchSize, b.preferredBatchSize].compactMap { $0 }.min() ?? SyncJob.defaultBatchSize
        let state = try StateStore(path: job.statePath)
        if job.reset && !job.dryRun {
            try state.resetBases(job: jobID)
            for side in ["#a", "#b"] { try state.reset(job: jobID + side) }
        }
        let deadLetterPath = job.deadLetterPath ?? ((job.statePath as NSString).deletingLastPathComponent + "/dead-letter/\(jobID).jsonl")
        report.deadLetterPath = deadLetterPath
        let deadLetter = DeadLetterFile(path: deadLetterPath)
        defer { deadLetter.close() }
        var run = Run(job: job, jobID: jobID, report: report, deadLetter: deadLetter, state: state,
                      sourceName: a.displayName, targetName: b.displayName)
        var counts = TwoWayCounts()
        do {
            try await a.open(forWriting: !job.dryRun)
            try await b.open(forWriting: !job.dryRun)
            let writerA = job.dryRun ? nil : try await a.makeWriter(job: jobID)
            let writerB = job.dryRun ? nil : try await b.makeWriter(job: jobID)
            let bases = job.reset && job.dryRun ? [:] : try state.bases(job: jobID)
            let conflicts = Dictionary(try state.conflicts(job: jobID).map { ($0.key, $0) }, uniquingKeysWith: { first, _ in first })
            let managed = Set(a.managedFields + b.managedFields)
            let keyField = job.keyField
            for writer in [writerA, writerB] {
                writer?.hashRecords { Self.twoWayHash($0, keyField: keyField, managed: managed) }
            }
            let scanA = try await scan(a, side: "#a", job: job, bases: bases, conflicts: conflicts, managed: managed, state: state, run: &run)
            let scanB = try await scan(b, side: "#b", job: job, bases: bases, conflicts: conflicts, managed: managed, state: state, run: &run)
            /// A side's state of a record: as read, else (a side read through its change feed)
            /// as the last run left it: the side's version in an open conflict, or the base.
            func sideState(_ scan: TwoWayScan, _ key: String, isA: Bool) -> SideState {
                if let read = scan.sides[key] { return read }
                if scan.complete { return .absent }
                if let conflict = conflicts[key] { return SideState(hash: isA ? conflict.aHash : conflict.bHash) }
                guard let base = bases[key] else { return .absent }
                return SideState(hash: base.hash, version: isA ? base.versionA : base.versionB)
            }
            /// The fields to copy from a side: as read, else those its open conflict recorded.
            func content(_ scan: TwoWayScan, _ key: String, isA: Bool) -> [String: JSON]? {
                scan.changed[key] ?? conflicts[key].flatMap { isA ? $0.a : $0.b }?.objectValue
            }
            onProgress?(run.report.read, nil)

            var toA: [TwoWayWrite] = []
            var toB: [TwoWayWrite] = []
            var baseAfter: [String: StateStore.Base?] = [:]
            var agreed: [(key: String, base: StateStore.Base?)] = []
            var settle: [Int64] = []
            var settleAfterWrites: [String: Int64] = [:]
            /// - Parameter there: the record's state on the side written to (for `If-Match`).
            func copy(_ key: String, from scan: TwoWayScan, to other: TwoWayScan, there: SideState, content: [String: JSON]?) -> TwoWayWrite {
                let change: Change = if let content, let recordKey = scan.keys[key] ?? content[job.keyField].flatMap(RecordKey.init) {
                    .upsert(Record(key: recordKey, fields: content))
                } else {
                    .delete(other.keys[key] ?? RecordKey(.string(key))!)
                }
                return TwoWayWrite(change: change, exists: there.hash != nil, version: there.version, hash: there.hash)
            }

            var all = Set(scanA.sides.keys)
            all.formUnion(scanB.sides.keys)
            all.formUnion(bases.keys)
            all.formUnion(conflicts.keys)
            for key in all.sorted() {
                let sa = sideState(scanA, key, isA: true)
                let sb = sideState(scanB, key, isA: false)
                let conflict = conflicts[key]
                if let conflict, conflict.status == "resolved" {
                    let decided = conflict.resolutionHash
                    if (sa.hash == conflict.aHash || sa.hash == decided) && (sb.hash == conflict.bHash || sb.hash == decided) {
                        let content = conflict.resolution?.objectValue
                        if sa.hash != decided { toA.append(copy(key, from: scanB, to: scanA, there: sa, content: content)) }
                        if sb.hash != decided { toB.append(copy(key, from: scanA, to: scanB, there: sb, content: content)) }
                        baseAfter[key] = .some(decided.map { StateStore.Base(hash: $0, versionA: nil, versionB: nil) })
                        settleAfterWrites[key] = conflict.id
                        counts.resolved += 1
                        continue
                    }
                    onNotice?("record \(key) changed again after its conflict \(conflict.id) was resolved: the decision is dropped")
                }
                switch TwoWayDecision.decide(a: sa, b: sb, base: bases[key]?.hash, policy: job.onConflict) {
                case .agree(let hash):
                    if bases[key]?.hash != hash || (hash != nil && bases[key].map { $0.versionA != sa.version || $0.versionB != sb.version } == true) {
                        agreed.append((key, hash.map { StateStore.Base(hash: $0, versionA: sa.version, versionB: sb.version) }))
                    }
                    if let conflict { settle.append(conflict.id) }
                case .copyAToB, .conflictAWins:
                    let fields = content(scanA, key, isA: true)
                    if sa.hash != nil && fields == nil {
                        onNotice?("record \(key): its content on \(a.displayName) was not read; the next run with --reset copies it")
                        continue
                    }
                    toB.append(copy(key, from: scanA, to: scanB, there: sb, content: sa.hash == nil ? nil : fields))
                    baseAfter[key] = .some(sa.hash.map { StateStore.Base(hash: $0, versionA: sa.version, versionB: nil) })
                    if sb.hash != bases[key]?.hash { counts.aWon += 1 }
                    if let conflict { settleAfterWrites[key] = conflict.id }
                case .copyBToA, .conflictBWins:
                    let fields = content(scanB, key, isA: false)
                    if sb.hash != nil && fields == nil {
                        onNotice?("record \(key): its content on \(b.displayName) was not read; the next run with --reset copies it")
                        continue
                    }
                    toA.append(copy(key, from: scanB, to: scanA, there: sa, content: sb.hash == nil ? nil : fields))
                    baseAfter[key] = .some(sb.hash.map { StateStore.Base(hash: $0, versionA: nil, versionB: sb.version) })
                    if sa.hash != bases[key]?.hash { counts.bWon += 1 }
                    if let conflict { settleAfterWrites[key] = conflict.id }
                case .conflict:
                    counts.manual += 1
                    if !job.dryRun {
                        try state.logConflict(job: jobID, key: key, keyField: job.keyField, a: content(scanA, key, isA: true).map(JSON.object),
                                              b: content(scanB, key, isA: false).map(JSON.object),
                                              aHash: sa.hash, bHash: sb.hash)
                    }
                }
            }

            if job.dryRun {
                counts.writtenToB = toB.filter { if case .upsert = $0.change { true } else { false } }.count
                counts.deletedInB = toB.count - counts.writtenToB
                counts.writtenToA = toA.filter { if case .upsert = $0.change { true } else { false } }.count
                counts.deletedInA = toA.count - counts.writtenToA
            } else if let writerA, let writerB {
                try await twoWayWillWrite?()
                let bothWays = Set(toA.map(\.change.key.text)).intersection(toB.map(\.change.key.text))
                var failed = Set<String>()
                for (writes, writer, toSideA) in [(toB, writerB, false), (toA, writerA, true)] {
                    var index = 0
                    while index < writes.count {
                        if stop?.isClosed == true {
                            // Stopping (SIGTERM, the end of --follow): what is not written stays for the next run.
                            run.report.stopped = true
                            failed.formUnion(writes[index...].map(\.change.key.text))
                            break
                        }
                        let chunk = writes[index..<min(index + job.effectiveBatchSize, writes.count)]
                        index += chunk.count
                        for write in chunk { writer.expect(key: write.change.key, exists: write.exists, version: write.version, hash: write.hash) }
                        var outcome = try await writer.apply(chunk.map(\.change), cursor: nil)
                        // A writer that commits in the background (PostgreSQL) is waited for: the
                        // base of a record is saved only once its write is committed.
                        outcome.add(try await writer.finish(cursor: nil))
                        try run.absorb(outcome)
                        var refused = Set(outcome.rejected.map(\.change.key.text))
                        refused.formUnion(outcome.changedMeanwhile.map(\.text))
                        counts.changedMeanwhile += outcome.changedMeanwhile.count
                        failed.formUnion(refused)
                        var settled: [(key: String, base: StateStore.Base?)] = []
                        for write in chunk where !refused.contains(write.change.key.text) {
                            let key = write.change.key.text
                            if case .upsert = write.change {
                                if toSideA { counts.writtenToA += 1 } else { counts.writtenToB += 1 }
                            } else {
                                if toSideA { counts.deletedInA += 1 } else { counts.deletedInB += 1 }
                            }
                            // A record written both ways (a resolution) settles after its second write.
                            if bothWays.contains(key) && !toSideA { continue }
                            if failed.contains(key) { continue }
                            if let base = baseAfter[key] { settled.append((key, base)) }
                        }
                        try state.saveBases(job: jobID, settled)
                    }
                }
                try state.saveBases(job: jobID, agreed)
                settle += settleAfterWrites.filter { !failed.contains($0.key) }.map(\.value)
                try state.settleConflicts(ids: settle)
                // The change feeds move on only now: a crash before reads them again from where they were.
                // A change not applied (refused, changed meanwhile, stopped) must be read again, so
                // then the feeds stay where they were too (what was applied is agreed next time).
                for (scan, side) in [(scanA, "#a"), (scanB, "#b")] where failed.isEmpty {
                    if let cursor = scan.cursor { try state.save(job: jobID + side, source: a.displayName, target: b.displayName, cursor: cursor) }
                }
            }
        } catch {
            await a.close()
            await b.close()
            run.report.twoWay = counts
            run.report.durationSeconds = Date().timeIntervalSince(started)
            try? state.recordRun(job: jobID, mode: SyncMode.twoWay.rawValue, startedAt: started, outcome: "error: \(error)", report: run.report.json)
            throw error
        }
        await a.close()
        await b.close()
        run.report.twoWay = counts
        run.report.retries = Self.retries(a, b)
        run.report.durationSeconds = Date().timeIntervalSince(started)
        var outcome = run.report.succeeded ? "ok" : "failed: \(run.report.failed) rejected"
        if counts.manual > 0 { outcome += " (\(counts.manual) conflict\(counts.manual == 1 ? "" : "s") to resolve)" }
        try? state.recordRun(job: jobID, mode: SyncMode.twoWay.rawValue, startedAt: started, outcome: outcome, report: run.report.json)
        return run.report
    }

    /// Reads one side whole: each record's hash, version and newest-wins value, and the fields
    /// of those that differ from the base (or are in a conflict), which may have to be copied.
    ///
    /// A server side (a change feed with tombstones) is read whole the first time; later runs
    /// read only what changed since the last run's cursor (`JOB#a`, `JOB#b` in the checkpoints),
    /// or whole again when the server purged the tombstones past it (410, errno 124).
    func scan(_ endpoint: any Endpoint, side: String, job: SyncJob, bases: [String: StateStore.Base], conflicts: [String: StateStore.Conflict],
              managed: Set<String>, state: StateStore, run: inout Run) async throws -> TwoWayScan {
        var out = TwoWayScan()
        let keyField = job.keyField
        var this = run
        func take(_ items: [SourceItem]) throws {
            for item in items {
                this.report.read += 1
                guard case .record(var fields) = item else {
                    if case .deleted(let value) = item, let key = RecordKey(value) {
                        out.sides[key.text] = .absent
                        out.keys[key.text] = key
                    }
                    continue
                }
                let version = fields.removeValue(forKey: Self.versionField)?.intValue
                for field in managed { fields.removeValue(forKey: field) }
                guard let key = fields[keyField].flatMap(RecordKey.init) else {
                    try this.reject(key: nil, record: .object(fields), reason: "no usable key on \(endpoint.displayName): field \"\(keyField)\" is missing, empty, or not a string or integer")
                    continue
                }
                let hash = RecordHash(fields: fields, keyField: keyField, keyText: key.text).description
                let newest: JSON? = if let field = job.newestField { fields[field] } else { version.map(JSON.int) }
                out.sides[key.text] = SideState(hash: hash, version: version, newest: newest)
                out.keys[key.text] = key
                if bases[key.text]?.hash != hash || conflicts[key.text] != nil { out.changed[key.text] = fields }
            }
        }
        if endpoint is any DeletingChangeFeed, let cursor = try state.cursor(job: job.id + side) {
            out.complete = false
            out.cursor = cursor
            do {
                for try await batch in try endpoint.readChanges(after: cursor, batchSize: job.effectiveBatchSize) {
                    try take(batch.items)
                    if let next = batch.cursor { out.cursor = next }
                }
            } catch let error as SyncError where error.kind == .cursorExpired {
                // The server purged tombstones past the checkpoint, so the feed would miss deletes:
                // read the side whole instead (a record the base knows and the side lacks is then
                // deleted there), and go on from where that read ends.
                onNotice?("\(error.message); reading \(endpoint.displayName) whole instead, then resuming from there")
                out = TwoWayScan()
                this = run
                this.report.resynced = true
                out.cursor = try await endpoint.readAll(batchSize: job.effectiveBatchSize).forEach { items in try take(items) }
            }
        } else {
            out.cursor = try await endpoint.readAll(batchSize: job.effectiveBatchSize).forEach { items in try take(items) }
            // Only a server's feed carries deletes: other sides are read whole every run.
            if !(endpoint is any DeletingChangeFeed) { out.cursor = nil }
        }
        run = this
        return out
    }
}
