public import FerryCore
import Foundation

/// Where objects of one kind live: the records of one collection are
/// `ResourceKey(parentID: "/buckets/b/collections/c", resourceName: "record")`.
public struct ResourceKey: Hashable, Sendable {
    public var parentID: String
    public var resourceName: String

    public init(parentID: String, resourceName: String) {
        self.parentID = parentID
        self.resourceName = resourceName
    }
}

/// One stored object or tombstone, with its JSON text as stored (canonical,
/// including `id` and `last_modified`; tombstones are `{"deleted":true,"id":…,"last_modified":…}`).
public struct StoredObject: Sendable, Hashable {
    public var id: String
    public var lastModified: Int64
    public var deleted: Bool
    public var json: String

    public init(id: String, lastModified: Int64, deleted: Bool, json: String) {
        self.id = id
        self.lastModified = lastModified
        self.deleted = deleted
        self.json = json
    }

    /// The object parsed.
    public func parsed() throws -> [String: JSON] {
        try JSON.parse(json).objectValue ?? [:]
    }
}

/// What a list reads: filters, order, where the page starts, how many.
public struct ListQuery: Sendable, Hashable {
    public var filters: [Filter]
    public var sort: [Sort]
    /// Resume after the object whose sort-field values these are.
    public var after: PageAfter?
    public var limit: Int?
    /// Include tombstones (Kinto does whenever a filter is on `last_modified`).
    public var includeDeleted: Bool
    /// Only these ids (objects shared with a principal), when not `nil`.
    public var ids: [String]?

    public init(filters: [Filter] = [], sort: [Sort] = [Sort("last_modified", descending: true)], after: PageAfter? = nil,
                limit: Int? = nil, includeDeleted: Bool = false, ids: [String]? = nil) {
        self.filters = filters
        self.sort = sort
        self.after = after
        self.limit = limit
        self.includeDeleted = includeDeleted
        self.ids = ids
    }
}

/// Permissions of one object: permission name → principals.
public typealias Permissions = [String: Set<String>]

/// One transaction's view of the store. Every method is synchronous and runs
/// inside the transaction that ``Storage/read(_:_:)`` or ``Storage/write(_:)`` opened.
public protocol StorageSession {
    /// The largest timestamp of the kind of object (0 when nothing ever changed).
    func timestamp(_ key: ResourceKey) throws -> Int64
    /// Raises the kind's timestamp to at least `value` (used to seed children of a new parent).
    func raiseTimestamp(_ key: ResourceKey, to value: Int64) throws
    /// The object with this id, or `nil`. Tombstones only when `includeDeleted`.
    func get(_ key: ResourceKey, id: String, includeDeleted: Bool) throws -> StoredObject?
    /// Creates or replaces an object whose members were serialized already (`text`); a new
    /// timestamp strictly greater than the kind's is allocated (or `requestedTimestamp` if greater
    /// still) and written into it with the id.
    func put(_ key: ResourceKey, id: String, text: RecordText, requestedTimestamp: Int64?) throws -> StoredObject
    /// The live objects (no tombstones) among `ids`, by id: one statement where the backend can
    /// (a batch of record writes reads whether its records exist once, not once per record).
    func objects(_ key: ResourceKey, ids: [String]) throws -> [String: StoredObject]
    /// Replaces an object with a tombstone and returns it.
    func delete(_ key: ResourceKey, id: String, requestedTimestamp: Int64?) throws -> StoredObject
    /// Calls `each` for every matching object in order until it returns `false`.
    func list(_ key: ResourceKey, query: ListQuery, _ each: (StoredObject) throws -> Bool) throws
    /// How many objects match.
    func count(_ key: ResourceKey, filters: [Filter], includeDeleted: Bool, ids: [String]?) throws -> Int
    /// Deletes, without tombstones, every object under `uri` (its children, grandchildren …) and their permissions.
    func purgeChildren(of uri: String) throws
    /// Empties the store: every object and tombstone of every kind (accounts, buckets, groups,
    /// collections, records, webhooks), every kind's timestamp and every permission, without
    /// tombstones (Kinto's `__flush__`). What configures the store itself (the schema, a shared
    /// server secret) stays. Timestamps allocated afterwards start again from the clock.
    func flush() throws

