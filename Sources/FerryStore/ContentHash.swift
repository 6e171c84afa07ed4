public import FerryCore

/// The content hash stored beside every live record: its ``RecordHash`` (RFC 8785 canonical
/// JSON without `null` fields and without `last_modified`, the hash of the sync engine's diff
/// and verify), written by every ``StorageSession/put(_:id:data:requestedTimestamp:)`` and
/// cleared by every delete, so set reconciliation reads (id, hash) pairs and parses no JSON.
/// Only records carry one (the kinds a client syncs); buckets, collections and the rest do not.
enum ContentHash {
    /// The kind whose objects carry a content hash.
    static let resourceName = "record"

    /// The hash to store for an object being put (`data` without `id` and `last_modified`), nil
    /// for kinds that carry none.
    static func of(_ key: ResourceKey, id: String, data: [String: JSON]) -> [UInt8]? {
        key.resourceName == resourceName ? RecordHash(fields: data, keyField: "id", keyText: id).bytes : nil
    }

    /// The hash to store for an object put with `text`: the one made with it when it was made for this id.
    static func of(_ key: ResourceKey, id: String, text: RecordText) -> [UInt8]? {
        guard key.resourceName == resourceName else { return nil }
        if let made = text.hash, made.id == id { return made.bytes }
        return of(key, id: id, data: text.hashedFields)
    }

    /// The hash of a stored record's JSON text (for rows written before hashes were stored).
    static func of(id: String, json: String) throws -> RecordHash {
        var fields = try JSON.parse(json).objectValue ?? [:]
        fields.removeValue(forKey: "last_modified")
        return RecordHash(fields: fields, keyField: "id", keyText: id)
    }

    /// A stored hash's 16 bytes as a ``RecordHash`` (nil when the column holds anything else).
    static func decode(_ bytes: some Collection<UInt8>) -> RecordHash? {
        guard bytes.count == 16 else { return nil }
        let high = bytes.prefix(8).reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
        let low = bytes.suffix(8).reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
        return RecordHash(high: high, low: low)
    }
}

/// A live record's stored content hash as ``StorageSession/listContentHashes(_:ids:_:)`` reads
/// it: the hash, or (a row written by a process that did not store one) the JSON to hash.
public struct StoredContentHash: Sendable {
    public var id: String
    /// The 16 stored bytes, nil when the row has none.
    var bytes: [UInt8]?
    /// The record's JSON, read only when ``bytes`` is nil.
    var json: String?

    init(id: String, bytes: [UInt8]?, json: String?) {
        self.id = id
        self.bytes = bytes
        self.json = json
    }
}

extension StorageSession {
    /// The live records of `key` (only `ids` when given) as (id, ``RecordHash``), in the order of
    /// their ids' UTF-8 bytes, from the stored hashes: no JSON is parsed, except for a row that
    /// has none (written by an older process on a shared database).
    public func contentHashes(_ key: ResourceKey, ids: [String]?, _ each: (String, RecordHash) throws -> Void) throws {
        try listContentHashes(key, ids: ids) { row in
            if let bytes = row.bytes, let hash = ContentHash.decode(bytes) {
                try each(row.id, hash)
            } else {
                try each(row.id, ContentHash.of(id: row.id, json: row.json ?? "{}"))
            }
        }
    }

    /// Stores the content hash of every live record that has none, `batch` rows per statement,
    /// in this transaction (the migration that adds the column calls it); returns how many.
    @discardableResult
    public func backfillContentHashes(batch: Int = 10_000) throws -> Int {
        var done = 0
        var after: (key: ResourceKey, id: String)? = nil
        while true {
            let rows = try recordsWithoutContentHash(after: after, limit: batch)
            try setContentHashes(rows.map { row in (row.key, row.object.id, try ContentHash.of(id: row.object.id, json: row.object.json).bytes) })
            done += rows.count
            guard rows.count == batch, let last = rows.last else { return done }
            after = (last.key, last.object.id)
        }
    }
}
