import FerryCore
import FerryStore
import Foundation
import HTTPTypes

/// Handles one request on a bucket, collection, group or record (object or plural endpoint)
/// inside the request's transaction.
struct ResourceHandler {
    let api: KintoAPI
    let request: APIRequest
    let path: ObjectPath
    let session: any StorageSession
    /// What earlier requests of the same batch read (nothing outside a batch).
    let memo: TransactionMemo

    var identity: Identity { request.identity }
    var key: ResourceKey { path.storageKey }

    init(api: KintoAPI, request: APIRequest, path: ObjectPath, session: any StorageSession, memo: TransactionMemo = TransactionMemo()) {
        self.api = api
        self.request = request
        self.path = path
        self.session = session
        self.memo = memo
    }

    // MARK: Authorization

    /// Whether the caller holds `permission` on the object `id` (or on the parent of the plural endpoint when `id` is nil).
    func isGranted(_ permission: String, id: String?) throws -> Bool {
        if path.kind == .bucket && permission == "bucket:create" {
            return !api.settings.bucketCreatePrincipals.isDisjoint(with: identity.principals)
        }
        guard id == nil else { return try session.anyGranted(path.grants(permission, id: id), principals: identity.principals) }
        // On the parent: the same for every object of a batch that goes there.
        let key = parentGrantKey(permission)
        if let known = memo.grant(key) { return known }
        let granted = try session.anyGranted(path.grants(permission, id: nil), principals: identity.principals)
        memo.remember(grant: key, granted)
        return granted
    }

    /// The memo's key of a grant on this path's parent.
    func parentGrantKey(_ permission: String) -> String { path.kind.rawValue + " " + path.parentURI + " " + permission }

    /// The error for a refused request: 401 when anonymous, 403 otherwise.
    var denied: KintoError { identity.userID == nil ? .unauthorized : .forbidden }

    func authorize(_ permission: String, id: String?) throws {
        guard try isGranted(permission, id: id) else { throw denied }
    }

    /// 404 when a parent (bucket, collection) does not exist.
    /// - Parameter found: the parents (``ObjectPath/requiredParents``) as read already (nil where absent), if they were.
    func ensureParents(found: [StoredObject?]? = nil) throws {
        if memo.parentsExist(path.parentURI) { return }
        let parents = path.requiredParents
        let firstMissing = try found.map { $0.firstIndex { $0 == nil } } ?? session.firstMissing(parents.map { ($0.0.storageKey, $0.1) })
        if let missing = firstMissing {
            throw KintoError.notFound(resource: parents[missing].0.kind.rawValue, id: parents[missing].1)
        }
        memo.rememberParentsExist(path.parentURI)
    }

    // MARK: Preconditions

    enum Precondition { case any, timestamp(Int64) }

    func preconditionHeader(_ name: String) throws -> Precondition? {
        try Self.precondition(name, request.header(name))
    }

    /// The precondition a header's `value` names (nil: none).
    static func precondition(_ name: String, _ value: String?) throws -> Precondition? {
        guard let raw = value?.trimmingHTTPWhitespace(), !raw.isEmpty else { return nil }
        if raw == "*" { return .any }
        let trimmed = raw.hasPrefix("W/") ? String(raw.dropFirst(2)) : raw
        guard let ts = Int64(trimmed.trimmingCharacters(in: CharacterSet(charactersIn: "\""))) else {
            throw KintoError.invalidParameters(location: "header", name: name, description: "Invalid value for \(name): \(raw) (expected \"<timestamp>\" or *)")
        }
        return .timestamp(ts)
    }

    /// Kinto's `_raise_412_if_modified`: `existing` is the object (nil when absent), `current` its timestamp.
    func check412(existing: StoredObject?, current: Int64) throws {
        try Self.check412(ifMatch: preconditionHeader("If-Match"), ifNoneMatch: preconditionHeader("If-None-Match"),
                          existing: existing, current: current)
    }

    static func check412(ifMatch: Precondition?, ifNoneMatch: Precondition?, existing: StoredObject?, current: Int64) throws {
        let exists = existing != nil
        var expected: Int64?
        switch (ifMatch, ifNoneMatch) {
        case (_, .any?) where exists: expected = -1
        case (_?, _) where !exists: expected = -1
        case (.timestamp(let ts)?, _): expected = ts
        default: return
        }
        if current != expected {
            let details: JSON? = try existing.map { .object(try $0.parsed()) }
            throw KintoError.modifiedMeanwhile(existing: details, timestamp: current)
        }
    }