    /// The permissions of the object at `uri`.
    func permissions(of uri: String) throws -> Permissions
    /// Replaces the principals of each permission named in `permissions` (an empty set removes them).
    func setPermissions(of uri: String, _ permissions: Permissions) throws
    /// Gives the principals of `permissions` to an object that holds none yet (one just created):
    /// ``setPermissions(of:_:)`` without removing anything first.
    func addPermissions(of uri: String, _ permissions: Permissions) throws
    /// ``addPermissions(of:_:)`` for each of `uris` (objects just created), in one statement a
    /// permission and principal where the backend can: a batch of new records writes its
    /// creator's entries together (one statement for each record was a sixth of the SQLite
    /// writer's work in a push).
    func addPermissions(ofEach uris: [String], _ permissions: Permissions) throws
    /// Removes every permission of the object at `uri`.
    func removePermissions(of uri: String) throws
    /// Whether any principal holds any of the `(uri, permission)` pairs.
    func anyGranted(_ grants: [(uri: String, permission: String)], principals: [String]) throws -> Bool
    /// The ids of the children under `parentURI` + `/` + `childPath` + `/` for which any principal holds one of `permissions`.
    func childIDs(under parentURI: String, childPath: String, permissions: [String], principals: [String]) throws -> [String]
    /// The URIs (`/buckets/B/groups/G`) of the groups whose `members` hold one of `principals`.
    func groups(containing principals: [String]) throws -> [String]
    /// The URIs of every object on which one of `principals` holds a permission, with those permissions.
    func grants(of principals: [String]) throws -> [String: Set<String>]
    /// An object as a reader gets it, in one statement where the backend can: the object (nil
    /// when absent or deleted), the permissions on `uri`, and which `checks` the principals pass
    /// (a check passes when one of its grants is held by one of them).
    func readObject(_ key: ResourceKey, id: String, uri: String, checks: [String: [(uri: String, permission: String)]],
                    principals: [String]) throws -> ObjectRead
    func firstMissing(_ objects: [(key: ResourceKey, id: String)]) throws -> Int?
    /// Runs `body` in a savepoint of this write transaction: its changes are undone when it throws.
    func savepoint<T>(_ body: () throws -> T) throws -> T
    func timestampAndList(_ key: ResourceKey, query: ListQuery, _ each: (StoredObject) throws -> Bool) throws -> Int64

    /// The kind's tombstone horizon: the newest `last_modified` of a tombstone purged by
    /// retention (``purgeTombstones(_:retention:now:batch:)``), 0 when none ever was. It only
    /// grows, and moves in the transaction that purges: a change feed read after (or in the same
    /// snapshot as) this value is complete from any timestamp at or above it.
    func tombstoneHorizon(_ key: ResourceKey) throws -> Int64
    /// The `last_modified` of the kind's tombstone at `offset` (0: the first) in time order,
    /// newest or oldest first, among those at or below `atMost` (nil: all); nil when there are fewer.
    func tombstoneTimestamp(_ key: ResourceKey, offset: Int, newestFirst: Bool, atMost: Int64?) throws -> Int64?
    /// Deletes the kind's tombstones at or below `through` (no tombstone of their own: they are
    /// the tombstones) and raises its horizon to the newest of them. Returns how many went.
    func dropTombstones(_ key: ResourceKey, through: Int64) throws -> Int

    /// The live records of `key` (only `ids` when given) with their stored content hashes
    /// (``ContentHash``), ordered by the ids' UTF-8 bytes; a row without a hash comes with its
    /// JSON. Use ``contentHashes(_:ids:_:)``, which hashes those.
    func listContentHashes(_ key: ResourceKey, ids: [String]?, _ each: (StoredContentHash) throws -> Void) throws
    /// Up to `limit` live records (of any collection) without a stored content hash, in key
    /// order after `after` (kind and id), for ``backfillContentHashes(batch:)``.
    func recordsWithoutContentHash(after: (key: ResourceKey, id: String)?, limit: Int) throws -> [(key: ResourceKey, object: StoredObject)]
    /// Stores live records' content hashes (one statement where the backend can).
    func setContentHashes(_ hashes: [(key: ResourceKey, id: String, hash: [UInt8])]) throws

    // MARK: Reads and writes folded into fewer statements (issue 14, PostgreSQL)
    // Each answers nil (or does the separate steps) where the backend does not fold them: an
    // embedded database pays nothing per statement, so it reads only what the caller then needs.

