import FerryCore

/// The checkpoint that ends an incremental read: the newest cursor value read, with the hash of
/// every record that had it (`{"field": value, "key": {key: hash, …}}`).
///
/// A (value, key) checkpoint misses a record written after the run with the same value as the
/// newest and a key before the checkpoint's (two writes in the same second). With the hashes,
/// the next read asks for every record whose value is at least the checkpoint's and drops
/// exactly those it already read with that value; one written later, or changed since with the
/// same value, is read. Past ``keyLimit`` records with the newest value, the key is `""`: the next
/// read takes every record with that value again (repeated, never missed).
///
/// REST APIs, SQLite and PostgreSQL tables and files end their incremental reads with it.
struct ValueCheckpoint {
    /// Most records a checkpoint remembers for its value.
    static let keyLimit = 10_000

    /// The value the read starts from, inclusive (nil: from the beginning).
    let start: JSON?
    /// Whether the saved checkpoint holds hashes, so the read must include its value (`>=`).
    var coversRecords: Bool { covered != nil }
    /// The newest value so far (nil: no record yet).
    private(set) var newest: JSON? = nil

    private let cursor: Cursor?
    private let keyField: String
    /// Records come in cursor order (a table read with `ORDER BY`): a value other than the
    /// newest is newer, and the source's own query has already left out what an old
    /// (value, key) checkpoint covers.
    private let sorted: Bool
    /// The saved checkpoint's records: key → hash.
    private let covered: [RecordKey: String]?
    private var newestRecords: [RecordKey: [String: JSON]] = [:]
    private var overflow = false

    /// - Parameters:
    ///   - cursor: the saved checkpoint.
    ///   - sorted: records come in the order of their cursor value.
    init(after cursor: Cursor?, keyField: String, sorted: Bool) {
        self.cursor = cursor
        self.keyField = keyField
        self.sorted = sorted
        switch cursor {
        case .compound(let value, .object(let members))?:
            start = value
            var covered: [RecordKey: String] = [:]
            for (text, hash) in members {
                if let hash = hash.stringValue, let key = RecordKey(.string(text)) { covered[key] = hash }
            }
            self.covered = covered
        case .compound(let value, _)?:
            start = value
            covered = nil
        default:
            start = nil
            covered = nil
        }
    }

    private func order(_ a: JSON, _ b: JSON) -> Int {
        sorted ? (a == b ? 0 : 1) : JSON.cursorOrder(a, b)
    }

    /// Notes a record read (for the end checkpoint) and says whether it is news: past the saved
    /// checkpoint, or with its value but not read with it before (a late write) or changed since.
    mutating func take(value: JSON, key: RecordKey, fields: [String: JSON]) -> Bool {
        let newer = newest.map { order(value, $0) } ?? 1
        if newer > 0 {
            newest = value
            newestRecords.removeAll(keepingCapacity: true)
            overflow = false
        }
        if newer >= 0 {
            if newestRecords.count < Self.keyLimit || newestRecords[key] != nil {
                newestRecords[key] = fields
            } else {
                overflow = true
            }
        }
        guard let start else { return true }
        let since = order(value, start)
        if since != 0 { return since > 0 }
        if let covered { return covered[key] != hash(fields, key) }
        return sorted || Cursor.isAfter(value: value, key: key, cursor: cursor)
    }

    private func hash(_ fields: [String: JSON], _ key: RecordKey) -> String {
        RecordHash(fields: fields, keyField: keyField, keyText: key.text).description
    }

    /// The checkpoint after the last record (nil when none was read, or the newest value is null:
    /// there is no "at least null" to ask for; a sorted source then keeps the (value, key) of its
    /// last batch, as it does past the limit, where its key column may not take `""`).
    var end: Cursor? {
        guard let newest, newest != .null else { return nil }
        if overflow { return sorted ? nil : .compound(value: newest, key: .string("")) }
        var members: [String: JSON] = [:]
        members.reserveCapacity(newestRecords.count)
        for (key, fields) in newestRecords { members[key.text] = .string(hash(fields, key)) }
        return .compound(value: newest, key: .object(members))
    }
}
