import FerryStore

/// What the requests of one batch already read in its transaction and may reuse: the
/// caller's grants on parents (a collection, a bucket), which parents exist, and a
/// collection's stored object (for its rules). A batch of a thousand records into one
/// collection then checks those once instead of a thousand times.
///
/// The batch drops all of it before and after each request that writes anything but a
/// record (a bucket, collection or group write can change every one of these facts); record
/// writes change none of them (a record's own permissions are never remembered). Outside a
/// batch nothing is remembered (``isShared`` is false): one request has nothing to share.
final class TransactionMemo: @unchecked Sendable {
    // Used by one transaction, on the thread that runs it, one request after the other.
    let isShared: Bool
    private var grants: [String: Bool] = [:]
    private var parents: Set<String> = []
    private var collections: [String: StoredObject?] = [:]
    /// Records of the batch's record writes, read together before the first of them
    /// (``prefetch(_:ids:session:)``) and kept as the batch writes them; nil inside: absent.
    private var objects: [ResourceKey: [String: StoredObject?]] = [:]

    init(shared: Bool = false) {
        isShared = shared
    }

    /// A remembered grant on a parent (nil: not known).
    func grant(_ key: String) -> Bool? { grants[key] }

    func remember(grant key: String, _ granted: Bool) {
        if isShared { grants[key] = granted }
    }

    /// Whether the parents of the objects under `parentURI` were seen to exist.
    func parentsExist(_ parentURI: String) -> Bool { parents.contains(parentURI) }

    func rememberParentsExist(_ parentURI: String) {
        if isShared { parents.insert(parentURI) }
    }

    /// The collection's object, read once (nil inside: it does not exist).
    func collection(_ uri: String, _ read: () throws -> StoredObject?) rethrows -> StoredObject? {
        if let known = collections[uri] { return known }
        let object = try read()
        if isShared { collections[uri] = .some(object) }
        return object
    }

    /// Reads the live objects among `ids` in one statement, to answer ``object(_:id:read:)``.
    func prefetch(_ key: ResourceKey, ids: [String], session: any StorageSession) throws {
        guard isShared, !ids.isEmpty else { return }
        let found = try session.objects(key, ids: ids)
        var known = objects[key] ?? [:]
        for id in ids { known[id] = .some(found[id]) }
        objects[key] = known
    }

    /// The live object `id` of `key` (nil: absent) as prefetched and written since, else `read()`.
    func object(_ key: ResourceKey, id: String, _ read: () throws -> StoredObject?) rethrows -> StoredObject? {
        if let known = objects[key]?[id] { return known }
        return try read()
    }

    /// What a write left of a prefetched object: `object` is the stored object, nil when deleted.
    func wrote(_ key: ResourceKey, id: String, _ object: StoredObject?) {
        guard objects[key]?[id] != nil else { return }
        objects[key]![id] = .some(object)
    }

    /// Forgets the prefetched objects (a request that failed in a savepoint may have written
    /// before it failed, and its savepoint undid it).
    func forgetObjects() {
        objects.removeAll(keepingCapacity: true)
    }

    /// Forgets everything (a write that may change grants, parents or collections).
    func clear() {
        grants.removeAll(keepingCapacity: true)
        parents.removeAll(keepingCapacity: true)
        collections.removeAll(keepingCapacity: true)
        objects.removeAll(keepingCapacity: true)
    }
}