    /// ``readObject(_:id:uri:checks:principals:)`` and, in the same statement, the live objects
    /// `beside` (nil where absent or deleted, in their order: a write's parents, its collection);
    /// nil where the backend does not fold them (the caller reads them itself when it needs them).
    func readObject(_ key: ResourceKey, id: String, uri: String, checks: [String: [(uri: String, permission: String)]],
                    principals: [String], beside: [(key: ResourceKey, id: String)]) throws -> (read: ObjectRead, beside: [StoredObject?])?
    /// Which `checks` the principals pass and the position of the first of `objects` that does
    /// not exist (``firstMissing(_:)``), in one statement; nil where the backend does not fold them.
    func checkAccess(_ checks: [String: [(uri: String, permission: String)]], principals: [String],
                     objects: [(key: ResourceKey, id: String)]) throws -> (passed: Set<String>, firstMissing: Int?)?
    /// ``timestampAndList(_:query:_:)`` and the kind's ``tombstoneHorizon(_:)`` in the same
    /// statement (the snapshot of the page); nil, having read nothing, where the backend does not fold them.
    func timestampHorizonAndList(_ key: ResourceKey, query: ListQuery, _ each: (StoredObject) throws -> Bool) throws -> (timestamp: Int64, horizon: Int64)?
    /// ``put(_:id:text:requestedTimestamp:)`` of a new object, and ``addPermissions(of:_:)`` of
    /// `permissions` on `uri`: one statement where the backend can.
    func put(_ key: ResourceKey, id: String, text: RecordText, requestedTimestamp: Int64?,
             adding permissions: Permissions, on uri: String) throws -> StoredObject
}

/// What ``StorageSession/readObject(_:id:uri:checks:principals:)`` found.
public struct ObjectRead: Sendable {
    public var object: StoredObject?
    public var permissions: Permissions
    public var passed: Set<String>

    public init(object: StoredObject?, permissions: Permissions, passed: Set<String>) {
        self.object = object
        self.permissions = permissions
        self.passed = passed
    }
}

extension StorageSession {
    /// Creates or replaces an object. `data`'s `id` and `last_modified` are ignored; see
    /// ``put(_:id:text:requestedTimestamp:)``.
    public func put(_ key: ResourceKey, id: String, data: [String: JSON], requestedTimestamp: Int64?) throws -> StoredObject {
        try put(key, id: id, text: RecordText(data), requestedTimestamp: requestedTimestamp)
    }

    public func objects(_ key: ResourceKey, ids: [String]) throws -> [String: StoredObject] {
        var found: [String: StoredObject] = [:]
        for id in ids where found[id] == nil {
            if let object = try get(key, id: id, includeDeleted: false) { found[id] = object }
        }
        return found
    }

    /// The position of the first of `objects` that does not exist (or is deleted), nil when all
    /// do; one statement where the backend can.
    public func firstMissing(_ objects: [(key: ResourceKey, id: String)]) throws -> Int? {
        try objects.firstIndex { try get($0.key, id: $0.id, includeDeleted: false) == nil }
    }

    /// The kind's timestamp and a page of it (``list(_:query:_:)``), from one snapshot: one
    /// statement where the backend can, so it needs no transaction around it.
    public func timestampAndList(_ key: ResourceKey, query: ListQuery, _ each: (StoredObject) throws -> Bool) throws -> Int64 {
        let current = try timestamp(key)
        try list(key, query: query, each)
        return current
    }

    public func addPermissions(of uri: String, _ permissions: Permissions) throws {
        try setPermissions(of: uri, permissions)
    }

    public func addPermissions(ofEach uris: [String], _ permissions: Permissions) throws {
        for uri in uris { try addPermissions(of: uri, permissions) }
    }

    public func readObject(_ key: ResourceKey, id: String, uri: String, checks: [String: [(uri: String, permission: String)]],
                           principals: [String]) throws -> ObjectRead {
        var passed = Set<String>()
        for (name, grants) in checks where try anyGranted(grants, principals: principals) { passed.insert(name) }
        let object = try get(key, id: id, includeDeleted: false)
        return ObjectRead(object: object, permissions: object == nil ? [:] : try permissions(of: uri), passed: passed)
    }
}

/// The unfolded steps (issue 14): see the protocol's block of folded reads and writes.
extension StorageSession {
    public func readObject(_ key: ResourceKey, id: String, uri: String, checks: [String: [(uri: String, permission: String)]],
                           principals: [String], beside: [(key: ResourceKey, id: String)]) throws -> (read: ObjectRead, beside: [StoredObject?])? {
        nil
    }

