import FerryCore

/// The rows a backend writes objects with. What a put, a delete and a purge of children mean
/// (the extension below) is written once over them; a backend only says how its SQL does each step.
protocol ObjectRows: StorageSession {
    /// Allocates the kind's next timestamp for a write: `requested` when it is above the kind's
    /// current timestamp, else ``Timestamp/next(after:now:)`` of the current one, so a kind's
    /// timestamps strictly increase in commit order (invariant 2). The one step each backend does
    /// its own way: PostgreSQL reads and raises the kind's row in one statement under its row lock
    /// (a second round trip would hold that lock longer), SQLite in memory under its single writer.
    /// On a kind's first write both keep `requested` (Kinto does), else take now (contract test
    /// "first write keeps its requested timestamp").
    func allocateTimestamp(_ key: ResourceKey, requested: Int64?) throws -> Int64
    /// Inserts or replaces an object's row as a live object with this JSON and content hash.
    func upsertRow(_ key: ResourceKey, id: String, lastModified: Int64, json: String, hash: [UInt8]?) throws
    /// Turns an object's row into a tombstone with this JSON (and no content hash).
    func tombstoneRow(_ key: ResourceKey, id: String, lastModified: Int64, json: String) throws
    /// Deletes the rows of the objects whose parent is in `range`, without tombstones.
    func deleteObjectRows(parentIn range: DescendantRange) throws
    /// Deletes the permissions of the objects whose URI is in `range`.
    func deletePermissionRows(objectIn range: DescendantRange) throws
}

/// The URIs under an object: `uri` itself as a parent, and every URI that starts with `uri/`,
/// which sort from `uri/` up to, not including, `uri0` (`0` is the character after `/`).
struct DescendantRange {
    let uri: String
    let lower: String
    let upper: String

    init(_ uri: String) {
        self.uri = uri
        lower = uri + "/"
        upper = uri + "0"
    }
}

extension ObjectRows {
    func put(_ key: ResourceKey, id: String, text: RecordText, requestedTimestamp: Int64?) throws -> StoredObject {
        let ts = try allocateTimestamp(key, requested: requestedTimestamp)
        let json = text.text(id: id, lastModified: ts)
        try upsertRow(key, id: id, lastModified: ts, json: json, hash: ContentHash.of(key, id: id, text: text))
        return StoredObject(id: id, lastModified: ts, deleted: false, json: json)
    }

    /// A live object only: deleting a tombstone or a missing object is ``StorageError/notFound(_:)``.
    func delete(_ key: ResourceKey, id: String, requestedTimestamp: Int64?) throws -> StoredObject {
        guard try get(key, id: id, includeDeleted: false) != nil else {
            throw StorageError.notFound("\(key.resourceName) \(id) does not exist")
        }
        let ts = try allocateTimestamp(key, requested: requestedTimestamp)
        let json = JSON.object(["deleted": true, "id": .string(id), "last_modified": .int(ts)]).serialized()
        try tombstoneRow(key, id: id, lastModified: ts, json: json)
        return StoredObject(id: id, lastModified: ts, deleted: true, json: json)
    }

    /// The objects under `uri` at any depth and their permissions; the object at `uri` keeps its own.
    func purgeChildren(of uri: String) throws {
        let range = DescendantRange(uri)
        try deleteObjectRows(parentIn: range)
        try deletePermissionRows(objectIn: range)
    }
}
