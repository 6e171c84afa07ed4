import Crypto
import FerryCore
import FerryStore
import Foundation
import HTTPTypes

/// `Idempotency-Key` on `POST` (the IETF httpapi draft, draft-ietf-httpapi-idempotency-key-header):
/// a client that retries a create with the same key gets the first answer again and the object
/// is created once.
///
/// - The key is the caller's (scoped by user id, or `system.Everyone` for anonymous callers), 1
///   to 255 printable ASCII characters, bare or as a quoted structured-field string.
/// - The same key with the same request (method, path, query and body) answers what the first
///   one answered, with `Idempotent-Replayed: true`; nothing is written again.
/// - The same key with another request answers 422.
/// - Only answers below 400 are kept (a refused request changes nothing, so its retry runs
///   again); a key is kept for ``idempotencyLifetime``, then a request with it runs as new.
/// - The key and the answer are written in the request's own write transaction: the create and
///   the memory of it commit together or not at all. Requests with keys take a lock row first,
///   so two of them racing on PostgreSQL run one after the other.
///
/// Outside a batch only (sub-requests of `/batch` carry no keys of their own).
extension KintoAPI {
    static let idempotencyKeys = ResourceKey(parentID: "/idempotency", resourceName: "key")
    static let idempotencyLocks = ResourceKey(parentID: "/idempotency", resourceName: "lock")
    /// How long a key is remembered: 24 hours, in milliseconds.
    static let idempotencyLifetime: Int64 = 24 * 3600 * 1000

    /// `operation` made idempotent under the request's `Idempotency-Key`, or as it is without one.
    func idempotent(_ operation: Operation, request: APIRequest) throws(KintoError) -> Operation {
        guard request.method == .post, let raw = request.header("Idempotency-Key") else { return operation }
        guard case .write = operation.access else {
            throw .invalidParameters(location: "header", name: "Idempotency-Key",
                                     description: "Idempotency-Key is taken on a POST that creates (a plural endpoint or /accounts), not here")
        }
        let key = try Self.idempotencyKey(raw)
        let scope = request.identity.userID ?? Identity.everyone
        let id = Hex.encode(SHA256.hash(data: Array((scope + "\u{0}" + key).utf8)))
        var fingerprint = SHA256()
        fingerprint.update(data: Array((request.method.rawValue + " " + request.path + "?").utf8))
        for (name, value) in request.query { fingerprint.update(data: Array((name + "=" + value + "&").utf8)) }
        fingerprint.update(data: [0])
        fingerprint.update(data: request.body)
        let print = Hex.encode(fingerprint.finalize())
        var wrapped = operation
        wrapped.run = { session, memo in
            guard let session else { throw KintoError.internalError("no storage session") }
            // Serializes requests with keys (PostgreSQL: the lock row's kind stays locked until commit).
            _ = try session.put(Self.idempotencyLocks, id: "all", data: [:], requestedTimestamp: nil)
            if let stored = try session.get(Self.idempotencyKeys, id: id, includeDeleted: false),
               stored.lastModified > Timestamp.now() - Self.idempotencyLifetime {
                let fields = try stored.parsed()
                guard fields["fingerprint"] == .string(print) else {
                    throw KintoError(status: 422, errno: KintoError.Errno.invalidParameters, error: "Unprocessable Content",
                                     message: "Idempotency-Key \(key) was used for another request: a retry must repeat the first request exactly",
                                     details: [["location": "header", "name": "Idempotency-Key", "description": "already used for another request"]])
                }
                var headers: [(String, String)] = [("Idempotent-Replayed", "true")]
                for case .array(let pair) in fields["headers"]?.arrayValue ?? [] {
                    if let name = pair.first?.stringValue, let value = pair.last?.stringValue { headers.append((name, value)) }
                }
                return APIResponse(status: Int(fields["status"]?.intValue ?? 200), headers: headers, body: .json(fields["body"] ?? .null))
            }
            let response = try operation.run(session, memo)
            if response.status < 400 {
                let kept = response.headers.filter { ["etag", "last-modified", "location"].contains($0.0.lowercased()) }
                _ = try session.put(Self.idempotencyKeys, id: id, data: [
                    "fingerprint": .string(print),
                    "status": .int(Int64(response.status)),
                    "headers": .array(kept.map { [.string($0.0), .string($0.1)] }),
                    "body": response.jsonBody ?? .null,
                ], requestedTimestamp: nil)
            }
            return response
        }
        return wrapped
    }

    /// The key of an `Idempotency-Key` header: a structured-field string (`"…"`: printable ASCII
    /// but `"` and `\`) or a bare run of visible ASCII without `"`; 1 to 255 characters.
    static func idempotencyKey(_ raw: String) throws(KintoError) -> String {
        let text = raw.trimmingCharacters(in: .whitespaces)
        let quoted = text.utf8.count >= 2 && text.hasPrefix("\"") && text.hasSuffix("\"")
        let key = quoted ? String(text.dropFirst().dropLast()) : text
        let allowed: ClosedRange<UInt8> = quoted ? 0x20...0x7E : 0x21...0x7E
        guard (1...255).contains(key.utf8.count), key.utf8.allSatisfy({ allowed.contains($0) && $0 != 0x22 && !(quoted && $0 == 0x5C) }) else {
            throw .invalidParameters(location: "header", name: "Idempotency-Key",
                                     description: "Idempotency-Key must be 1 to 255 printable ASCII characters, bare or as a quoted string")
        }
        return key
    }
}
