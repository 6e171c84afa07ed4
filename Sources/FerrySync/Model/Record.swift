public import FerryCore

/// The identity of a record: its key field's value (a string or a whole number).
///
/// Two keys are equal when their text is: `5` from a CSV file and `"5"` from a
/// Kinto server name the same record, so syncing between them never duplicates it.
public struct RecordKey: Hashable, Sendable, Comparable, CustomStringConvertible {
    /// The value as the source gave it (kept so typed targets can store an integer key).
    public let value: JSON
    /// The text form every comparison uses.
    public let text: String

    /// A key from a field value; `nil` when the value cannot be a key (null, object, array, bool).
    public init?(_ value: JSON) {
        switch value {
        case .string(let s) where !s.isEmpty: text = s
        case .int(let i): text = String(i)
        case .double(let d) where d.rounded() == d && abs(d) < 9e15: text = String(Int64(d))
        default: return nil
        }
        self.value = value
    }

    public static func == (a: RecordKey, b: RecordKey) -> Bool { a.text == b.text }
    public func hash(into hasher: inout Hasher) { hasher.combine(text) }
    public static func < (a: RecordKey, b: RecordKey) -> Bool { a.text < b.text }
    public var description: String { text }
}

/// One record: its fields (the key field among them) and its key.
public struct Record: Sendable, Equatable {
    public var key: RecordKey
    public var fields: [String: JSON]

    public init(key: RecordKey, fields: [String: JSON]) {
        self.key = key
        self.fields = fields
    }
}

/// What a connector reads: a record as it is now, or the news that one was deleted.
public enum SourceItem: Sendable, Equatable {
    case record([String: JSON])
    case deleted(key: JSON)
}

/// What a target applies.
public enum Change: Sendable, Equatable {
    case upsert(Record)
    case delete(RecordKey)

    public var key: RecordKey {
        switch self {
        case .upsert(let r): r.key
        case .delete(let k): k
        }
    }
}

/// How a target answered one batch.
public struct ApplyOutcome: Sendable, Equatable {
    public var created = 0
    public var updated = 0
    /// Upserts whose target cannot tell created from updated (a server batch, a file).
    public var written = 0
    public var deleted = 0
    /// Deletes of keys the target did not have.
    public var alreadyGone = 0
    /// Changes the target refused, with the reason: they go to the dead-letter file.
    public var rejected: [(change: Change, reason: String)] = []
    /// Conditional writes (two-way) the target refused because the record changed since it
    /// was read (412): left as they are, for the next run to pick up.
    public var changedMeanwhile: [RecordKey] = []

    public init() {}

    /// Adds the counts and refusals of another part of the same batch.
    public mutating func add(_ other: ApplyOutcome) {
        created += other.created
        updated += other.updated
        written += other.written
        deleted += other.deleted
        alreadyGone += other.alreadyGone
        rejected += other.rejected
        changedMeanwhile += other.changedMeanwhile
    }

    public static func == (a: ApplyOutcome, b: ApplyOutcome) -> Bool {
        a.created == b.created && a.updated == b.updated && a.written == b.written
            && a.deleted == b.deleted && a.alreadyGone == b.alreadyGone && a.rejected.count == b.rejected.count
    }
}
