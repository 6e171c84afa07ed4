import FerryCore
import FerryStore
import Foundation
import HTTPTypes
import NIOConcurrencyHelpers

/// Webhooks of a collection, a Ferry extension:
/// `/v1/buckets/B/collections/C/webhooks[/ID[/deliveries]]`.
///
/// Only who may write the collection may list, read, register (`PUT` with
/// `{"data": {"url", "secret", "batch_size"?, "since"?}}`) or delete its webhooks. The secret is
/// never answered back. Each webhook receives the collection's changes in order (see
/// ``WebhookDispatcher``); `GET …/webhooks/ID` shows its state and recent deliveries, and
/// `…/deliveries` the delivery log alone.
extension KintoAPI {
    /// Where webhooks are stored: one kind for the whole server, ids `B/C/ID`, so the dispatcher lists them all at once.
    static let webhooksKey = ResourceKey(parentID: "/webhooks", resourceName: "webhook")
    /// Most deliveries a webhook's log keeps (newest first).
    static let webhookLogSize = 50

    static func webhookStorageID(bucket: String, collection: String, id: String) -> String { "\(bucket)/\(collection)/\(id)" }

    /// The operation of a request to a collection's webhooks.
    ///
    /// Permission comes before validation: a registration's body is read, and its URL's host
    /// looked up, only for who may manage the collection's webhooks; anyone else gets 401/403
    /// and causes no DNS look-up. The look-up runs before the transaction (never under the
    /// writer), after the permission was checked in a snapshot of its own; it runs in the
    /// transaction only when that snapshot did not grant it but the transaction does (an
    /// earlier request of the same batch created the collection or granted the right).
    func webhookOperation(_ request: APIRequest, bucket: String, collection: String, id: String?, log: Bool) throws -> Operation {
        try refuseWriteIfReadonly(request)
        let urlChecked = NIOLockedValueBox(false)
        var operation = Operation(request.isRead ? .snapshot : .write, session: { session in
            try self.authorizeWebhooks(request, bucket: bucket, collection: collection, session: session)
            var data: [String: JSON]?
            if request.method == .put {
                let registration = try Self.webhookData(try request.jsonBody(emptyIsNil: false) ?? .null)
                if !urlChecked.withLockedValue({ $0 }) { try self.checkWebhookURL(registration) }
                data = registration
            }
            guard let id else {
                var list: [JSON] = []
                let prefix = "\(bucket)/\(collection)/"
                try session.list(Self.webhooksKey, query: ListQuery(sort: [Sort("id")])) { hook in
                    if hook.id.hasPrefix(prefix), var fields = try? hook.parsed() {
                        fields["log"] = nil  // the log is on the webhook's own page
                        list.append(Self.publicWebhook(fields, hook))
                    }
                    return true
                }
                return APIResponse(body: .json(["data": .array(list)]))
            }
            let storageID = Self.webhookStorageID(bucket: bucket, collection: collection, id: id)
            let existing = try session.get(Self.webhooksKey, id: storageID, includeDeleted: false)
            switch request.method {
            case .get, .head:
                guard let existing else { throw KintoError.notFound(resource: "webhook", id: id) }
                let fields = try existing.parsed()
                if log { return APIResponse(body: .json(["data": fields["log"] ?? []])) }
                return APIResponse(body: .json(["data": Self.publicWebhook(fields, existing)]))
            case .delete:
                guard existing != nil else { throw KintoError.notFound(resource: "webhook", id: id) }
                let tombstone = try session.delete(Self.webhooksKey, id: storageID, requestedTimestamp: nil)
                return APIResponse(body: .json(["data": ["id": .string(id), "deleted": true, "last_modified": .int(tombstone.lastModified)]]))
            default:
                var fields = data ?? [:]
                let previous = try existing?.parsed() ?? [:]
                let records = ResourceKey(parentID: "/buckets/\(bucket)/collections/\(collection)", resourceName: "record")
                let since = fields.removeValue(forKey: "since")
                for (name, value) in previous where ["cursor", "delivered", "failures", "next_attempt", "last_error", "log"].contains(name) {
                    fields[name] = value
                }
                // Where deliveries start: `since` when given, else where this webhook was, else now.
                let now = try session.timestamp(records)
                if let start = since?.intValue {
                    // A start the feed no longer reaches back to would deliver without the deletes before it.
                    let horizon = try session.tombstoneHorizon(records)
                    if start > 0, start < horizon { throw KintoError.beforeTombstoneHorizon("since", since: start, horizon: horizon) }
                }
                fields["cursor"] = since ?? previous["cursor"] ?? .int(now)
                if since != nil || previous["url"] != fields["url"] {
                    // A new start or a new receiver: try at once, and what went wrong before is past.
                    fields["failures"] = 0
                    fields["next_attempt"] = nil
                    fields["last_error"] = nil
                }
                fields["bucket"] = .string(bucket)
                fields["collection"] = .string(collection)
                let stored = try session.put(Self.webhooksKey, id: storageID, data: fields, requestedTimestamp: nil)
                return APIResponse(status: existing == nil ? 201 : 200, body: .json(["data": Self.publicWebhook(try stored.parsed(), stored)]))
            }
        })
        if request.method == .put {
            operation.precheck = {
                let granted = try await self.storage.read { session -> Bool in
                    do {
                        try self.authorizeWebhooks(request, bucket: bucket, collection: collection, session: session)
                        return true
                    } catch is KintoError {
                        return false  // refused (or no such collection) here: the transaction says which
                    }
                }
                guard granted, let registration = try? Self.webhookData(try request.jsonBody(emptyIsNil: false) ?? .null) else { return }
                try self.checkWebhookURL(registration)
                urlChecked.withLockedValue { $0 = true }
            }
        }
        return operation
    }

