public import FerryCore

/// One side of a sync: a server collection, a table or a file.
///
/// Every connector can be read (as a source, and as a target for `diff` and `verify`) and
/// written. Methods are called from one task at a time.
public protocol Endpoint: AnyObject {
    /// The endpoint's URL with any secret removed, for messages.
    var displayName: String { get }

    /// Checks the endpoint is there and usable; fails early with a clear message.
    /// - Parameter forWriting: also check (and where needed create) what writing needs.
    func open(forWriting: Bool) async throws

    /// How many records there are, when that is cheap to know (for progress).
    func estimatedCount() async throws -> Int?

    /// Reads every live record, in batches.
    /// - Returns: where an incremental run may start afterwards (a server's timestamp), if the source has such a place.
    func readAll(batchSize: Int, _ body: ([SourceItem]) async throws -> Void) async throws -> Cursor?

    /// Reads what changed after `cursor` (everything when nil), in batches. Each batch comes with
    /// the cursor to save once the target has committed it, or nil when it is not yet a safe place to resume.
    func readChanges(after cursor: Cursor?, batchSize: Int, _ body: ([SourceItem], Cursor?) async throws -> Void) async throws

    /// Prepares to write.
    func makeWriter(job: String) async throws -> any TargetWriter

    func close() async

    /// Fields the endpoint sets itself (an API's `updated_at`): never written to it, and
    /// left out when its records are compared with a source's.
    var managedFields: [String] { get }

    /// Records per batch when the job names no `--batch-size` (nil: ``SyncJob/defaultBatchSize``).
    var preferredBatchSize: Int? { get }
}

extension Endpoint {
    public var managedFields: [String] { [] }
    public var preferredBatchSize: Int? { nil }
}

/// Applies changes to a target.
public protocol TargetWriter: AnyObject {
    /// Whether ``apply(_:cursor:)`` commits each batch (databases, servers) or everything
    /// waits for ``finish(cursor:)`` (files, which are replaced whole).
    var commitsEachBatch: Bool { get }

    /// Whether the target stores the job's checkpoint itself, in the same transaction as the data.
    var keepsCheckpoint: Bool { get }

    /// The checkpoint the target stored with its data, when it ``keepsCheckpoint``.
    func storedCursor() async throws -> Cursor?

    /// Forgets the checkpoint the target stored with its data (`--reset`).
    func resetCheckpoint() async throws

    /// Applies one batch. Upserts replace the whole record; deletes of missing keys succeed.
    /// With `cursor` and ``keepsCheckpoint``, the cursor commits with the batch.
    func apply(_ changes: [Change], cursor: Cursor?) async throws -> ApplyOutcome

    /// Completes the run (a file target writes and renames here) and returns what that applied.
    func finish(cursor: Cursor?) async throws -> ApplyOutcome

    /// What a diff found before the batch that upserts `key`: whether the target has it
    /// (an API with separate create and update calls then picks the right one at once).
    func note(key: RecordKey, exists: Bool)

    /// What a two-way run read of `key` before the batch that changes it: a target that can
    /// write conditionally refuses the change if the record is no longer so, and says so in
    /// ``ApplyOutcome/changedMeanwhile``. A server checks the version (`If-Match`); a table
    /// checks the row's hash, read again in the transaction of the write (compare-and-set).
    /// - Parameters:
    ///   - version: the version read; nil with `exists` false: the record must still be absent.
    ///   - hash: the record's ``RecordHash`` as read (nil when absent).
    func expect(key: RecordKey, exists: Bool, version: Int64?, hash: String?)

    /// How a two-way run hashes a record, for a target that checks ``expect(key:exists:version:hash:)``
    /// by content.
    func hashRecords(with hash: @escaping ([String: JSON]) -> String?)
}

extension TargetWriter {
    public func note(key: RecordKey, exists: Bool) {}
    public func expect(key: RecordKey, exists: Bool, version: Int64?, hash: String?) {}
    public func hashRecords(with hash: @escaping ([String: JSON]) -> String?) {}
    public func resetCheckpoint() async throws {}
}

/// How connectors are told apart and configured.
public struct EndpointOptions: Sendable {
    /// The field holding each record's key.
    public var keyField = "id"
    /// The `updated_at`-like field of an incremental run on a table or a file.
    public var cursorField: String? = nil
    /// Credentials for a server or an API: `USER:PASSWORD`, `Bearer TOKEN`,
    /// `header:NAME=VALUE` or `query:NAME=VALUE`.
    public var auth: String? = nil
    /// Settings of a `rest+http(s)://` endpoint (``RESTConfiguration``), as `KEY=VALUE` pairs.
    public var rest: [String: String] = [:]
    /// Retries of one HTTP request.
    public var retry = RetryPolicy()
    /// Where a server endpoint puts each record's version (`last_modified`) when read, for
    /// two-way runs; nil: versions are dropped like other server metadata.
    public var versionField: String? = nil

    public init() {}
}
