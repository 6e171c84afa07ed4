public import AsyncHTTPClient
public import FerryCore
public import Foundation

/// Runs sync jobs: connect → detect → transform → apply → checkpoint → verify.
///
/// The cursor advances only after the target committed the changes before it: in the
/// same transaction on a SQLite or PostgreSQL target, right after the commit elsewhere. A crash at any
/// point leaves a cursor at or before what the target holds, and every change is an
/// idempotent upsert or delete, so a rerun converges without duplicates.
public final class SyncEngine {
    /// Called as records are read: (records done, total when known).
    public var onProgress: ((Int, Int?) -> Void)? = nil
    /// Called with warnings a person should see (a reset checkpoint, …).
    public var onNotice: ((String) -> Void)? = nil
    /// Closed when the process should stop: a run then ends after the batch it is applying
    /// (committed and checkpointed) instead of reading on. Diff runs and file targets, which
    /// commit at the end, run to their end.
    public var stop: WakeSignal? = nil
    /// Called by a two-way run after it read both sides and before it writes (tests change a
    /// side there, as an app would during the run).
    var twoWayWillWrite: (() async throws -> Void)? = nil
    let client: HTTPClient
    /// Which connector takes which endpoint URL.
    let connectors: ConnectorRegistry

    public init(client: HTTPClient = .ferrySync, connectors: ConnectorRegistry = .standard) {
        self.client = client
        self.connectors = connectors
    }

    /// The endpoint of one side of a job.
    func endpoint(_ job: SyncJob, target: Bool, adjust: (inout EndpointOptions) -> Void = { _ in }) throws(SyncError) -> any Endpoint {
        var options = options(job, target: target)
        adjust(&options)
        return try connectors.endpoint(target ? job.target : job.source, options: options, context: ConnectorContext(client: client))
    }

    func options(_ job: SyncJob, target: Bool) -> EndpointOptions {
        var options = EndpointOptions()
        options.keyField = job.keyField
        options.cursorField = job.cursorField
        options.auth = target ? job.targetAuth : job.sourceAuth
        options.rest = target ? job.targetREST : job.sourceREST
        options.retry = job.retry
        if target { options.fillFactor = job.fillFactor }
        return options
    }

    /// Both endpoints of a job, and the job with the fields the target sets itself
    /// dropped from source records (they are neither written nor compared).
    func endpoints(_ job: SyncJob) throws -> (source: any Endpoint, target: any Endpoint, job: SyncJob) {
        let source = try endpoint(job, target: false)
        let target = try endpoint(job, target: true)
        var job = job
        for field in target.managedFields where !job.transform.drop.contains(field) {
            job.transform.drop.append(field)
        }
        job.batchSize = job.batchSize ?? target.preferredBatchSize ?? SyncJob.defaultBatchSize
        return (source, target, job)
    }

    /// Requests both endpoints tried again.
    static func retries(_ endpoints: any Endpoint...) -> Int {
        endpoints.reduce(0) { sum, endpoint in
            sum + ((endpoint as? any RetryingEndpoint)?.retries ?? 0)
        }
    }

    /// Whether a full run from a file into a SQLite table takes the direct load (SQLiteWriter+Load.swift),
    /// or into a PostgreSQL table (PostgresWriter+Load.swift).
    static func loadsDirectly(_ job: SyncJob) -> Bool {
        job.mode == .full && job.transform.isIdentity && !job.deleteMissing
    }

