public import FerryCore

/// What a read needs from the store, declared by its caller (``Storage/read(_:_:)``).
public enum ReadShape: Sendable, Hashable {
    /// A read-only transaction: every statement of the body sees one consistent snapshot.
    case snapshot
    /// One content read and no transaction, where a transaction costs time of its own (a `BEGIN`
    /// and a `COMMIT`: two round trips on PostgreSQL, 5 % of a GET on SQLite). The body makes one
    /// call that reads content (``StorageSession/get(_:id:includeDeleted:)``,
    /// ``StorageSession/readObject(_:id:uri:checks:principals:)``,
    /// ``StorageSession/timestampAndList(_:query:_:)``, …: each one statement where the backend
    /// can), and besides it only reads whose answer may come from another moment without harm:
    /// - checks of access (``StorageSession/anyGranted(_:principals:)``,
    ///   ``StorageSession/childIDs(under:childPath:permissions:principals:)``,
    ///   ``StorageSession/groups(containing:)``, ``StorageSession/firstMissing(_:)``), before or after
    ///   it, as Kinto checks them apart from the read;
    /// - the tombstone horizon after it (``StorageSession/tombstoneHorizon(_:)``): it only grows, so
    ///   a value read later than the page is one the page is complete from too.
    ///
    /// The session enforces it on every backend: a second content read, or a write, fails the
    /// read in debug builds (and so in every test that runs the path, on either backend) and, in
    /// release builds, runs the body again in a ``snapshot``. A handler that adds a statement
    /// therefore cannot silently lose snapshot consistency on PostgreSQL, where each statement
    /// outside a transaction is its own snapshot.
    case oneStatement

    /// Whether a ``oneStatement`` read that breaks its shape fails (debug builds) rather than
    /// running again in a snapshot (release builds).
    #if DEBUG
    package static let strict = true
    #else
    package static let strict = false
    #endif

    /// How a backend runs a ``oneStatement`` read.
    /// - Parameters:
    ///   - body: the caller's body.
    ///   - strict: fail when the body breaks the shape (else run it again in `snapshot`).
    ///   - direct: runs a body without a transaction.
    ///   - snapshot: runs a body in a read-only transaction.
    package static func runOneStatement<T: Sendable>(
        _ body: @escaping @Sendable (any StorageSession) throws -> T, strict: Bool = strict,
        direct: (@escaping @Sendable (any StorageSession) throws -> T) async throws -> T,
        snapshot: (@escaping @Sendable (any StorageSession) throws -> T) async throws -> T
    ) async throws -> T {
        do {
            return try await direct { session in
                let guarded = OneStatementSession(session)
                let value = try body(guarded)
                // The body may have swallowed the refusal (`try?`): the shape was broken all the same.
                if let broken = guarded.broken { throw broken }
                return value
            }
        } catch let broken as ReadShapeBroken {
            if strict { throw StorageError.backend(broken.description) }
            return try await snapshot(body)
        }
    }
}

/// A ``ReadShape/oneStatement`` read made a second content read or a write.
struct ReadShapeBroken: Error, CustomStringConvertible {
    var description: String
}

/// A session of a ``ReadShape/oneStatement`` read: it passes one content read (and the reads
/// the shape allows beside it) to the backend's session and refuses anything more.
final class OneStatementSession: StorageSession {
    let base: any StorageSession
    /// The content read made, once one is.
    private var contentRead: String?
    /// Why the shape was broken, once it is (every later call is refused too).
    private(set) var broken: ReadShapeBroken?

    init(_ base: any StorageSession) {
        self.base = base
    }

    /// Lets `name` through as the body's content read.
    private func content(_ name: String) throws {
        if broken == nil, let first = contentRead {
            broken = ReadShapeBroken(description: """
                a read declared one statement (ReadShape.oneStatement) read twice (\(first), then \(name)): \
                outside a transaction the two reads may see different moments; declare ReadShape.snapshot
                """)
        }
        if let broken { throw broken }
        contentRead = name
    }

    /// A read that may come from another moment than the content read (a check of access).
    private func check() throws {
        if let broken { throw broken }
    }

    private func refuseWrite(_ name: String) throws -> Never {
        if broken == nil {
            broken = ReadShapeBroken(description: "a read (ReadShape.oneStatement) tried to write (\(name)); writes run in Storage.write")
        }
        throw broken!
    }

    func timestamp(_ key: ResourceKey) throws -> Int64 {
        try content("timestamp")
        return try base.timestamp(key)
    }

    func get(_ key: ResourceKey, id: String, includeDeleted: Bool) throws -> StoredObject? {
        try content("get")
        return try base.get(key, id: id, includeDeleted: includeDeleted)
    }

    func objects(_ key: ResourceKey, ids: [String]) throws -> [String: StoredObject] {
        try content("objects")
        return try base.objects(key, ids: ids)
    }

    func list(_ key: ResourceKey, query: ListQuery, _ each: (StoredObject) throws -> Bool) throws {
        try content("list")
        try base.list(key, query: query, each)
    }

    func count(_ key: ResourceKey, filters: [Filter], includeDeleted: Bool, ids: [String]?) throws -> Int {
        try content("count")
        return try base.count(key, filters: filters, includeDeleted: includeDeleted, ids: ids)
    }

