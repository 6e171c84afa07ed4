public import FerryCore
import Crypto

/// What to detect.
public enum SyncMode: String, Sendable, CaseIterable {
    /// Copy every record (with ``SyncJob/deleteMissing``, also remove what the source lacks).
    case full
    /// Only what changed after the saved cursor.
    case incremental
    /// Compare both sides by record hashes and apply only the differences, deletes included.
    case diff
    /// Both endpoints change: each run applies A's changes since the base to B and B's to A
    /// (``SyncJob/onConflict`` settles records changed on both).
    case twoWay = "two-way"
}

/// One sync, fully described: endpoints, mode, transform and options.
public struct SyncJob: Sendable {
    /// A name for the checkpoint; derived from source, target and options when nil.
    public var name: String? = nil
    public var source: String
    public var target: String
    public var mode: SyncMode = .full
    /// `full` only: delete target records the source does not have (mirror).
    public var deleteMissing = false
    public var keyField = "id"
    public var cursorField: String? = nil
    public var transform = Transform()
    /// Records per batch (one target transaction or `/batch` group at a time); nil: the
    /// target's ``Endpoint/preferredBatchSize``, else ``defaultBatchSize``.
    public var batchSize: Int? = nil
    public static let defaultBatchSize = 1000
    /// The records per batch a run uses (the engine fills ``batchSize`` in before it runs).
    var effectiveBatchSize: Int { batchSize ?? Self.defaultBatchSize }
    /// How full a PostgreSQL table Ferry creates fills its pages, in percent (10–100); nil:
    /// ``PostgresWriter/fillFactor`` (50). Tables Ferry did not create keep their own.
    public var fillFactor: Int? = nil
    /// Read and plan, change nothing.
    public var dryRun = false
    /// Compare both sides after the run.
    public var verify = false
    /// Stop at the first rejected record instead of dead-lettering it.
    public var strict = false
    /// Where rejected records go; `.ferry/dead-letter/<job>.jsonl` next to the state database when nil.
    public var deadLetterPath: String? = nil
    public var sourceAuth: String? = nil
    public var targetAuth: String? = nil
    /// Settings of a `rest+http(s)://` source or target (``RESTConfiguration``).
    public var sourceREST: [String: String] = [:]
    public var targetREST: [String: String] = [:]
    /// The engine's state database.
    public var statePath = ".ferry/state.db"
    /// Forget the saved checkpoint first.
    public var reset = false
    public var retry = RetryPolicy()
    /// Most differing keys a verification lists.
    public var verifyLimit = 20
    /// Two-way: what to do with a record changed on both sides.
    public var onConflict = ConflictPolicy.manual
    /// Two-way with newest-wins: the field that says which side is newer (nil: the servers' timestamps).
    public var newestField: String? = nil
    /// Whether diff and verify may reconcile with a server that offers it instead of reading it in full.
    public var reconcile = true

    public init(source: String, target: String) {
        self.source = source
        self.target = target
    }

    /// The checkpoint's name: ``name``, or a digest of what decides which records the target holds.
    public var id: String {
        if let name { return name }
        var text = ConnectorRegistry.standard.redacted(source) + "\n" + ConnectorRegistry.standard.redacted(target) + "\nkey=" + keyField
        text += "\ncursor=" + (cursorField ?? "")
        text += "\nfilter=" + transform.filter.map(\.description).joined(separator: "&")
        text += "\nrename=" + transform.rename.sorted { $0.key < $1.key }.map { "\($0.key)>\($0.value)" }.joined(separator: ",")
        text += "\ndrop=" + transform.drop.sorted().joined(separator: ",")
        text += "\nset=" + transform.set.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value.serialized())" }.joined(separator: ",")
        text += "\ncast=" + transform.cast.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value.rawValue)" }.joined(separator: ",")
        let digest = SHA256.hash(data: Array(text.utf8))
        return "job-" + digest.prefix(6).map { String($0, radix: 16).count == 1 ? "0" + String($0, radix: 16) : String($0, radix: 16) }.joined()
    }
}

