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

    /// Forgets everything (a write that may change grants, parents or collections).
    func clear() {
        grants.removeAll(keepingCapacity: true)
        parents.removeAll(keepingCapacity: true)
        collections.removeAll(keepingCapacity: true)
    }
}