    /// For reads: 304 when `If-None-Match` names the current timestamp.
    func check304(current: Int64) throws -> APIResponse? {
        if case .timestamp(let ts)? = try preconditionHeader("If-None-Match"), ts == current {
            return APIResponse(status: 304, headers: timestampHeaders(current))
        }
        return nil
    }

    func timestampHeaders(_ ts: Int64) -> [(String, String)] {
        [("ETag", "\"\(ts)\""), ("Last-Modified", Timestamp.httpDate(ts)), ("Cache-Control", "no-cache, no-store")]
    }

    // MARK: Bodies

    struct Body {
        var data: [String: JSON]?
        /// Permissions named in the body; a `nil` value (JSON null) removes the permission's principals.
        var permissions: [String: Set<String>?]?
        var raw: JSON
    }

    func parseBody() throws -> Body {
        guard let json = try request.jsonBody() else { return Body(data: nil, permissions: nil, raw: .object([:])) }
        guard case .object(let top) = json else {
            throw KintoError.invalidParameters(location: "body", description: "The body must be a JSON object, not \(json.typeName)")
        }
        var body = Body(raw: json)
        if let data = top["data"] {
            guard case .object(let members) = data else {
                throw KintoError.invalidParameters(location: "body", name: "data", description: "data must be an object, not \(data.typeName)")
            }
            body.data = members
        }
        if let permissions = top["permissions"] {
            body.permissions = try parsePermissions(permissions)
        }
        return body
    }

    func parsePermissions(_ json: JSON) throws -> [String: Set<String>?] {
        guard case .object(let members) = json else {
            throw KintoError.invalidParameters(location: "body", name: "permissions", description: "permissions must be an object, not \(json.typeName)")
        }
        var result: [String: Set<String>?] = [:]
        for (name, value) in members {
            guard path.kind.permissionNames.contains(name) else {
                throw KintoError.invalidParameters(location: "body", name: "permissions",
                                                   description: "'\(name)' is not a permission of a \(path.kind.rawValue) (expected one of \(path.kind.permissionNames.joined(separator: ", ")))")
            }
            if value == .null { result[name] = .some(nil); continue }
            guard case .array(let principals) = value else {
                throw KintoError.invalidParameters(location: "body", name: "permissions.\(name)", description: "permissions.\(name) must be a list of principals")
            }
            var set = Set<String>()
            for principal in principals {
                guard let s = principal.stringValue, !s.isEmpty, s.utf8.count <= 512 else {
                    throw KintoError.invalidParameters(location: "body", name: "permissions.\(name)", description: "permissions.\(name) must hold non-empty strings")
                }
                set.insert(s)
            }
            result[name] = .some(set)
        }
        return result
    }

    /// Checks a kind's own rules on its data: a group's `members`; a collection's `schema`
    /// and `unique_fields`; a record against its collection's schema and unique fields.
    /// - Parameters:
    ///   - prepared: the record's data checked before the transaction, when `data` is its body's.
    ///   - collection: a record's collection (nil inside: it does not exist), when already read.
    func validate(_ data: [String: JSON], id: String, prepared: PreparedRecord? = nil, collection known: StoredObject?? = nil) throws -> [String: JSON] {
        var data = data
        switch path.kind {
        case .group:
            let members = data["members"] ?? .array([])
            guard case .array(let list) = members, list.allSatisfy({ $0.stringValue != nil }) else {
                throw KintoError.invalidParameters(location: "body", name: "data.members", description: "data.members must be a list of principals")
            }
            data["members"] = members
        case .collection:
            _ = try CollectionRules(data)
        case .record:
            let collectionPath = ObjectPath(kind: .collection, bucket: path.bucket, id: path.collection!)
            guard let collection = try known ?? memo.collection(path.collectionURI!, {
                try session.get(collectionPath.storageKey, id: path.collection!, includeDeleted: false)
            }) else { break }
            let rules = try api.rules(of: collection, uri: path.collectionURI!)
            try rules.check(record: data, id: id, key: key, session: session, schemaChecked: prepared?.schemaVerdict(for: collection))
        case .bucket:
            break
        }
        return data
    }

    // MARK: Responses