    public func checkAccess(_ checks: [String: [(uri: String, permission: String)]], principals: [String],
                            objects: [(key: ResourceKey, id: String)]) throws -> (passed: Set<String>, firstMissing: Int?)? {
        nil
    }

    public func timestampHorizonAndList(_ key: ResourceKey, query: ListQuery,
                                        _ each: (StoredObject) throws -> Bool) throws -> (timestamp: Int64, horizon: Int64)? {
        nil
    }

    public func put(_ key: ResourceKey, id: String, text: RecordText, requestedTimestamp: Int64?,
                    adding permissions: Permissions, on uri: String) throws -> StoredObject {
        let stored = try put(key, id: id, text: text, requestedTimestamp: requestedTimestamp)
        try addPermissions(of: uri, permissions)
        return stored
    }
}

/// A storage backend: opens read and write transactions.
public protocol Storage: Sendable {
    /// Runs `body` in a read of the declared `shape`: a read-only transaction (``ReadShape/snapshot``),
    /// or one content read without a transaction where that saves round trips, enforced by the
    /// session (``ReadShape/oneStatement``).
    func read<T: Sendable>(_ shape: ReadShape, _ body: @escaping @Sendable (any StorageSession) throws -> T) async throws -> T
    /// Runs `body` in a write transaction; it commits when `body` returns and rolls back when it throws.
    func write<T: Sendable>(_ body: @escaping @Sendable (any StorageSession) throws -> T) async throws -> T
    /// ``write(_:)``, and if it commits, the other server processes on this database hear of
    /// `announcements` (collection URIs, `*` for anything) when, and only when, it does.
    func write<T: Sendable>(announcing announcements: [String], _ body: @escaping @Sendable (any StorageSession) throws -> T) async throws -> T
    /// Checks the database answers (for `__heartbeat__`).
    func ping() async -> Bool
    /// Whether a read under a ``StorageDeadline`` stops by itself once the deadline passes (and
    /// fails with ``StorageError/timedOut(seconds:)``), so the HTTP layer need not race it with a timer.
    var stopsReadsAtDeadline: Bool { get }
    /// The database's size on disk in bytes (nil when the backend cannot tell), for the
    /// server's figures.
    func sizeInBytes() async -> Int64?
    /// Flushes and closes.
    func close() throws
    /// The server secret every process on this database shares (user ids are keyed with it):
    /// the first `proposal` made is kept. nil where one process owns the database.
    func sharedSecret(proposing proposal: String) async throws -> String?
    /// Calls `handler` with each change other processes announce (nil: anything may have changed).
    func listenForChanges(_ handler: @escaping @Sendable (String?) -> Void)
    func stopListening()
    /// Runs `body` while this process leads `role` among the server processes on this database,
    /// and waits its turn while another one does; returns when cancelled. `body` is cancelled when
    /// the lead is lost (another process may have taken it over). Work that must happen once per
    /// database, not once per process (webhook deliveries), runs in here.
    func whileLeading(_ role: String, _ body: @escaping @Sendable () async -> Void) async
}

/// A backend that can list all it holds, for tests that check a refused request changed nothing.
package protocol DumpableStorage: Storage {
    /// Every row of every table in a stable order.
    func dump() async throws -> [String]
}

extension Storage {
    /// Runs `body` in a read-only transaction (a consistent snapshot): ``read(_:_:)`` with ``ReadShape/snapshot``.
    public func read<T: Sendable>(_ body: @escaping @Sendable (any StorageSession) throws -> T) async throws -> T {
        try await read(.snapshot, body)
    }

    public func sharedSecret(proposing proposal: String) async throws -> String? { nil }

    public var stopsReadsAtDeadline: Bool { false }

    public func sizeInBytes() async -> Int64? { nil }

    /// One process owns an embedded database: there is nobody to tell.
    public func write<T: Sendable>(announcing announcements: [String], _ body: @escaping @Sendable (any StorageSession) throws -> T) async throws -> T {
        try await write(body)
    }
    public func listenForChanges(_ handler: @escaping @Sendable (String?) -> Void) {}
    public func stopListening() {}
    public func whileLeading(_ role: String, _ body: @escaping @Sendable () async -> Void) async { await body() }
}

