import FerryCore
import FerryStore

/// The kinds of objects of the Kinto API.
enum ResourceKind: String, Sendable {
    case bucket, collection, group, record

    /// The permissions an object of this kind can carry.
    var permissionNames: [String] {
        switch self {
        case .bucket: ["read", "write", "collection:create", "group:create"]
        case .collection: ["read", "write", "record:create"]
        case .group, .record: ["read", "write"]
        }
    }

    /// The plural path segment.
    var plural: String { rawValue + "s" }
}

/// Where an object is: its kind, and the ids of it and its parents.
struct ObjectPath: Sendable, Hashable {
    var kind: ResourceKind
    var bucket: String
    var collection: String?
    /// The object's own id (nil for a plural endpoint).
    var id: String?

    /// The URI of the object's parent (`""` for buckets).
    var parentURI: String {
        switch kind {
        case .bucket: ""
        case .collection, .group: "/buckets/\(bucket)"
        case .record: "/buckets/\(bucket)/collections/\(collection!)"
        }
    }

    var storageKey: ResourceKey { ResourceKey(parentID: parentURI, resourceName: kind.rawValue) }

    func uri(id: String) -> String { "\(parentURI)/\(kind.plural)/\(id)" }

    var uri: String { uri(id: id!) }

    var bucketURI: String { "/buckets/\(bucket)" }
    var collectionURI: String? { collection.map { "/buckets/\(bucket)/collections/\($0)" } }

    /// Kinto's inheritance tree: the `(object, permission)` pairs that grant `permission` on
    /// the object with `id` of this kind (`id == nil` asks about the plural endpoint's parent).
    func grants(_ permission: String, id: String?) -> [(uri: String, permission: String)] {
        var result: [(String, String)] = []
        let wantsRead = permission == "read"
        func add(_ uri: String, _ names: [String]) { for n in names { result.append((uri, n)) } }
        switch kind {
        case .bucket:
            guard let id else { return [] }
            let uri = "/buckets/\(id)"
            switch permission {
            case "read": add(uri, ["write", "read"])
            case "collection:create", "group:create": add(uri, ["write", permission])
            default: add(uri, ["write"])
            }
        case .collection, .group:
            switch permission {
            case "collection:create", "group:create": add(bucketURI, ["write", permission])
            default:
                add(bucketURI, wantsRead ? ["write", "read"] : ["write"])
                if let id {
                    let uri = uri(id: id)
                    if permission == "record:create" {
                        add(uri, ["write", "record:create"])
                    } else {
                        add(uri, wantsRead ? ["write", "read"] : ["write"])
                    }
                }
            }
        case .record:
            add(bucketURI, wantsRead ? ["write", "read"] : ["write"])
            switch permission {
            case "record:create": add(collectionURI!, ["write", "record:create"])
            default:
                add(collectionURI!, wantsRead ? ["write", "read"] : ["write"])
                if let id { add(uri(id: id), wantsRead ? ["write", "read"] : ["write"]) }
            }
        }
        return result
    }

    /// The permission that creating a child of this kind needs on the parent.
    var createPermission: String { "\(kind.rawValue):create" }

    /// The parent objects that must exist, outermost first.
    var requiredParents: [(ObjectPath, String)] {
        switch kind {
        case .bucket: []
        case .collection, .group: [(ObjectPath(kind: .bucket, bucket: bucket, id: bucket), bucket)]
        case .record:
            [(ObjectPath(kind: .bucket, bucket: bucket, id: bucket), bucket),
             (ObjectPath(kind: .collection, bucket: bucket, id: collection!), collection!)]
        }
    }
}