    func permissionsJSON(_ permissions: Permissions) -> JSON {
        var members: [String: JSON] = [:]
        for (name, principals) in permissions where !principals.isEmpty {
            members[name] = .array(principals.sorted().map { .string($0) })
        }
        return .object(members)
    }

    /// The answer for one object. Its permissions are shown only to who may write it (as
    /// Kinto does): a reader sees `"permissions": {}`, not the names of the owners.
    /// - Parameter writeGranted: whether the caller may write the object, when already known.
    func objectResponse(status: Int = 200, _ object: StoredObject, permissions: Permissions?, fields: [String]? = nil,
                        data: JSON? = nil, writeGranted: Bool? = nil) throws -> APIResponse {
        var permissions = permissions
        if permissions != nil, try !(writeGranted ?? isGranted("write", id: object.id)) { permissions = [:] }
        var out: [UInt8] = Array("{\"data\":".utf8)
        if let data {
            data.write(to: &out)
        } else if let fields {
            Self.project(.object(try object.parsed()), fields: fields).write(to: &out)
        } else {
            out.append(contentsOf: object.json.utf8)
        }
        if let permissions {
            out.append(contentsOf: ",\"permissions\":".utf8)
            permissionsJSON(permissions).write(to: &out)
        }
        out.append(UInt8(ascii: "}"))
        return APIResponse(status: status, headers: timestampHeaders(object.lastModified), body: .raw(out))
    }

    /// Kinto's `dict_subset`: only the named (possibly dotted) fields.
    static func project(_ object: JSON, fields: [String]) -> JSON {
        var result = JSON.object([:])
        for field in fields {
            guard let value = object.value(atPath: field) else { continue }
            let steps = field.split(separator: ".").map(String.init)
            result = setting(result, steps[...], value)
        }
        return result
    }

    static func setting(_ target: JSON, _ steps: ArraySlice<String>, _ value: JSON) -> JSON {
        guard let first = steps.first else { return value }
        var members = target.objectValue ?? [:]
        members[first] = setting(members[first] ?? .object([:]), steps.dropFirst(), value)
        return .object(members)
    }

    // MARK: Object endpoints

    /// The object of this path, once the caller is allowed `permission` on it (else 401/403/404).
    /// An existing object proves its parents exist (deleting a parent purges its children in the
    /// same transaction), so they are only looked up to say which one is missing.
    func existingObject(permission: String) throws -> StoredObject {
        let id = path.id!
        try authorize(permission, id: id)
        guard let object = try session.get(key, id: id, includeDeleted: false) else {
            try ensureParents()
            throw KintoError.notFound(resource: path.kind.rawValue, id: id)
        }
        return object
    }

    /// One content read (``StorageSession/readObject(_:id:uri:checks:principals:)``, one statement
    /// where the backend can), so it runs without a transaction (``ReadShape/oneStatement``): a 404
    /// only checks the parents, a collection reads its tombstone horizon after it.
    func get() throws -> APIResponse {
        let id = path.id!
        let read = try session.readObject(key, id: id, uri: path.uri,
                                          checks: ["read": path.grants("read", id: id), "write": path.grants("write", id: id)],
                                          principals: identity.principals)
        guard read.passed.contains("read") else { throw denied }
        guard let object = read.object else {
            try ensureParents()
            throw KintoError.notFound(resource: path.kind.rawValue, id: id)
        }
        if let notModified = try check304(current: object.lastModified) { return notModified }
        try check412(existing: object, current: object.lastModified)
        let fields = try ListParameters.parse(request.query.filter { $0.0 == "_fields" }, paginateBy: nil, maxFetchSize: 1).fields
        var response = try objectResponse(object, permissions: read.permissions, fields: fields, writeGranted: read.passed.contains("write"))
        if path.kind == .collection {
            let records = ResourceKey(parentID: path.uri, resourceName: ResourceKind.record.rawValue)
            response.headers.append((KintoAPI.tombstoneHorizonHeader, String(try session.tombstoneHorizon(records))))
        }
        if request.method == .head { response.body = .empty }
        return response
    }