    /// 400 when the policy refuses the registration's URL now (looks its host up).
    func checkWebhookURL(_ registration: [String: JSON]) throws {
        if let url = registration["url"]?.stringValue, let refusal = settings.webhookPolicy.refusal(for: url) {
            throw KintoError.invalidParameters(location: "body", name: "data.url", description: refusal)
        }
    }

    /// Only who may write the collection manages its webhooks; 404 for a missing collection
    /// only to who may write the bucket (others learn nothing).
    func authorizeWebhooks(_ request: APIRequest, bucket: String, collection: String, session: any StorageSession) throws {
        let path = ObjectPath(kind: .collection, bucket: bucket, id: collection)
        let handler = ResourceHandler(api: self, request: request, path: path, session: session)
        guard try handler.isGranted("write", id: collection) else { throw handler.denied }
        guard try session.get(path.storageKey, id: collection, includeDeleted: false) != nil else {
            throw KintoError.notFound(resource: "collection", id: collection)
        }
    }

    /// What a webhook shows its owner: everything but the secret.
    static func publicWebhook(_ fields: [String: JSON], _ stored: StoredObject) -> JSON {
        var shown = fields
        shown["secret"] = nil
        shown["bucket"] = nil
        shown["collection"] = nil
        shown["id"] = .string(String(stored.id.split(separator: "/").last ?? ""))
        shown["last_modified"] = .int(stored.lastModified)
        return .object(shown)
    }

    /// The registration in a `PUT` body, checked without any I/O: url (an http(s) URL; see
    /// ``checkWebhookURL(_:)`` for where it points), secret, batch_size, since.
    static func webhookData(_ json: JSON) throws -> [String: JSON] {
        guard case .object(let data)? = json["data"] else {
            throw KintoError.invalidParameters(location: "body", name: "data", description: "data must be an object with url and secret")
        }
        func invalid(_ name: String, _ description: String) -> KintoError {
            .invalidParameters(location: "body", name: "data.\(name)", description: description)
        }
        for name in data.keys where !["url", "secret", "batch_size", "since"].contains(name) {
            throw invalid(name, "unknown field (a webhook has url, secret, batch_size and since)")
        }
        guard let url = data["url"]?.stringValue else { throw invalid("url", "url is required: where to POST the changes") }
        if let problem = WebhookAddressPolicy.parse(url).problem { throw invalid("url", problem) }
        guard let secret = data["secret"]?.stringValue, (16...256).contains(secret.utf8.count) else {
            throw invalid("secret", "secret is required: 16 to 256 characters that sign each delivery")
        }
        var result: [String: JSON] = ["url": .string(url), "secret": .string(secret), "batch_size": 100]
        if let size = data["batch_size"] {
            guard let n = size.intValue, (1...1000).contains(n) else { throw invalid("batch_size", "batch_size must be a number from 1 to 1000") }
            result["batch_size"] = .int(n)
        }
        if let since = data["since"] {
            guard let n = since.intValue, n >= 0 else { throw invalid("since", "since must be a timestamp (0 sends the whole history)") }
            result["since"] = .int(n)
        }
        return result
    }
}
