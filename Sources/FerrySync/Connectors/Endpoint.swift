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

    /// Every live record, in batches (see ``SourceBatches``). A batch's cursor, when there is
    /// one, is where an incremental run may start once everything up to that batch is
    /// committed (a server's timestamp); the last such cursor is where it may start after the
    /// whole read. Sources without such a place give every batch a nil cursor.
    func readAll(batchSize: Int) throws -> SourceBatches

    /// What changed after `cursor` (everything when nil), in batches. Each batch comes with
    /// the cursor to save once the target has committed it, or nil when it is not yet a safe place to resume.
    /// - Throws: at once for what the read can tell without reading (no `--cursor-field`, …).
    func readChanges(after cursor: Cursor?, batchSize: Int) throws -> SourceBatches

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

/// One batch a source read.
public struct SourceBatch {
    public var items: [SourceItem]
    /// Where to resume once the target committed this batch and those before it; nil when
    /// this is not yet a safe place to resume.
    public var cursor: Cursor?

    public init(_ items: [SourceItem], cursor: Cursor? = nil) {
        self.items = items
        self.cursor = cursor
    }
}

/// Reads a source one batch at a time: a connector's state between two batches (the key a
/// table read stopped at, an open file, the request for the next page).
public protocol BatchReader: AnyObject {
    /// The next batch, read when asked (a page, a chunk of the file); nil at the end.
    /// Called by one task at a time, and not again after nil or an error.
    func next() async throws -> SourceBatch?
}

/// The batches of one read of a source (``Endpoint/readAll(batchSize:)``,
/// ``Endpoint/readChanges(after:batchSize:)``), in order.
///
/// Nothing is read until the iterator asks for the first batch, and each batch only when it
/// asks for the next. A consumer stops by leaving its loop (`break`) at a batch boundary:
/// that is no error, and dropping the iterator releases what the read holds (a statement, a
/// file handle, a request in flight is cancelled). Each iteration is a read of its own.
///
/// The end cursor of a full read is the last non-nil cursor of its batches: a source gives a
/// batch (even an empty one) carrying it, and ``forEach(_:)`` returns it.
public struct SourceBatches: AsyncSequence {
    public typealias Element = SourceBatch
    public typealias Failure = any Error
    private let make: () -> any BatchReader

    /// A read whose batches `make()`'s reader hands out (it should read nothing before its first ``BatchReader/next()``).
    public init(_ make: @escaping () -> any BatchReader) {
        self.make = make
    }

    /// A read with no batch (a table that does not exist yet).
    public static var empty: SourceBatches { SourceBatches { EmptyReader() } }

    public func makeAsyncIterator() -> Iterator { Iterator(reader: make()) }

    public struct Iterator: AsyncIteratorProtocol {
        let reader: any BatchReader
        public mutating func next() async throws -> SourceBatch? { try await reader.next() }
    }

    private final class EmptyReader: BatchReader {
        func next() async throws -> SourceBatch? { nil }
    }

    /// Reads to the end, handing each batch's items to `body`; returns the last cursor (the
    /// end cursor of a full read).
    @discardableResult
    public func forEach(_ body: ([SourceItem]) async throws -> Void) async throws -> Cursor? {
        var last: Cursor? = nil
        for try await batch in self {
            try await body(batch.items)
            if let cursor = batch.cursor { last = cursor }
        }
        return last
    }
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
    /// A target's ``SyncJob/fillFactor``.
    public var fillFactor: Int? = nil

    public init() {}
}