    mutating func put() throws -> APIResponse {
        let id = path.id!
        // The object, its permissions and the write grant in one statement where the backend
        // can; in a batch, the grant on the parent is asked for beside it once, then remembered.
        var checks = ["write": path.grants("write", id: id)]
        let parentWrite = parentGrantKey("write")
        let knownParentWrite = memo.grant(parentWrite)
        if memo.isShared && knownParentWrite == nil { checks["parent"] = path.grants("write", id: nil) }
        var read: ObjectRead
        // Where the backend folds reads (PostgreSQL), the same statement answers what the write
        // may need besides: the create grant, whether the parents exist, the collection's rules.
        var folded: (parents: [StoredObject?], createChecked: Bool)?
        if knownParentWrite == true {
            // In a batch of record writes, whether the record exists was read for all of them at once.
            let object = try memo.object(key, id: id) { try session.get(key, id: id, includeDeleted: false) }
            read = ObjectRead(object: object, permissions: object == nil ? [:] : try session.permissions(of: path.uri(id: id)), passed: ["write"])
        } else {
            var wide = checks
            let createChecked = path.kind != .bucket && memo.grant(parentGrantKey(path.createPermission)) == nil
            if createChecked { wide["create"] = path.grants(path.createPermission, id: nil) }
            let parents = path.requiredParents.map { (key: $0.0.storageKey, id: $0.1) }
            if let found = try session.readObject(key, id: id, uri: path.uri(id: id), checks: wide, principals: identity.principals, beside: parents) {
                read = found.read
                folded = (found.beside, createChecked)
            } else {
                read = try session.readObject(key, id: id, uri: path.uri(id: id), checks: checks, principals: identity.principals)
            }
            if checks["parent"] != nil { memo.remember(grant: parentWrite, read.passed.contains("parent")) }
        }
        let existing = read.object
        if existing != nil {
            guard read.passed.contains("write") else { throw denied }
        } else {
            if let folded, folded.createChecked {
                memo.remember(grant: parentGrantKey(path.createPermission), read.passed.contains("create"))
                guard read.passed.contains("create") else { throw denied }
            } else {
                try authorize(path.createPermission, id: nil)
            }
            try ensureParents(found: folded?.parents)
        }
        try check412(existing: existing, current: existing?.lastModified ?? 0)
        let body = try parseBody()
        // A body without data keeps the object's fields, but not its `last_modified`: that is the
        // stored one, not a timestamp this request asks for (past 2^53-1 it would be refused).
        let data = try body.data ?? existing?.parsed().removingValue("last_modified") ?? [:]
        if let bodyID = data["id"], bodyID != .string(id) {
            throw KintoError.invalidParameters(location: "body", name: "id", description: "Object id does not match existing object")
        }
        return try save(id: id, data: data.removingValue("id"), existing: existing,
                        permissions: body.permissions, replaceAllPermissions: true,
                        known: existing == nil ? nil : (read.permissions, read.passed.contains("write")),
                        prepared: body.data == nil ? nil : request.preparedRecord,
                        collection: path.kind == .record ? folded.map { $0.parents.last ?? nil } : nil)
    }