/// What a run did, for the summary table, `--json` and the run history.
public struct SyncReport: Sendable, Equatable {
    public var job = ""
    public var mode = SyncMode.full
    public var source = ""
    public var target = ""
    public var dryRun = false
    /// Records and tombstones read from the source.
    public var read = 0
    public var created = 0
    public var updated = 0
    /// Upserts the target did not say were creates or updates.
    public var written = 0
    public var deleted = 0
    /// Deletes of records the target did not have.
    public var alreadyGone = 0
    /// Records already equal on both sides (diff).
    public var unchanged = 0
    /// Records the filter left out.
    public var filtered = 0
    /// Records rejected (dead-lettered).
    public var failed = 0
    /// HTTP requests tried again.
    public var retries = 0
    /// Bytes read from the source, where known.
    public var bytesRead: Int? = nil
    public var durationSeconds = 0.0
    public var cursorBefore: Cursor? = nil
    public var cursorAfter: Cursor? = nil
    public var deadLetterPath: String? = nil
    /// `diff --dry-run`: the keys each change would touch (at most 1000 each).
    public var plan: Plan? = nil
    public var verification: Verification? = nil
    /// Set when a diff found the differences by reconciliation with a server.
    public var reconciliation: ReconciliationCost? = nil
    /// The run stopped early at a batch boundary because the process is shutting down
    /// (its checkpoint holds what was committed; the next run goes on from there).
    public var stopped = false
    /// Two-way runs: changes each way and conflicts by outcome.
    public var twoWay: TwoWayCounts? = nil
    /// An incremental run whose checkpoint the source no longer reached back to (its tombstones
    /// were purged past it): the run diffed both sides instead, then saved the source's new position.
    public var resynced = false
    /// Records a file load wrote straight from the file's bytes (SQLiteWriter+Load.swift), for tests.
    var loadedDirectly = 0
    /// The most records a diff held in memory at once (see ``Verification``), for tests.
    var peakRecordsHeld = 0

    public struct Plan: Sendable, Equatable {
        public var creates: [String] = []
        public var updates: [String] = []
        public var deletes: [String] = []
    }

    public init() {}

    /// True when nothing failed and any verification found both sides equal.
    public var succeeded: Bool { failed == 0 && (verification?.equal ?? true) }

    public var json: JSON {
        var out: [String: JSON] = [
            "job": .string(job), "mode": .string(mode.rawValue), "source": .string(source), "target": .string(target),
            "dryRun": .bool(dryRun), "read": .int(Int64(read)), "created": .int(Int64(created)), "updated": .int(Int64(updated)),
            "written": .int(Int64(written)), "deleted": .int(Int64(deleted)), "alreadyGone": .int(Int64(alreadyGone)),
            "unchanged": .int(Int64(unchanged)), "filtered": .int(Int64(filtered)), "failed": .int(Int64(failed)),
            "retries": .int(Int64(retries)), "durationSeconds": .double((durationSeconds * 1000).rounded() / 1000),
            "cursor": cursorAfter?.summary ?? .null, "cursorBefore": cursorBefore?.summary ?? .null,
            "succeeded": .bool(succeeded),
        ]
        out["bytesRead"] = bytesRead.map { .int(Int64($0)) } ?? .null
        if let deadLetterPath, failed > 0 { out["deadLetter"] = .string(deadLetterPath) }
        if let plan {
            out["plan"] = ["creates": .array(plan.creates.map(JSON.string)), "updates": .array(plan.updates.map(JSON.string)), "deletes": .array(plan.deletes.map(JSON.string))]
        }
        if let verification { out["verify"] = verification.json }
        if let reconciliation { out["reconciliation"] = reconciliation.json }
        if stopped { out["stopped"] = true }
        if resynced { out["resynced"] = true }
        if let twoWay { out["twoWay"] = twoWay.json }
        return .object(out)
    }
}