    /// Runs one job once.
    public func run(_ job: SyncJob) async throws -> SyncReport {
        if job.mode == .twoWay { return try await runTwoWay(job) }
        let started = Date()
        let jobID = job.id
        var report = SyncReport()
        report.job = jobID
        report.mode = job.mode
        report.source = connectors.redacted(job.source)
        report.target = connectors.redacted(job.target)
        report.dryRun = job.dryRun
        try JobRules.check(job)

        let requestedBatchSize = job.batchSize
        let (source, target, job) = try endpoints(job)
        if source.displayName == target.displayName {
            throw SyncError.badInput("the source and the target are the same: \(source.displayName)")
        }
        let state = try StateStore(path: job.statePath, forWriting: !job.dryRun)  // a dry run only reads it
        let deadLetterPath = job.deadLetterPath ?? ((job.statePath as NSString).deletingLastPathComponent + "/dead-letter/\(jobID).jsonl")
        report.deadLetterPath = deadLetterPath
        let deadLetter = DeadLetterFile(path: deadLetterPath)
        defer { deadLetter.close() }

        // connect: both sides, before anything is written.
        // A malformed source file changes nothing: it stops the run before the target is touched
        // (or created). Except that a file loaded straight into a table is checked alongside the
        // load, on the other core; the load commits nothing before the check has passed
        // (SQLiteWriter+Load.swift), and a table file this run created is removed if it fails.
        // Into PostgreSQL, such a file is checked as it loads, in one transaction committed at its
        // end (PostgresWriter+Load.swift).
        try await source.open(forWriting: false)
        var validation: BackgroundValidation? = nil
        var createdTarget: String? = nil
        if !job.dryRun, let file = source as? FileEndpoint, let table = target as? SQLiteEndpoint, Self.loadsDirectly(job) {
            validation = BackgroundValidation(file)
            if !FileSystem.exists(table.path) { createdTarget = table.path }
        } else if !job.dryRun, source is FileEndpoint, target is PostgresEndpoint, Self.loadsDirectly(job) {
            // checked by the load itself
        } else if !job.dryRun, let source = source as? any ValidatingSource {
            try await source.validate()
        }
        // Whatever ends the run, the check has ended first; a malformed file's error is the run's.
        func failure(_ error: any Error) async -> any Error {
            guard let failed = validation?.waitForFailure() else { return error }
            await target.close()
            if let createdTarget { FileSystem.removeDatabase(createdTarget) }
            return failed
        }
        var targetExists = true
        do {
            try await target.open(forWriting: !job.dryRun)
        } catch let error as SyncError where job.dryRun && error.kind == .notFound {
            // A dry run plans against a target that is not there yet, as if it were empty.
            targetExists = false
            onNotice?("\(target.displayName) does not exist yet: planning against an empty target")
        } catch {
            throw await failure(error)
        }

        var run = Run(job: job, jobID: jobID, report: report, deadLetter: deadLetter, state: state,
                      sourceName: source.displayName, targetName: target.displayName)
        let writer: (any TargetWriter)? = job.dryRun ? nil : try await target.makeWriter(job: jobID)
        // A target that takes attachments gets their files from a source that has them.
        if let receiver = writer as? any AttachmentReceiving, let files = source as? any AttachmentSource {
            receiver.attachmentSource = files
        }
        run.writer = writer
        run.seen = job.mode == .full && job.deleteMissing ? [] : nil
        // Counting costs a pass over a file: only when someone watches the progress.
        let total = onProgress == nil ? nil : try? await source.estimatedCount()
        onProgress?(0, total)
        let progress = onProgress

        let stop = self.stop
        let stoppable = writer?.commitsEachBatch == true
        /// Whether to end reading at this batch boundary (the process is stopping): the batch
        /// before it is committed and checkpointed; leaving the loop drops the read.
        func stopping() -> Bool {
            guard stoppable, stop?.isClosed == true else { return false }
            run.report.stopped = true
            return true
        }
        do {
            switch job.mode {
            case .full:
                var resume: Cursor?
                if let sqlite = writer as? SQLiteWriter, let file = source as? FileEndpoint, Self.loadsDirectly(job) {
                    // A file straight into a table: no record is built (SQLiteWriter+Load.swift).
                    if try sqlite.load(file, validation: validation, run: &run, progress: progress, total: total, stop: stoppable ? stop : nil) {
                        run.report.stopped = true
                    }
                    try validation?.wait()  // (a file with no record commits nothing to wait for)
                } else if let postgres = writer as? PostgresWriter, let file = source as? FileEndpoint, Self.loadsDirectly(job) {
                    // A file straight into a PostgreSQL table: no record is built (PostgresWriter+Load.swift).
                    if try await postgres.load(file, run: &run, progress: progress, total: total, stop: stoppable ? stop : nil) {
                        run.report.stopped = true
                    }
                } else {
                    try validation?.wait()
                    for try await batch in try source.readAll(batchSize: job.effectiveBatchSize) {
                        let changes = try run.prepare(batch.items, incremental: false)
                        try await run.commit(changes, cursor: nil)
                        progress?(run.report.read, total)
                        if let cursor = batch.cursor { resume = cursor }
                        if stopping() { break }
                    }
                    // A stopped read did not reach its end: no place to resume from.
                    if run.report.stopped { resume = nil }
                }
                // Deleting what the source lacks needs every source key: not after a stop.
                if job.deleteMissing && !run.report.stopped {
                    if targetExists { try await run.deleteMissing(from: target) }
                }
                try await run.finish(cursor: resume)
            case .incremental:
                if job.reset {
                    try state.reset(job: jobID)
                    try await writer?.resetCheckpoint()
                }
                var cursor: Cursor?
                if let writer, writer.keepsCheckpoint {
                    cursor = try await writer.storedCursor()
                } else {
                    cursor = try state.cursor(job: jobID)
                    if cursor != nil, (try? await target.estimatedCount()) == 0 {
                        onNotice?("the target \(target.displayName) is empty: ignoring the saved checkpoint and reading from the start")
                        cursor = nil
                    }
                }
                run.report.cursorBefore = cursor
                run.lastCursor = cursor
                do {
                    if let sqlite = writer as? SQLiteWriter, let server = source as? KintoEndpoint,
                       sqlite.takesFeedDirectly(from: server, job: job), case .since(let since) = cursor ?? .since(0) {
                        // A server's feed straight into a table: no record is built (SQLiteWriter+Feed.swift).
                        // Pages as large as the server gives unless the job names a batch size.
                        let pages = server.rawChanges(after: since, batchSize: job.effectiveBatchSize,
                                                      pageSize: requestedBatchSize ?? server.rawPageSize(batchSize: job.effectiveBatchSize))
                        while let page = try await pages.next() {
                            try sqlite.load(page, from: server, run: &run)
                            try run.committed(cursor: .since(page.last))
                            progress?(run.report.read, total)
                            if stopping() { break }
                        }
                    } else {
                        for try await batch in try source.readChanges(after: cursor, batchSize: job.effectiveBatchSize) {
                            let changes = try run.prepare(batch.items, incremental: true)
                            try await run.commit(changes, cursor: batch.cursor)
                            progress?(run.report.read, total)
                            if stopping() { break }
                        }
                    }
                } catch let error as SyncError where error.kind == .cursorExpired {
                    // Deletes older than the checkpoint are gone from the feed: compare both sides
                    // (deletes included) and go on from where that read of the source ended.
                    onNotice?("\(error.message); comparing both sides instead (a diff), then resuming from there")
                    run.report.resynced = true
                    try await run.diff(source: source, target: targetExists ? target : nil, progress: progress, total: total, resume: true)
                    break
                }
                try await run.finish(cursor: run.lastCursor)
            case .diff:
                try await run.diff(source: source, target: targetExists ? target : nil, progress: progress, total: total)
            case .twoWay:
                preconditionFailure("two-way runs go through runTwoWay")
            }
        } catch {
            let error = await failure(error)
            await source.close()
            await target.close()
            run.report.durationSeconds = Date().timeIntervalSince(started)
            try? state.recordRun(job: jobID, mode: job.mode.rawValue, startedAt: started,
                                 outcome: "error: \(error)", report: run.report.json)
            throw error
        }

        if job.verify && targetExists && !run.report.stopped {
            run.report.verification = try await verify(source: source, target: target, job: job)
        }
        await source.close()
        await target.close()
        run.report.retries = Self.retries(source, target)
        run.report.bytesRead = (source as? any ByteCountingSource)?.bytesRead
        run.report.durationSeconds = Date().timeIntervalSince(started)
        var outcome = run.report.succeeded ? "ok" : (run.report.failed > 0 ? "failed: \(run.report.failed) rejected" : "verify: differences")
        if run.report.stopped { outcome += " (stopped early: shutting down)" }
        try? state.recordRun(job: jobID, mode: job.mode.rawValue, startedAt: started, outcome: outcome, report: run.report.json)
        return run.report
    }