/// An error of the storage layer.
public struct StorageError: Error, Hashable, Sendable, CustomStringConvertible {
    private enum Base: Hashable, Sendable { case backend, notFound, timedOut }
    private let base: Base
    public let message: String

    private init(_ base: Base, _ message: String) {
        self.base = base
        self.message = message
    }

    /// The database failed (I/O, locked, full …).
    public static func backend(_ message: String) -> Self { Self(.backend, message) }
    /// The object does not exist.
    public static func notFound(_ message: String) -> Self { Self(.notFound, message) }

    /// The request's time (``StorageDeadline``) ran out before its transaction committed; it was
    /// rolled back.
    public static func timedOut(seconds: Double) -> Self {
        Self(.timedOut, "the request did not finish within its \(String(format: "%g", seconds)) s timeout (request_timeout); its changes were rolled back")
    }

    public var isNotFound: Bool { base == .notFound }
    public var isTimedOut: Bool { base == .timedOut }
    public var description: String { message }
}

/// What the SQL backends' query builders share about Kinto's filters.
enum FilterSQL {
    /// The SQL `LIKE` pattern (escape `\\`) of a `like_` filter: `*` is any text; without a `*`
    /// the value may appear anywhere.
    static func likePattern(_ value: JSON) -> String {
        var pattern = ""
        let text = value.stringValue ?? value.serialized()
        for ch in text {
            switch ch {
            case "%", "_", "\\": pattern.append("\\"); pattern.append(ch)
            case "*": pattern.append("%")
            default: pattern.append(ch)
            }
        }
        return text.contains("*") ? pattern : "%" + pattern + "%"
    }

    /// `in_` (any of the equality `tests`) or `exclude_` (none of them); `no` is the dialect's false.
    static func anyOf(_ tests: [String], excluding: Bool, no: String) -> String {
        let any = tests.isEmpty ? no : "(" + tests.joined(separator: " OR ") + ")"
        return excluding ? "NOT COALESCE(\(any), \(no))" : any
    }

    /// `contains_` (every test) or `contains_any_` (one of them), on a field that is an array.
    static func arrayHolds(_ tests: [String], all: Bool, isArray: String, no: String) -> String {
        if tests.isEmpty { return all ? isArray : no }
        return "(\(isArray) AND (" + tests.joined(separator: all ? " AND " : " OR ") + "))"
    }

    /// Keyset pagination: rows strictly after `after` in `sort` order, NULL (a missing field)
    /// sorting before every value in both dialects.
    /// - Parameters:
    ///   - expression: a field's SQL expression.
    ///   - operand: binds a (non-null) value to compare with a field, or says it cannot be (nil).
    ///     It is called in the order the placeholders appear in the result.
    ///   - no: the dialect's false.
    static func pageAfter(_ after: PageAfter, sort: [Sort], expression: (String) -> String,
                          operand: (String, JSON) -> String?, no: String) -> String {
        func bound(_ field: String) -> String?? {
            let last = after.lastValues[field] ?? .null
            if case .null = last { return .some(nil) }
            return operand(field, last).map { .some($0) } ?? .none
        }
        var rules: [String] = []
        for i in stride(from: sort.count - 1, through: 0, by: -1) {
            var parts: [String] = []
            for j in 0..<i {
                let expr = expression(sort[j].field)
                switch bound(sort[j].field) {
                case .some(nil): parts.append("\(expr) IS NULL")
                case .some(let value?): parts.append("\(expr) = \(value)")
                case .none: parts.append(no)
                }
            }
            let expr = expression(sort[i].field)
            let value = bound(sort[i].field) ?? nil
            if sort[i].descending {
                parts.append(value.map { "(\(expr) < \($0) OR \(expr) IS NULL)" } ?? no)
            } else {
                parts.append(value.map { "\(expr) > \($0)" } ?? "\(expr) IS NOT NULL")
            }
            rules.append("(" + parts.joined(separator: " AND ") + ")")
        }
        return "(" + rules.joined(separator: " OR ") + ")"
    }

    /// Whether a `has_` filter asks for the field to be there (`has_f=false`, `0`, `no`, `off`: absent).
    static func wantsPresence(_ value: JSON) -> Bool {
        switch value {
        case .bool(let b): return b
        case .int(let i): return i != 0
        case .string(let s): return !["false", "0", "no", "off"].contains(s.lowercased())
        default: return true
        }
    }
}
