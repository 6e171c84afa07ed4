import FerryCore
import FerryStore
import Foundation
import HTTPTypes

/// Kinto's accounts plugin: `/v1/accounts` and `/v1/accounts/{user}`.
///
/// - Creating: anyone in `account_create_principals` (everyone by default), with
///   `PUT /accounts/{user}` or `POST /accounts` (`data.id`); someone signed in to an account
///   may create no other (unless an admin).
/// - Reading, changing the password (`PUT`/`PATCH` with `data.password`) and deleting: the
///   account itself (`account:{user}`) or an admin.
/// - The password is stored as a PBKDF2 hash (``PasswordHasher``) and never answered back.
extension KintoAPI {
    /// The operation of a request to `/accounts[/{id}]`; a new password is hashed here, before
    /// the write transaction, so the slow hash never holds the database.
    func accountOperation(_ request: APIRequest, id: String?) throws -> Operation {
        guard let auth = authenticator else { throw KintoError.missingResource }
        let identity = request.identity
        let isAdmin = !auth.settings.admins.isDisjoint(with: identity.principals)
        let signedInAs: String? = identity.userID.flatMap { $0.hasPrefix("account:") ? String($0.dropFirst(8)) : nil }
        let denied: KintoError = identity.userID == nil ? .unauthorized : .forbidden

        if request.isRead {
            return Operation(.snapshot, session: { session in
                if let id {
                    guard isAdmin || signedInAs == id else { throw denied }
                    guard let account = try session.get(Authenticator.accounts, id: id, includeDeleted: false) else {
                        throw KintoError.notFound(resource: "account", id: id)
                    }
                    return Self.accountResponse(account)
                }
                guard identity.userID != nil else { throw KintoError.unauthorized }
                var list: [JSON] = []
                try session.list(Authenticator.accounts, query: ListQuery()) { account in
                    if isAdmin || account.id == signedInAs { list.append(["id": .string(account.id), "last_modified": .int(account.lastModified)]) }
                    return true
                }
                return APIResponse(body: .json(["data": .array(list)]))
            })
        }
        try refuseWriteIfReadonly(request)

        if request.method == .delete {
            guard let id else { throw KintoError.methodNotAllowed(.delete, allowed: [.get, .head, .post]) }
            guard isAdmin || signedInAs == id else { throw denied }
            return Operation(.write, session: { session in
                guard try session.get(Authenticator.accounts, id: id, includeDeleted: false) != nil else {
                    throw KintoError.notFound(resource: "account", id: id)
                }
                let tombstone = try session.delete(Authenticator.accounts, id: id, requestedTimestamp: nil)
                return APIResponse(body: .json(["data": ["id": .string(id), "deleted": true, "last_modified": .int(tombstone.lastModified)]]))
            })
        }

        // POST, PUT, PATCH: the body names the password (and the id, for POST). Permission
        // before validation: who could change no account here (not an admin, not the account
        // itself, not allowed to create accounts) is refused before the body is read or a
        // password hashed.
        let mayCreate = !auth.settings.accountCreatePrincipals.isDisjoint(with: identity.principals)
        guard isAdmin || mayCreate || (id != nil && signedInAs == id) else { throw denied }
        let body = try request.jsonBody(emptyIsNil: false) ?? .null
        guard case .object(let data)? = body["data"] else {
            throw KintoError.invalidParameters(location: "body", name: "data", description: "data must be an object holding the password")
        }
        // An account's permissions are fixed (the account itself and the admins): a body that
        // sets some is refused rather than half-obeyed.
        if let permissions = body["permissions"], permissions != .null, permissions != .object([:]) {
            throw KintoError.invalidParameters(location: "body", name: "permissions",
                                               description: "an account's permissions cannot be set (the account itself and the admins may change it)")
        }
        let accountID: String
        if let id {
            if let bodyID = data["id"], bodyID != .string(id) {
                throw KintoError.invalidParameters(location: "body", name: "data.id", description: "data.id does not match the account in the URL")
            }
            accountID = id
        } else {
            guard request.method == .post, let given = data["id"]?.stringValue else {
                throw KintoError.invalidParameters(location: "body", name: "data.id", description: "data.id, the user name, is required")
            }
            guard Authenticator.isValidAccountID(given) else {
                throw KintoError.invalidParameters(location: "body", name: "data.id", description: "data.id must be letters, digits, - and _ (and + . @, as in an email address)")
            }
            accountID = given
        }
        for name in data.keys where name != "id" && name != "password" {
            throw KintoError.invalidParameters(location: "body", name: "data.\(name)", description: "an account holds only id and password")
        }
        let hash = try auth.hashNewPassword(data["password"])
        let method = request.method
        return Operation(.write, session: { session in
            let existing = try session.get(Authenticator.accounts, id: accountID, includeDeleted: false)
            if existing != nil {
                guard method != .post else {
                    throw KintoError(status: 409, errno: KintoError.Errno.constraintViolated, error: "Conflict",
                                     message: "The account \(accountID) already exists", details: ["id": .string(accountID)])
                }
                guard isAdmin || signedInAs == accountID else { throw denied }
            } else {
                // Only someone who could change the account learns that it does not exist.
                guard method != .patch else { throw isAdmin || signedInAs == accountID ? KintoError.notFound(resource: "account", id: accountID) : denied }
                guard mayCreate || isAdmin else { throw denied }
                if let signedInAs, signedInAs != accountID, !isAdmin {
                    throw KintoError.invalidParameters(location: "body", name: "data.id", description: "signed in as \(signedInAs), you cannot create another account")
                }
            }
            let stored = try session.put(Authenticator.accounts, id: accountID, data: ["password": .string(hash)], requestedTimestamp: nil)
            var response = Self.accountResponse(stored)
            response.status = existing == nil ? 201 : 200
            return response
        })
    }

