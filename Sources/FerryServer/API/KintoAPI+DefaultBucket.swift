import Crypto
import FerryCore
import FerryStore
import Foundation
import HTTPTypes

extension KintoAPI {
    /// What Kinto's `default_bucket` plugin makes of a request under `/buckets/default`: the same
    /// request on the caller's personal bucket, and the objects to create first if missing
    /// (the bucket, and the collection it names), unless the request itself creates them.
    struct PersonalBucketRequest {
        var request: APIRequest
        var implicit: [ObjectPath]
    }

    /// nil when `request` is not under `/buckets/default` or the setting is off.
    /// - Throws: 401 for an anonymous caller (a personal bucket needs a person).
    func personalBucket(_ request: APIRequest) throws(KintoError) -> PersonalBucketRequest? {
        guard settings.defaultBucket, let authenticator else { return nil }
        var segments = request.path.split(separator: "/", omittingEmptySubsequences: true)
        if segments.first == "v1" { segments.removeFirst() }
        guard segments.count >= 2, segments[0] == "buckets", segments[1] == "default" else { return nil }
        guard let user = request.identity.userID else { throw .unauthorized }
        let bucket = authenticator.personalBucketID(of: user)
        var rewritten = request
        rewritten.path = "/buckets/\(bucket)" + (segments.count > 2 ? "/" + segments[2...].joined(separator: "/") : "")
        // A body that names the bucket `default` names the personal bucket (as in Kinto).
        if segments.count == 2, case .object(var top)? = try? request.jsonBody(), case .object(var data)? = top["data"], data["id"] == "default" {
            data["id"] = .string(bucket)
            top["data"] = .object(data)
            rewritten.parsedBody = .object(top)
        }
        // Nothing is created in a read-only server, or by the request that creates it anyway.
        var implicit: [ObjectPath] = []
        guard !settings.readonly else { return PersonalBucketRequest(request: rewritten, implicit: []) }
        if !(segments.count == 2 && request.method == .put) {
            implicit.append(ObjectPath(kind: .bucket, bucket: bucket, id: bucket))
        }
        if segments.count >= 4, segments[2] == "collections", ObjectID.isValid(String(segments[3])),
           !(segments.count == 4 && request.method == .put) {
            implicit.append(ObjectPath(kind: .collection, bucket: bucket, id: String(segments[3])))
        }
        return PersonalBucketRequest(request: rewritten, implicit: implicit)
    }

    /// Creates each of `paths` that does not exist yet, empty, its writer the caller (as Kinto
    /// creates them, without asking for the create permission: the bucket is the caller's own).
    func createImplicitly(_ paths: [ObjectPath], for identity: Identity, in session: any StorageSession) throws {
        guard let user = identity.userID else { return }
        for path in paths {
            let id = path.id!
            guard try session.get(path.storageKey, id: id, includeDeleted: false) == nil else { continue }
            let stored = try session.put(path.storageKey, id: id, data: [:], requestedTimestamp: nil)
            try session.addPermissions(of: path.uri, ["write": [user]])
            try ResourceHandler.seedChildTimestamps(of: path, uri: path.uri, at: stored.lastModified, in: session)
        }
    }
}

extension Authenticator {
    /// The caller's personal bucket (`/buckets/default`): a UUID from an HMAC of the user id
    /// keyed with the server secret, so nobody can guess another user's (as in Kinto).
    func personalBucketID(of userID: String) -> String {
        var key = Array("ferry default_bucket".utf8)
        key.append(0)
        key += basic.secret
        let mac = Array(HMAC<SHA256>.authenticationCode(for: Array(userID.utf8), using: SymmetricKey(data: key)))
        var bytes = Array(mac.prefix(16))
        bytes[6] = (bytes[6] & 0x0F) | 0x40  // a version-4 UUID, as every other generated id
        bytes[8] = (bytes[8] & 0x3F) | 0x80
        return UUID(uuid: (bytes[0], bytes[1], bytes[2], bytes[3], bytes[4], bytes[5], bytes[6], bytes[7],
                           bytes[8], bytes[9], bytes[10], bytes[11], bytes[12], bytes[13], bytes[14], bytes[15])).uuidString.lowercased()
    }
}