    /// Compares both sides without changing either (`ferry verify`, `--verify`).
    public func verify(_ job: SyncJob) async throws -> Verification {
        let (source, target, job) = try endpoints(job)
        try await source.open(forWriting: false)
        try await target.open(forWriting: false)
        let result = try await verify(source: source, target: target, job: job)
        await source.close()
        await target.close()
        return result
    }

    func verify(source: any Endpoint, target: any Endpoint, job: SyncJob) async throws -> Verification {
        if let reconciled = try await reconciledVerify(source: source, target: target, job: job) { return reconciled }
        if let (source, target) = Self.keyOrdered(source: source, target: target, job: job) {
            return try await mergedVerify(source: source, target: target, job: job)
        }
        // A side in no key order: the target's hashes by key (memory grows with the target).
        let keyField = job.keyField
        var result = Verification()
        var targetHashes: [RecordKey: RecordHash] = [:]
        var targetDigest = CollectionDigest()
        try await target.readAll(batchSize: job.effectiveBatchSize).forEach { items in
            for case .record(let fields) in items {
                guard let key = fields[keyField].flatMap(RecordKey.init) else { continue }
                let hash = RecordHash(fields: fields, keyField: keyField, keyText: key.text)
                targetHashes[key] = hash
                targetDigest.add(hash)
            }
        }
        result.peakRecordsHeld = targetHashes.count
        var sourceDigest = CollectionDigest()
        var differing = 0
        let limit = job.verifyLimit
        try await source.readAll(batchSize: job.effectiveBatchSize).forEach { items in
            for case .record(let raw) in items {
                guard case .keep(let fields) = job.transform.apply(raw),
                      let key = fields[keyField].flatMap(RecordKey.init) else { continue }
                let hash = RecordHash(fields: fields, keyField: keyField, keyText: key.text)
                sourceDigest.add(hash)
                switch targetHashes.removeValue(forKey: key) {
                case nil:
                    differing += 1
                    if result.missingInTarget.count < limit { result.missingInTarget.append(key.text) }
                case let other? where other != hash:
                    differing += 1
                    if result.different.count < limit { result.different.append(key.text) }
                default:
                    break
                }
            }
        }
        for key in targetHashes.keys.sorted() {
            differing += 1
            if result.extraInTarget.count < limit { result.extraInTarget.append(key.text) }
        }
        result.settle(source: sourceDigest, target: targetDigest, differing: differing)
        return result
    }
}