    /// An account as answered: id, timestamp and who may change it, never the password hash.
    static func accountResponse(_ account: StoredObject) -> APIResponse {
        APIResponse(
            headers: [("ETag", "\"\(account.lastModified)\"")],
            body: .json([
                "data": ["id": .string(account.id), "last_modified": .int(account.lastModified)],
                "permissions": ["write": [.string("account:" + account.id)]],
            ]))
    }

    /// `GET /v1/permissions`: every object on which the caller holds a permission, with the
    /// permissions it holds there, inherited ones included (write on a bucket lists the
    /// bucket and each of its collections and groups with every permission), and, for someone
    /// signed in to an account, that account (`/accounts/ID`: read and write, as Kinto lists it).
    func permissionsList(_ request: APIRequest, session: any StorageSession) throws -> APIResponse {
        let principals = request.identity.principals
        var entries: [JSON] = []
        if let user = request.identity.userID, user.hasPrefix("account:"), authenticator != nil {
            let id = String(user.dropFirst(8))
            if try session.get(Authenticator.accounts, id: id, includeDeleted: false) != nil {
                entries.append(["uri": .string("/accounts/" + id), "resource_name": "account", "id": .string(id),
                                "account_id": .string(id), "permissions": ["read", "write"]])
            }
        }
        entries += try {
            var result: [String: Set<String>] = [:]
            let direct = try session.grants(of: principals)
            for (uri, names) in direct {
                guard let path = Self.objectPath(uri) else { continue }
                result[uri, default: []].formUnion(Self.expand(names, kind: path.kind))
                // Bucket-wide permissions reach the bucket's collections and groups.
                if path.kind == .bucket, names.contains("write") || names.contains("read") {
                    let inherited: Set<String> = names.contains("write") ? ["write", "read"] : ["read"]
                    for kind in [ResourceKind.collection, .group] {
                        try session.list(ResourceKey(parentID: uri, resourceName: kind.rawValue), query: ListQuery()) { child in
                            let childURI = uri + "/\(kind.plural)/" + child.id
                            result[childURI, default: []].formUnion(Self.expand(inherited, kind: kind))
                            return true
                        }
                    }
                }
            }
            return result.keys.sorted().compactMap { uri -> JSON? in
                guard let path = Self.objectPath(uri) else { return nil }
                var entry: [String: JSON] = [
                    "uri": .string(uri), "resource_name": .string(path.kind.rawValue), "id": .string(path.id!),
                    "bucket_id": .string(path.bucket), "permissions": .array(result[uri]!.sorted().map { .string($0) }),
                ]
                if let collection = path.collection { entry["collection_id"] = .string(collection) }
                if path.kind == .group { entry["group_id"] = .string(path.id!) }
                if path.kind == .collection { entry["collection_id"] = .string(path.id!) }
                return .object(entry)
            }
        }()
        return APIResponse(body: .json(["data": .array(entries)]))
    }

    /// `write` implies every other permission of the kind; `read` stands alone.
    static func expand(_ names: Set<String>, kind: ResourceKind) -> Set<String> {
        names.contains("write") ? Set(kind.permissionNames) : names.intersection(kind.permissionNames)
    }

    /// The object a permission URI names.
    static func objectPath(_ uri: String) -> ObjectPath? {
        let parts = uri.split(separator: "/").map(String.init)
        switch parts.count {
        case 2 where parts[0] == "buckets": return ObjectPath(kind: .bucket, bucket: parts[1], id: parts[1])
        case 4 where parts[0] == "buckets" && parts[2] == "collections": return ObjectPath(kind: .collection, bucket: parts[1], id: parts[3])
        case 4 where parts[0] == "buckets" && parts[2] == "groups": return ObjectPath(kind: .group, bucket: parts[1], id: parts[3])
        case 6 where parts[0] == "buckets" && parts[2] == "collections" && parts[4] == "records":
            return ObjectPath(kind: .record, bucket: parts[1], collection: parts[3], id: parts[5])
        default: return nil
        }
    }
}
