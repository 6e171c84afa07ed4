public import FerryCore

/// One job as a person gives it — `ferry sync`'s flags, a jobs file's keys, or a library caller's
/// JSON (``JobSpec`` is `Decodable` with the jobs file's keys) — with its settings already typed:
/// the mode, the conflict policy and the schedule travel as enums, not text.
///
/// Every way of giving a job builds a spec and checks it with ``validate(_:)``, the one place the
/// settings' ranges and combinations are checked, so a bad value gets the same message wherever
/// it came from, in that place's spelling (``JobRules/Spelling``):
///
/// ```swift
/// var spec = JobSpec(source: "file:a.jsonl", target: "sqlite:b.db#t")
/// spec.batchSize = 0
/// try spec.validate(.flags)     // "--batch-size must be between 1 and 100000, not 0"
/// try spec.validate(.jobsFile)  // "batch_size must be between 1 and 100000, not 0"
/// let job = spec.job            // the engine's SyncJob
/// ```
public struct JobSpec: Sendable, Equatable {
    /// The job's name (a jobs file's key, `--job`); its checkpoint is kept under it.
    public var name: String? = nil
    public var source: String
    public var target: String
    public var mode: SyncMode = .full
    /// With a full run: delete target records the source lacks.
    public var delete = false
    /// The field holding each record's key.
    public var key = "id"
    /// The `updated_at`-like field of incremental runs from a table, a file or a REST API.
    public var cursorField: String? = nil
    /// Records per batch; nil: the target's preferred size.
    public var batchSize: Int? = nil
    /// How full a PostgreSQL table Ferry creates fills its pages, in percent; nil: 50.
    public var fillFactor: Int? = nil
    /// Tries again after the first, per request.
    public var retries = RetryPolicy().maxAttempts - 1
    /// Two-way: what to do with a record changed on both sides (nil: manual).
    public var onConflict: ConflictPolicy? = nil
    /// Two-way with newest-wins: the field that says which side is newer.
    public var newestField: String? = nil
    public var verify = false
    public var strict = false
    public var dryRun = false
    /// Whether diff and verify may reconcile with a server that offers it.
    public var reconcile = true
    public var transform = Transform()
    public var sourceAuth: String? = nil
    public var targetAuth: String? = nil
    public var sourceREST: [String: String] = [:]
    public var targetREST: [String: String] = [:]
    /// Where rejected records go (default: next to the state database).
    public var deadLetter: String? = nil
    /// What starts the job's runs.
    public var trigger = JobTrigger.once

    public init(source: String, target: String) {
        self.source = source
        self.target = target
    }

    /// A setting the spec refuses: which one (so a jobs file can point at its line) and why.
    public struct Invalid: Error, Sendable, Equatable {
        public var setting: JobRules.Setting
        public var message: String
    }

    /// Checks every rule of ``JobRules`` the spec's settings must obey, in one order for every
    /// way of giving a job.
    /// - Throws: ``Invalid``: the first setting that breaks a rule, the message in `spelling`.
    public func validate(_ spelling: JobRules.Spelling) throws(Invalid) {
        func check(_ setting: JobRules.Setting, _ rule: () throws(SyncError) -> Void) throws(Invalid) {
            do { try rule() } catch { throw Invalid(setting: setting, message: error.message) }
        }
        try check(.key) { () throws(SyncError) in try JobRules.field(key, .key, spelling) }
        if let cursorField { try check(.cursorField) { () throws(SyncError) in try JobRules.field(cursorField, .cursorField, spelling) } }
        if onConflict != nil { try check(.onConflict) { () throws(SyncError) in try JobRules.onConflict(mode: mode, spelling) } }
        if let newestField {
            try check(.newestField) { () throws(SyncError) in
                try JobRules.newestField(policy: onConflict, spelling)
                try JobRules.field(newestField, .newestField, spelling)
            }
        }
        if delete { try check(.delete) { () throws(SyncError) in try JobRules.delete(mode: mode, spelling) } }
        if let batchSize { try check(.batchSize) { () throws(SyncError) in try JobRules.batchSize(batchSize, spelling) } }
        try check(.retries) { () throws(SyncError) in try JobRules.retries(retries, spelling) }
        if let fillFactor { try check(.fillFactor) { () throws(SyncError) in try JobRules.fillFactor(fillFactor, spelling) } }
        if case .follow = trigger {
            try check(.schedule) { () throws(SyncError) in
                try JobRules.follow(mode: mode, delete: delete, dryRun: dryRun, verify: verify, spelling)
            }
        }
    }

    /// The engine's job this spec describes (the state database and `--reset` are the command's).
    public var job: SyncJob {
        var job = SyncJob(source: source, target: target)
        job.name = name
        job.mode = mode
        job.deleteMissing = delete
        job.keyField = key
        job.cursorField = cursorField
        job.batchSize = batchSize
        job.fillFactor = fillFactor
        job.retry.maxAttempts = retries + 1
        if let onConflict { job.onConflict = onConflict }
        job.newestField = newestField
        job.verify = verify
        job.strict = strict
        job.dryRun = dryRun
        job.reconcile = reconcile
        job.transform = transform
        job.sourceAuth = sourceAuth
        job.targetAuth = targetAuth
        job.sourceREST = sourceREST
        job.targetREST = targetREST
        job.deadLetterPath = deadLetter
        return job
    }
}
