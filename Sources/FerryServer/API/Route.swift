import FerryCore
import HTTPTypes

/// Where a path below `/v1` leads: parsed once per request (and once per sub-request of a batch).
enum Route: Sendable {
    case hello, heartbeat, lbheartbeat, version, batch, permissions
    /// `/__api__`: the OpenAPI 3.1 document of this server (``APIDocument``).
    case api
    /// `/__flush__`: empties the server (where enabled).
    case flush
    case accounts(String?)
    case webhooks(bucket: String, collection: String, id: String?, log: Bool)
    case plural(ObjectPath)
    case object(ObjectPath)
    /// `…/records/{id}/attachment` (kinto-attachment): the path is the record's.
    case attachment(ObjectPath)
    /// `…/collections/{cid}/reconcile`: range-based set reconciliation; the path is the records'.
    case reconcile(ObjectPath)

    /// Finds the route of a path below `/v1` (a leading `/v1` is dropped too).
    init(_ path: String) throws(KintoError) {
        var segments = path.split(separator: "/", omittingEmptySubsequences: true).map { APIRequest.percentDecode($0) }
        if segments.first == "v1" { segments.removeFirst() }
        func id(_ s: String) throws(KintoError) -> String {
            guard ObjectID.isValid(s) else {
                throw .invalidParameters(location: "path", name: "id", description: "Invalid object id")
            }
            return s
        }
        switch segments.count {
        case 0: self = .hello
        case 1:
            switch segments[0] {
            case "__heartbeat__": self = .heartbeat
            case "__lbheartbeat__": self = .lbheartbeat
            case "__version__": self = .version
            case "__flush__": self = .flush
            case "__api__": self = .api
            case "batch": self = .batch
            case "permissions": self = .permissions
            case "accounts": self = .accounts(nil)
            case "buckets": self = .plural(ObjectPath(kind: .bucket, bucket: ""))
            default: throw .missingResource
            }
        default:
            if segments[0] == "accounts", segments.count == 2 {
                guard Authenticator.isValidAccountID(segments[1]) else {
                    throw .invalidParameters(location: "path", name: "id", description: "Invalid account id (letters, digits and + . @ _ -, starting with a letter or digit)")
                }
                self = .accounts(segments[1])
                return
            }
            guard segments[0] == "buckets" else { throw .missingResource }
            let bucket = try id(segments[1])
            if segments.count == 2 {
                self = .object(ObjectPath(kind: .bucket, bucket: bucket, id: bucket))
                return
            }
            let kind: ResourceKind
            switch segments[2] {
            case "collections": kind = .collection
            case "groups": kind = .group
            default: throw .missingResource
            }
            if segments.count == 3 {
                self = .plural(ObjectPath(kind: kind, bucket: bucket))
                return
            }
            let child = try id(segments[3])
            if segments.count == 4 {
                self = .object(ObjectPath(kind: kind, bucket: bucket, id: child))
                return
            }
            if kind == .collection, segments[4] == "webhooks" {
                if segments.count == 5 {
                    self = .webhooks(bucket: bucket, collection: child, id: nil, log: false)
                    return
                }
                let hook = try id(segments[5])
                if segments.count == 6 {
                    self = .webhooks(bucket: bucket, collection: child, id: hook, log: false)
                    return
                }
                guard segments.count == 7, segments[6] == "deliveries" else { throw .missingResource }
                self = .webhooks(bucket: bucket, collection: child, id: hook, log: true)
                return
            }
            if kind == .collection, segments[4] == "reconcile", segments.count == 5 {
                self = .reconcile(ObjectPath(kind: .record, bucket: bucket, collection: child))
                return
            }
            guard kind == .collection, segments[4] == "records" else { throw .missingResource }
            if segments.count == 5 {
                self = .plural(ObjectPath(kind: .record, bucket: bucket, collection: child))
                return
            }
            let record = ObjectPath(kind: .record, bucket: bucket, collection: child, id: try id(segments[5]))
            if segments.count == 7, segments[6] == "attachment" {
                self = .attachment(record)
                return
            }
            guard segments.count == 6 else { throw .missingResource }
            self = .object(record)
        }
    }

    var allowedMethods: [HTTPRequest.Method] {
        switch self {
        case .hello, .heartbeat, .lbheartbeat, .version, .api: [.get, .head]
        case .batch, .flush: [.post]
        case .permissions: [.get, .head]
        case .accounts(nil): [.get, .head, .post]
        case .accounts: [.get, .head, .put, .patch, .delete]
        case .webhooks(_, _, let id, let log): id == nil || log ? [.get, .head] : [.get, .head, .put, .delete]
        case .plural: [.get, .head, .post, .delete]
        case .object: [.get, .head, .put, .patch, .delete]
        case .attachment: [.post, .delete]
        case .reconcile: [.post]
        }
    }

    /// A name for logs and metrics, without ids.
    var name: String {
        switch self {
        case .hello: "/"
        case .heartbeat: "/__heartbeat__"
        case .lbheartbeat: "/__lbheartbeat__"
        case .version: "/__version__"
        case .api: "/__api__"
        case .batch: "/batch"
        case .flush: "/__flush__"
        case .permissions: "/permissions"
        case .accounts(nil): "accounts"
        case .accounts: "account"
        case .webhooks(_, _, let id, let log): log ? "webhook-deliveries" : id == nil ? "webhooks" : "webhook"
        case .plural(let p): p.kind.plural
        case .object(let p): p.kind.rawValue
        case .attachment: "attachment"
        case .reconcile: "reconcile"
        }
    }