/// The state of one run: counts, the writer, the dead-letter file and the cursor.
struct Run {
    let job: SyncJob
    let jobID: String
    var report: SyncReport
    let deadLetter: DeadLetterFile
    let state: StateStore
    let sourceName: String
    let targetName: String
    var writer: (any TargetWriter)? = nil
    var lastCursor: Cursor? = nil
    /// Keys seen in a full run with `--delete`.
    var seen: Set<RecordKey>? = nil

    /// transform: source items become changes; what cannot become one is dead-lettered.
    mutating func prepare(_ items: [SourceItem], incremental: Bool) throws -> [Change] {
        var changes: [Change] = []
        changes.reserveCapacity(items.count)
        let keyField = job.keyField
        for item in items {
            report.read += 1
            switch item {
            case .deleted(let keyValue):
                guard let key = RecordKey(keyValue) else { continue }
                changes.append(.delete(key))
            case .record(let raw):
                switch job.transform.apply(raw) {
                case .keep(let fields):
                    guard let key = fields[keyField].flatMap(RecordKey.init) else {
                        try reject(key: nil, record: .object(raw), reason: "no usable key: field \"\(keyField)\" is missing, empty, or not a string or integer")
                        continue
                    }
                    changes.append(.upsert(Record(key: key, fields: fields)))
                case .filteredOut:
                    report.filtered += 1
                    // In an incremental run a record that stops matching leaves the target.
                    if incremental, case .keep(let fields) = Transform(unfiltered: job.transform).apply(raw),
                       let key = fields[keyField].flatMap(RecordKey.init) {
                        changes.append(.delete(key))
                    }
                case .failed(let reason):
                    let key = raw[keyField].flatMap(RecordKey.init)?.text
                    try reject(key: key, record: .object(raw), reason: reason)
                }
            }
        }
        if seen != nil {
            for case .upsert(let record) in changes { seen!.insert(record.key) }
        }
        return changes
    }