    func timestampAndList(_ key: ResourceKey, query: ListQuery, _ each: (StoredObject) throws -> Bool) throws -> Int64 {
        try content("timestampAndList")
        return try base.timestampAndList(key, query: query, each)
    }

    func readObject(_ key: ResourceKey, id: String, uri: String, checks: [String: [(uri: String, permission: String)]],
                    principals: [String]) throws -> ObjectRead {
        try content("readObject")
        return try base.readObject(key, id: id, uri: uri, checks: checks, principals: principals)
    }

    func permissions(of uri: String) throws -> Permissions {
        try content("permissions")
        return try base.permissions(of: uri)
    }

    func grants(of principals: [String]) throws -> [String: Set<String>] {
        try content("grants")
        return try base.grants(of: principals)
    }

    func tombstoneHorizon(_ key: ResourceKey) throws -> Int64 {
        // After the content read, a later value is a safe one; before it, it is the content read.
        if contentRead == nil { try content("tombstoneHorizon") } else { try check() }
        return try base.tombstoneHorizon(key)
    }

    func tombstoneTimestamp(_ key: ResourceKey, offset: Int, newestFirst: Bool, atMost: Int64?) throws -> Int64? {
        try content("tombstoneTimestamp")
        return try base.tombstoneTimestamp(key, offset: offset, newestFirst: newestFirst, atMost: atMost)
    }

    func listContentHashes(_ key: ResourceKey, ids: [String]?, _ each: (StoredContentHash) throws -> Void) throws {
        try content("listContentHashes")
        try base.listContentHashes(key, ids: ids, each)
    }

    func recordsWithoutContentHash(after: (key: ResourceKey, id: String)?, limit: Int) throws -> [(key: ResourceKey, object: StoredObject)] {
        try content("recordsWithoutContentHash")
        return try base.recordsWithoutContentHash(after: after, limit: limit)
    }

    func anyGranted(_ grants: [(uri: String, permission: String)], principals: [String]) throws -> Bool {
        try check()
        return try base.anyGranted(grants, principals: principals)
    }

    func childIDs(under parentURI: String, childPath: String, permissions: [String], principals: [String]) throws -> [String] {
        try check()
        return try base.childIDs(under: parentURI, childPath: childPath, permissions: permissions, principals: principals)
    }

    func groups(containing principals: [String]) throws -> [String] {
        try check()
        return try base.groups(containing: principals)
    }

    func firstMissing(_ objects: [(key: ResourceKey, id: String)]) throws -> Int? {
        try check()
        return try base.firstMissing(objects)
    }

    // The folded reads (issue 14): a backend that does not fold them answers nil and reads nothing.

    func readObject(_ key: ResourceKey, id: String, uri: String, checks: [String: [(uri: String, permission: String)]],
                    principals: [String], beside: [(key: ResourceKey, id: String)]) throws -> (read: ObjectRead, beside: [StoredObject?])? {
        if broken != nil || contentRead != nil { try content("readObject") }
        guard let answer = try base.readObject(key, id: id, uri: uri, checks: checks, principals: principals, beside: beside) else { return nil }
        try content("readObject")
        return answer
    }

    func checkAccess(_ checks: [String: [(uri: String, permission: String)]], principals: [String],
                     objects: [(key: ResourceKey, id: String)]) throws -> (passed: Set<String>, firstMissing: Int?)? {
        try check()
        return try base.checkAccess(checks, principals: principals, objects: objects)
    }

    func timestampHorizonAndList(_ key: ResourceKey, query: ListQuery,
                                 _ each: (StoredObject) throws -> Bool) throws -> (timestamp: Int64, horizon: Int64)? {
        if broken != nil || contentRead != nil { try content("timestampHorizonAndList") }
        guard let answer = try base.timestampHorizonAndList(key, query: query, each) else { return nil }
        try content("timestampHorizonAndList")
        return answer
    }

    func put(_ key: ResourceKey, id: String, text: RecordText, requestedTimestamp: Int64?,
             adding permissions: Permissions, on uri: String) throws -> StoredObject { try refuseWrite("put") }

    func raiseTimestamp(_ key: ResourceKey, to value: Int64) throws { try refuseWrite("raiseTimestamp") }
    func put(_ key: ResourceKey, id: String, text: RecordText, requestedTimestamp: Int64?) throws -> StoredObject { try refuseWrite("put") }
    func delete(_ key: ResourceKey, id: String, requestedTimestamp: Int64?) throws -> StoredObject { try refuseWrite("delete") }
    func purgeChildren(of uri: String) throws { try refuseWrite("purgeChildren") }
    func flush() throws { try refuseWrite("flush") }
    func setPermissions(of uri: String, _ permissions: Permissions) throws { try refuseWrite("setPermissions") }
    func addPermissions(of uri: String, _ permissions: Permissions) throws { try refuseWrite("addPermissions") }
    func addPermissions(ofEach uris: [String], _ permissions: Permissions) throws { try refuseWrite("addPermissions") }
    func removePermissions(of uri: String) throws { try refuseWrite("removePermissions") }
    func dropTombstones(_ key: ResourceKey, through: Int64) throws -> Int { try refuseWrite("dropTombstones") }
    func setContentHashes(_ hashes: [(key: ResourceKey, id: String, hash: [UInt8])]) throws { try refuseWrite("setContentHashes") }
    func savepoint<T>(_ body: () throws -> T) throws -> T { try refuseWrite("savepoint") }
}