    /// The route as an OpenAPI path template below `/v1` (`/buckets/{bid}/collections/{cid}`):
    /// what ``APIDocument`` lists, one entry per template.
    var template: String {
        switch self {
        case .hello: "/"
        case .heartbeat, .lbheartbeat, .version, .api, .batch, .flush, .permissions: name
        case .accounts(nil): "/accounts"
        case .accounts: "/accounts/{uid}"
        case .webhooks(_, _, let id, let log): "/buckets/{bid}/collections/{cid}/webhooks" + (id == nil ? "" : "/{hid}") + (log ? "/deliveries" : "")
        case .plural(let p): Self.template(p.kind, object: false)
        case .object(let p): Self.template(p.kind, object: true)
        case .attachment: Self.template(.record, object: true) + "/attachment"
        case .reconcile: Self.template(.collection, object: true) + "/reconcile"
        }
    }

    private static func template(_ kind: ResourceKind, object: Bool) -> String {
        switch (kind, object) {
        case (.bucket, false): "/buckets"
        case (.bucket, true): "/buckets/{bid}"
        case (.collection, false): "/buckets/{bid}/collections"
        case (.collection, true): "/buckets/{bid}/collections/{cid}"
        case (.group, false): "/buckets/{bid}/groups"
        case (.group, true): "/buckets/{bid}/groups/{gid}"
        case (.record, false): "/buckets/{bid}/collections/{cid}/records"
        case (.record, true): "/buckets/{bid}/collections/{cid}/records/{rid}"
        }
    }

    /// One route of every template, in the order the API document lists them.
    static let all: [Route] = {
        let b = "b", c = "c"
        var routes: [Route] = [.hello, .heartbeat, .lbheartbeat, .version, .api, .batch, .flush, .permissions,
                               .accounts(nil), .accounts("a")]
        for kind in [ResourceKind.bucket, .collection, .group, .record] {
            let parents = ObjectPath(kind: kind, bucket: kind == .bucket ? "" : b, collection: kind == .record ? c : nil)
            routes.append(.plural(parents))
            routes.append(.object(ObjectPath(kind: kind, bucket: kind == .bucket ? "x" : b, collection: kind == .record ? c : nil, id: "x")))
        }
        routes.append(.attachment(ObjectPath(kind: .record, bucket: b, collection: c, id: "r")))
        routes.append(.reconcile(ObjectPath(kind: .record, bucket: b, collection: c)))
        routes += [.webhooks(bucket: b, collection: c, id: nil, log: false), .webhooks(bucket: b, collection: c, id: "h", log: false),
                   .webhooks(bucket: b, collection: c, id: "h", log: true)]
        return routes
    }()

    /// What a write here may change, beyond its own object.
    var effects: WriteEffects {
        var effects = WriteEffects()
        switch self {
        case .hello, .heartbeat, .lbheartbeat, .version, .permissions, .api, .reconcile: break
        case .batch: break  // a batch announces what its sub-requests change (KintoAPI.batch)
        case .flush:
            effects.allCollections = true
            effects.accountsOrGroups = true
            effects.webhooks = true
        case .accounts: effects.accountsOrGroups = true
        case .webhooks(let bucket, let collection, _, _):
            effects.collections.insert("/buckets/\(bucket)/collections/\(collection)")
            effects.webhooks = true
        case .attachment(let path):
            effects.collections.insert(path.collectionURI!)
        case .plural(let path), .object(let path):
            switch path.kind {
            case .bucket:
                // A bucket holds groups and collections: deleting one reaches them all.
                effects.allCollections = true
                effects.accountsOrGroups = true
            case .group:
                effects.accountsOrGroups = true
            case .collection:
                if let id = path.id { effects.collections.insert(path.uri(id: id)) } else { effects.allCollections = true }
            case .record:
                effects.collections.insert(path.collectionURI!)
            }
        }
        return effects
    }
}

/// What writes may have changed, for those who must hear of it: streams and long-polls of the
/// collections (``ChangeHub``), identity caches (accounts and group memberships), the webhook
/// dispatcher, and the other server processes on the database (``announcements``).
struct WriteEffects: Sendable, Hashable {
    /// Collections whose change feed may have changed.
    var collections: Set<String> = []
    /// Any collection's may have (a bucket's or a collection list's write).
    var allCollections = false
    var accountsOrGroups = false
    var webhooks = false

    mutating func formUnion(_ other: WriteEffects) {
        collections.formUnion(other.collections)
        allCollections = allCollections || other.allCollections
        accountsOrGroups = accountsOrGroups || other.accountsOrGroups
        webhooks = webhooks || other.webhooks
    }

    /// What other processes hear when the write commits: collection URIs (`*` for any), and
    /// ``KintoAPI/accountsChanged`` and ``KintoAPI/webhooksAnnounced`` when they may have changed.
    var announcements: [String] {
        var result = allCollections ? ["*"] : collections.sorted()
        if accountsOrGroups { result.append(KintoAPI.accountsChanged) }
        if webhooks { result.append(KintoAPI.webhooksAnnounced) }
        return result
    }
}