    mutating func reject(key: String?, record: JSON?, reason: String) throws {
        report.failed += 1
        try deadLetter.append(job: jobID, key: key, record: record, reason: reason)
        if job.strict {
            throw SyncError(.interrupted, "record \(key ?? "without key") was rejected: \(reason) (--strict stops here)")
        }
    }

    /// apply + checkpoint.
    mutating func commit(_ changes: [Change], cursor: Cursor?) async throws {
        guard let writer else {
            // dry run: count what would be done
            for change in changes {
                if case .upsert = change { report.written += 1 } else { report.deleted += 1 }
            }
            if let cursor { lastCursor = cursor }
            return
        }
        if !changes.isEmpty || (cursor != nil && writer.keepsCheckpoint) {
            let outcome = try await writer.apply(changes, cursor: writer.keepsCheckpoint ? cursor : nil)
            try absorb(outcome)
        }
        if let cursor { try committed(cursor: cursor) }
    }

    /// When the state file last took a checkpoint in this run (at first: when the run began).
    var stateSaved = ContinuousClock.now

    /// After the writer committed a batch with `cursor` as its checkpoint: the run goes on from there.
    ///
    /// A target that keeps its checkpoint with its data (in the same transaction) resumes from
    /// that one, never from the state file's: there the copy is for people watching the run
    /// (`ferry status`), saved at most once a second and at the end (``finish(cursor:)``); a run
    /// shorter than a second saves it once.
    /// Measured: a save per page was 7.5 % of a full read from a server into SQLite.
    mutating func committed(cursor: Cursor) throws {
        lastCursor = cursor
        guard let writer, writer.commitsEachBatch else { return }
        let now = ContinuousClock.now
        if writer.keepsCheckpoint, stateSaved.duration(to: now) < .seconds(1) { return }
        try state.save(job: jobID, source: sourceName, target: targetName, cursor: cursor)
        stateSaved = now
    }

    mutating func absorb(_ outcome: ApplyOutcome) throws {
        report.created += outcome.created
        report.updated += outcome.updated
        report.written += outcome.written
        report.deleted += outcome.deleted
        report.alreadyGone += outcome.alreadyGone
        for (change, reason) in outcome.rejected {
            var record: JSON? = nil
            if case .upsert(let r) = change { record = .object(r.fields) }
            try reject(key: change.key.text, record: record, reason: reason)
        }
    }

    mutating func finish(cursor: Cursor?) async throws {
        guard let writer else {
            report.cursorAfter = cursor ?? report.cursorBefore
            return
        }
        let outcome = try await writer.finish(cursor: cursor)
        try absorb(outcome)
        if let cursor {
            try state.save(job: jobID, source: sourceName, target: targetName, cursor: cursor)
        }
        report.cursorAfter = cursor ?? report.cursorBefore
    }

    /// `full --delete`: remove target records the source did not have.
    mutating func deleteMissing(from target: any Endpoint) async throws {
        guard let seen else { return }
        let keyField = job.keyField
        var missing: [RecordKey] = []
        try await target.readAll(batchSize: job.effectiveBatchSize).forEach { items in
            for case .record(let fields) in items {
                if let key = fields[keyField].flatMap(RecordKey.init), !seen.contains(key) { missing.append(key) }
            }
        }
        var index = 0
        while index < missing.count {
            let end = min(index + job.effectiveBatchSize, missing.count)
            try await commit(missing[index..<end].map { .delete($0) }, cursor: nil)
            index = end
        }
    }