    /// Writes an object and its permissions; the creator always keeps `write`.
    /// - Parameters:
    ///   - known: the existing object's permissions and whether the caller may write it, when already read.
    ///   - prepared: `data` checked and serialized before the transaction (it is the body's).
    ///   - collection: a record's collection (nil inside: it does not exist), when already read.
    func save(id: String, data: [String: JSON], existing: StoredObject?, permissions: [String: Set<String>?]?,
              replaceAllPermissions: Bool, known: (permissions: Permissions, writeGranted: Bool)? = nil,
              prepared: PreparedRecord? = nil, collection: StoredObject?? = nil) throws -> APIResponse {
        var data = try validate(data, id: id, prepared: prepared, collection: collection)
        var requested: Int64?
        switch data.removeValue(forKey: "last_modified") {
        case nil, .null?: break
        case let value?:
            // A timestamp the client asks for (kept only when newer); anything else is a mistake
            // to answer, not to drop (Kinto refuses it too).
            guard let lm = value.intValue.flatMap(Timestamp.requested) else {
                throw KintoError.invalidParameters(location: "body", name: "data.last_modified",
                                                   description: value.intValue == nil ? "data.last_modified must be an integer timestamp, not \(value.typeName)"
                                                       : "data.last_modified must be at most \(Timestamp.maxRequested)")
            }
            if lm > (existing?.lastModified ?? 0) { requested = lm }
        }
        let uri = path.uri(id: id)
        // Read first: on PostgreSQL, put locks the kind's timestamp row until commit (writers of
        // the collection wait for it), so as little as possible happens after it.
        var perms = existing == nil ? Permissions() : try known?.permissions ?? session.permissions(of: uri)
        // A write that leaves the permissions alone leaves the caller's write grant as it was.
        let writeGranted: Bool? = existing != nil && permissions == nil ? try known?.writeGranted ?? isGranted("write", id: id) : nil
        if let permissions {
            if replaceAllPermissions {
                for name in path.kind.permissionNames { perms[name] = [] }
            }
            for (name, principals) in permissions { perms[name] = principals ?? [] }
        }
        if let user = identity.userID, existing == nil || permissions != nil {
            perms["write", default: []].insert(user)
        }
        let text = prepared?.text ?? RecordText(data)
        // A new object has no permissions to replace (deleting an object removes its own): they
        // go in with it (one statement where the backend can).
        let stored = try existing == nil ? session.put(key, id: id, text: text, requestedTimestamp: requested, adding: perms, on: uri)
            : session.put(key, id: id, text: text, requestedTimestamp: requested)
        memo.wrote(key, id: id, stored)
        api.metrics?.recordWritten()
        if existing != nil && permissions != nil {
            var toStore = perms
            for name in path.kind.permissionNames where toStore[name] == nil { toStore[name] = [] }
            try session.setPermissions(of: uri, toStore)
        }
        if existing == nil { try Self.seedChildTimestamps(of: path, uri: uri, at: stored.lastModified, in: session) }
        // Who just created an object, or set its permissions, is among its writers.
        let answerGranted = writeGranted ?? (identity.userID.flatMap { perms["write"]?.contains($0) } == true ? true : nil)
        return try objectResponse(status: existing == nil ? 201 : 200, stored, permissions: perms, writeGranted: answerGranted)
    }

    /// Seeds a new object's children's timestamps, so an empty plural endpoint has a stable ETag.
    static func seedChildTimestamps(of path: ObjectPath, uri: String, at timestamp: Int64, in session: any StorageSession) throws {
        switch path.kind {
        case .bucket:
            try session.raiseTimestamp(ResourceKey(parentID: uri, resourceName: "collection"), to: timestamp)
            try session.raiseTimestamp(ResourceKey(parentID: uri, resourceName: "group"), to: timestamp)
        case .collection:
            try session.raiseTimestamp(ResourceKey(parentID: uri, resourceName: "record"), to: timestamp)
        default: break
        }
    }