    /// diff: hash both sides, apply only the differences. A server target that reconciles is
    /// compared by fingerprints instead of being read (``reconciledDiff(source:server:progress:total:resume:)``);
    /// so is a server source, whose differing records alone are then read by id
    /// (``reconciledFetch(server:target:resume:)``); between two such servers neither is read
    /// (the engine relays the exchange between them).
    /// - Parameter target: nil when a dry run plans against a target that does not exist yet.
    /// - Parameter resume: save where the read of the source ended as the checkpoint (an
    ///   incremental run resynchronising goes on from there).
    mutating func diff(source: any Endpoint, target: (any Endpoint)?, progress: ((Int, Int?) -> Void)?, total: Int?,
                       resume: Bool = false) async throws {
        if let target, let servers = SyncEngine.reconcilingServers(source: source, target: target, job: job) {
            return try await reconciledFetch(server: servers.source, target: servers.target, resume: resume)
        }
        if let target, let (server, localIsSource) = SyncEngine.reconcilingServer(source: source, target: target, job: job) {
            if localIsSource { return try await reconciledDiff(source: source, server: server, progress: progress, total: total, resume: resume) }
            return try await reconciledFetch(server: server, target: target, resume: resume)
        }
        if let target, let (source, target) = SyncEngine.keyOrdered(source: source, target: target, job: job) {
            return try await mergedDiff(source: source, target: target, progress: progress, total: total)
        }
        // A side in no key order: the target's hashes by key (memory grows with the target).
        let keyField = job.keyField
        var targetHashes: [RecordKey: RecordHash] = [:]
        try await target?.readAll(batchSize: job.effectiveBatchSize).forEach { items in
            for case .record(let fields) in items {
                guard let key = fields[keyField].flatMap(RecordKey.init) else { continue }
                targetHashes[key] = RecordHash(fields: fields, keyField: keyField, keyText: key.text)
            }
        }
        report.peakRecordsHeld = targetHashes.count
        var plan = DiffPlan()
        var this = self
        let end = try await source.readAll(batchSize: job.effectiveBatchSize).forEach { items in
            for change in try this.prepare(items, incremental: false) {
                guard case .upsert(let record) = change else { continue }
                let hash = RecordHash(fields: record.fields, keyField: keyField, keyText: record.key.text)
                switch targetHashes.removeValue(forKey: record.key) {
                case let existing? where existing == hash:
                    this.report.unchanged += 1
                case let existing:
                    try await plan.upsert(record, exists: existing != nil, run: &this)
                }
            }
            progress?(this.report.read, total)
        }
        for key in targetHashes.keys.sorted() {
            try await plan.delete(key, run: &this)
        }
        try await plan.finish(run: &this, cursor: resume ? end : nil)
        self = this
    }
}

/// What a diff does as it finds it: changes committed in batches, and the plan the report shows.
struct DiffPlan {
    var plan = SyncReport.Plan()
    var counts = (creates: 0, updates: 0, deletes: 0)
    var pending: [Change] = []
    /// The most keys of each kind the report lists.
    static let listed = 1000

    mutating func upsert(_ record: Record, exists: Bool, run: inout Run) async throws {
        run.writer?.note(key: record.key, exists: exists)
        if exists {
            counts.updates += 1
            if plan.updates.count < Self.listed { plan.updates.append(record.key.text) }
        } else {
            counts.creates += 1
            if plan.creates.count < Self.listed { plan.creates.append(record.key.text) }
        }
        try await add(.upsert(record), run: &run)
    }

    mutating func delete(_ key: RecordKey, run: inout Run) async throws {
        counts.deletes += 1
        if plan.deletes.count < Self.listed { plan.deletes.append(key.text) }
        try await add(.delete(key), run: &run)
    }

    private mutating func add(_ change: Change, run: inout Run) async throws {
        pending.append(change)
        if pending.count >= run.job.effectiveBatchSize {
            try await run.commit(pending, cursor: nil)
            pending.removeAll(keepingCapacity: true)
        }
    }

    mutating func finish(run: inout Run, cursor: Cursor? = nil) async throws {
        if !pending.isEmpty { try await run.commit(pending, cursor: nil) }
        run.report.plan = plan
        if run.writer == nil {
            // A dry run: say what would be done.
            run.report.created = counts.creates
            run.report.updated = counts.updates
            run.report.deleted = counts.deletes
            run.report.written = 0
        }
        try await run.finish(cursor: cursor)
    }
}

extension Transform {
    /// The same mapping without the filter.
    init(unfiltered other: Transform) {
        self = other
        self.filter = []
    }
}