    mutating func patch() throws -> APIResponse {
        let id = path.id!
        let existing = try existingObject(permission: "write")
        try check412(existing: existing, current: existing.lastModified)
        let contentType = (request.header("Content-Type") ?? "application/json").split(separator: ";")[0]
            .trimmingCharacters(in: .whitespaces).lowercased()
        let old = try existing.parsed()
        var updated: [String: JSON]
        var permissions: [String: Set<String>?]?
        var requestedChanges: [String: JSON]
        let uri = path.uri(id: id)
        switch contentType {
        case "application/json-patch+json":
            guard let ops = try request.jsonBody(), case .array = ops else {
                throw KintoError.invalidParameters(location: "body", description: "A JSON Patch body must be an array of operations")
            }
            let current = try session.permissions(of: uri)
            var permsDoc: [String: JSON] = [:]
            for name in path.kind.permissionNames {
                let principals = current[name] ?? []
                permsDoc[name] = .object(Dictionary(uniqueKeysWithValues: principals.map { ($0, JSON.string($0)) }))
            }
            // Kinto lets `{"op": "add", "path": "/permissions/read/<principal>"}` omit the value.
            let fixedOps = JSON.array(ops.arrayValue!.map { op in
                guard let p = op["path"]?.stringValue, p.hasPrefix("/permissions/"), p.split(separator: "/").count == 3 else { return op }
                var op = op
                if op["value"] == nil { op["value"] = .string(String(p.split(separator: "/").last!)) }
                return op
            })
            let document: JSON = ["data": .object(old), "permissions": .object(permsDoc)]
            let result: JSON
            do {
                result = try document.applying(patch: fixedOps)
            } catch {
                throw KintoError.invalidParameters(location: "body", description: "JSON Patch operation failed: \(error)")
            }
            guard case .object(let newData)? = result["data"] else {
                throw KintoError.invalidParameters(location: "body", description: "JSON Patch operation failed: data must stay an object")
            }
            updated = newData
            requestedChanges = newData
            var newPerms: [String: Set<String>?] = [:]
            for (name, value) in result["permissions"]?.objectValue ?? [:] {
                guard path.kind.permissionNames.contains(name), case .object(let principals) = value else {
                    throw KintoError.invalidParameters(location: "body", name: "permissions", description: "JSON Patch produced invalid permissions")
                }
                newPerms[name] = .some(Set(principals.keys))
            }
            permissions = newPerms
        case "application/merge-patch+json":
            let body = try parseBody()
            guard body.data != nil || body.permissions != nil else {
                throw KintoError.invalidParameters(location: "body", name: "data", description: "Provide at least one of data or permissions")
            }
            requestedChanges = body.data ?? [:]
            updated = JSON.object(old).merging(patch: .object(requestedChanges)).objectValue ?? [:]
            if let patchPerms = body.permissions {
                var merged: [String: Set<String>?] = [:]
                for (name, value) in patchPerms { merged[name] = value }
                permissions = merged
            }
        default:
            let body = try parseBody()
            guard body.data != nil || body.permissions != nil else {
                throw KintoError.invalidParameters(location: "body", name: "data", description: "Provide at least one of data or permissions")
            }
            requestedChanges = body.data ?? [:]
            updated = old
            for (k, v) in requestedChanges { updated[k] = v }
            permissions = body.permissions
        }
        if let newID = updated["id"], newID != .string(id) {
            throw KintoError.invalidParameters(location: "body", name: "id", description: "Object id does not match existing object")
        }
        updated["id"] = nil
        if updated["last_modified"] == old["last_modified"] { updated["last_modified"] = nil }
        var response = try save(id: id, data: updated, existing: existing, permissions: permissions, replaceAllPermissions: false)
        let behavior = (request.header("Response-Behavior") ?? "full").lowercased()
        if behavior == "light" || behavior == "diff" {
            let newObject = try session.get(key, id: id, includeDeleted: false)!.parsed()
            var data: [String: JSON] = [:]
            for (k, v) in requestedChanges where old[k] != newObject[k] {
                if behavior == "light" || v != newObject[k] { data[k] = newObject[k] ?? .null }
            }
            let body = response.jsonBody?.objectValue ?? [:]
            var out = body
            out["data"] = .object(data)
            response.body = .json(.object(out))
        }
        return response
    }

    func delete() throws -> APIResponse {
        let id = path.id!
        let existing = try existingObject(permission: "write")
        try check412(existing: existing, current: existing.lastModified)
        var requested: Int64?
        if let raw = request.query.last(where: { $0.0 == "last_modified" })?.1 {
            guard let lm = Int64(raw.trimmingCharacters(in: CharacterSet(charactersIn: "\""))).flatMap(Timestamp.requested) else {
                throw KintoError.invalidParameters(location: "querystring", name: "last_modified",
                                                   description: "Invalid value for last_modified (an integer timestamp, at most \(Timestamp.maxRequested))")
            }
            if lm > existing.lastModified { requested = lm }
        }
        let tombstone = try deleteObject(id: id, requested: requested)
        return try objectResponse(tombstone, permissions: nil)
    }

    /// Tombstones an object, purges its children and its permissions.
    func deleteObject(id: String, requested: Int64?) throws -> StoredObject {
        let tombstone = try session.delete(key, id: id, requestedTimestamp: requested)
        memo.wrote(key, id: id, nil)
        let uri = path.uri(id: id)
        try session.removePermissions(of: uri)
        if path.kind == .bucket || path.kind == .collection {
            try session.purgeChildren(of: uri)
        }
        api.metrics?.recordWritten()
        return tombstone
    }

    // MARK: Plural endpoints

    /// The ids the caller may see when it lacks `permission` on the parent (nil = all).
    /// - Parameter known: whether the caller holds `permission` on the parent, when already read.
    func visibleIDs(_ permission: String, granted known: Bool? = nil) throws -> [String]? {
        if try known ?? isGranted(permission, id: nil) {
            return nil
        }
        let names = permission == "read" ? ["read", "write"] : ["write"]
        let ids = try session.childIDs(under: path.parentURI, childPath: path.kind.plural, permissions: names, principals: identity.principals)
        if ids.isEmpty && path.kind != .bucket { throw denied }
        return ids
    }

    /// ``visibleIDs(_:)``, then ``ensureParents(found:)``: the grant and the parents in one
    /// statement where the backend folds them (``StorageSession/checkAccess(_:principals:objects:)``).
    func visibleIDsAndParents(_ permission: String) throws -> [String]? {
        let grantKey = parentGrantKey(permission)
        guard path.kind != .bucket, memo.grant(grantKey) == nil, !memo.parentsExist(path.parentURI),
              let access = try session.checkAccess([permission: path.grants(permission, id: nil)], principals: identity.principals,
                                                   objects: path.requiredParents.map { ($0.0.storageKey, $0.1) })
        else {
            let ids = try visibleIDs(permission)
            try ensureParents()
            return ids
        }
        memo.remember(grant: grantKey, access.passed.contains(permission))
        let ids = try visibleIDs(permission, granted: access.passed.contains(permission))
        if let missing = access.firstMissing {
            let parents = path.requiredParents
            throw KintoError.notFound(resource: parents[missing].0.kind.rawValue, id: parents[missing].1)
        }
        memo.rememberParentsExist(path.parentURI)
        return ids
    }

    /// Whether a list request is a plain GET: no HEAD, no If-Match or If-None-Match, so the
    /// collection's timestamp is needed only beside the page. It then takes checks of access
    /// (grants, parents), one content read (timestamp and page) and the tombstone horizon after
    /// it, and no transaction: ``ReadShape/oneStatement``.
    static func isPlainList(_ request: APIRequest) -> Bool {
        request.method == .get && request.header("If-Match") == nil && request.header("If-None-Match") == nil
    }

    func pluralGet() throws -> APIResponse {
        let ids = try visibleIDsAndParents("read")
        if Self.isPlainList(request) {
            let params = try ListParameters.parse(request.query, paginateBy: api.settings.paginateBy, maxFetchSize: api.settings.maxFetchSize)
            return try listResponse(params: params, ids: ids, current: nil)
        }
        let current = try session.timestamp(key)
        if let notModified = try check304(current: current) { return notModified }
        try check412(existing: StoredObject(id: "", lastModified: current, deleted: false, json: "{}"), current: current)
        let params = try ListParameters.parse(request.query, paginateBy: api.settings.paginateBy, maxFetchSize: api.settings.maxFetchSize)
        if request.method == .head {
            var headers = timestampHeaders(current)
            let count = try session.count(key, filters: params.filters, includeDeleted: params.includeDeleted, ids: ids)
            headers.append(("Total-Objects", String(count)))
            headers.append(("Total-Records", String(count)))
            if path.kind == .record {
                headers.append((KintoAPI.tombstoneHorizonHeader, String(try checkHorizon(since: params.feedStart, what: "_since"))))
            }
            return APIResponse(status: 200, headers: headers, body: .empty)
        }
        return try listResponse(params: params, ids: ids, current: current)
    }

    /// A page of the list, with the collection's timestamp read beside it when `current` is nil.
    func listResponse(params: ListParameters, ids: [String]?, current: Int64?) throws -> APIResponse {
        var out: [UInt8] = Array("{\"data\":[".utf8)
        var count = 0
        var last: StoredObject?
        var hasMore = false
        let query = ListQuery(filters: params.filters, sort: params.sort, after: params.after, limit: params.limit + 1,
                              includeDeleted: params.includeDeleted, ids: ids)
        let each = { (object: StoredObject) throws -> Bool in
            if count == params.limit {
                hasMore = true
                return false
            }
            if count > 0 {
                out.append(UInt8(ascii: ","))
            } else {
                // Room for the page at the first record's size: no copy as it grows.
                out.reserveCapacity(min(out.count + (object.json.utf8.count + 1) * params.limit + 64, 1 << 22))
            }
            if let fields = params.fields {
                Self.project(.object(try object.parsed()), fields: fields).write(to: &out)
            } else {
                out.append(contentsOf: object.json.utf8)
            }
            count += 1
            last = object
            return true
        }
        let timestamp: Int64
        var horizon: Int64?
        if let current {
            try session.list(key, query: query, each)
            timestamp = current
        } else if path.kind == .record, let both = try session.timestampHorizonAndList(key, query: query, each) {
            (timestamp, horizon) = both
        } else {
            timestamp = try session.timestampAndList(key, query: query, each)
        }
        var headers = timestampHeaders(timestamp)
        if path.kind == .record {
            headers.append((KintoAPI.tombstoneHorizonHeader, String(try checkHorizon(since: params.feedStart, what: "_since", horizon: horizon))))
        }
        out.append(contentsOf: "]}".utf8)
        if hasMore, let last {
            headers.append(("Next-Page", try nextPageURL(params: params, last: last, offset: params.offset + count)))
        }
        return APIResponse(status: 200, headers: headers, body: .raw(out))
    }

    func nextPageURL(params: ListParameters, last: StoredObject, offset: Int) throws -> String {
        // The stored text is parsed only when a sort field is in it (the change feed sorts on
        // last_modified alone, and parsing the last record was most of building its link).
        var object: JSON?
        var values: [String: JSON] = [:]
        for sort in params.sort {
            switch sort.field {
            case "id": values["id"] = .string(last.id)
            case "last_modified": values["last_modified"] = .int(last.lastModified)
            default:
                if object == nil { object = .object(try last.parsed()) }
                if let v = object?.value(atPath: sort.field) { values[sort.field] = v }
            }
        }
        let token = PageToken.encode(lastValues: values, offset: offset)
        var query = request.query.filter { $0.0 != "_token" && $0.0 != "_limit" }
        query.append(("_limit", String(params.limit)))
        query.append(("_token", token))
        let path = request.path.hasPrefix("/v1/") ? String(request.path.dropFirst(3)) : request.path
        return request.baseURL + path + "?" + query.map { APIRequest.percentEncode($0.0) + "=" + APIRequest.percentEncode($0.1) }.joined(separator: "&")
    }

    mutating func pluralPost() throws -> APIResponse {
        // Permission before validation: who may not create here learns nothing from the body.
        try authorize(path.createPermission, id: nil)
        let body = try parseBody()
        var data = body.data ?? [:]
        let id: String
        if let given = data["id"] {
            guard let s = given.stringValue, ObjectID.isValid(s) else {
                throw KintoError.invalidParameters(location: "body", name: "data.id", description: "Invalid object id")
            }
            id = s
        } else {
            id = ObjectID.generate()
        }
        data["id"] = nil
        try ensureParents()
        let existing = try session.get(key, id: id, includeDeleted: false)
        try check412(existing: existing, current: existing?.lastModified ?? session.timestamp(key))
        if let existing {
            return try objectResponse(status: 200, existing, permissions: try session.permissions(of: path.uri(id: id)))
        }
        return try save(id: id, data: data, existing: nil, permissions: body.permissions, replaceAllPermissions: true)
    }

    func pluralDelete() throws -> APIResponse {
        let ids = try visibleIDs("write")
        try ensureParents()
        let current = try session.timestamp(key)
        try check412(existing: StoredObject(id: "", lastModified: current, deleted: false, json: "{}"), current: current)
        var params = try ListParameters.parse(request.query, paginateBy: api.settings.paginateBy, maxFetchSize: api.settings.maxFetchSize)
        params.includeDeleted = false
        var victims: [StoredObject] = []
        var hasMore = false
        let query = ListQuery(filters: params.filters, sort: params.sort, after: params.after, limit: params.limit + 1, includeDeleted: false, ids: ids)
        try session.list(key, query: query) { object in
            if victims.count == params.limit {
                hasMore = true
                return false
            }
            victims.append(object)
            return true
        }
        var out: [UInt8] = Array("{\"data\":[".utf8)
        var headers: [(String, String)] = []
        for (i, victim) in victims.enumerated() {
            let tombstone = try deleteObject(id: victim.id, requested: nil)
            if i > 0 { out.append(UInt8(ascii: ",")) }
            out.append(contentsOf: tombstone.json.utf8)
        }
        out.append(contentsOf: "]}".utf8)
        headers = timestampHeaders(try session.timestamp(key))
        if hasMore, let last = victims.last {
            headers.append(("Next-Page", try nextPageURL(params: params, last: last, offset: params.offset + victims.count)))
        }
        return APIResponse(status: 200, headers: headers, body: .raw(out))
    }
}

extension Dictionary {
    func removingValue(_ key: Key) -> Self {
        var copy = self
        copy.removeValue(forKey: key)
        return copy
    }
}
