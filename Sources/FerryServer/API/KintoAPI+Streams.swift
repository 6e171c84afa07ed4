import FerryCore
public import FerryStore
import Foundation
import HTTPTypes
import NIOConcurrencyHelpers

/// The change feed read by event streams, long-polls and webhooks: the same permission
/// checks as a records list, oldest change first.
extension KintoAPI {
    /// Most changes one read of the feed returns; a stream reads again at once when a read was full.
    public static let changesPerRead = 500

    /// The records of a collection (tombstones included) changed after `since`, oldest first,
    /// as `identity` may read them; with `since == nil`, none, only the collection's current timestamp.
    /// - Throws: ``KintoError`` (401/403 without read permission, 404 for a missing bucket or collection).
    public func changes(bucket: String, collection: String, since: Int64?, identity: Identity,
                        limit: Int = KintoAPI.changesPerRead) async throws -> (changes: [StoredObject], timestamp: Int64) {
        let path = ObjectPath(kind: .record, bucket: bucket, collection: collection)
        let request = APIRequest(method: .get, path: "/buckets/\(bucket)/collections/\(collection)/records", identity: identity)
        do {
            return try await storage.read { session in
                let handler = ResourceHandler(api: self, request: request, path: path, session: session)
                return try handler.changes(since: since, limit: limit)
            }
        } catch let error as KintoError {
            throw error
        } catch let error as StorageError {
            metrics?.storageError()
            throw KintoError.backend("The storage backend failed: \(error.message). Retry later.", retryAfter: settings.retryAfterSeconds)
        }
    }

    /// ``changes(bucket:collection:since:identity:limit:)`` for the many streams a change wakes at
    /// once: streams of one collection, at the same place, with the same principals, woken by the
    /// same announcement, share one read of the feed instead of each making its own.
    public func sharedChanges(bucket: String, collection: String, since: Int64, identity: Identity) async throws -> [StoredObject] {
        let uri = "/buckets/\(bucket)/collections/\(collection)"
        let key = [uri, String(since), changeHub.generation(uri), identity.userID ?? "", identity.principals.sorted().joined(separator: "\n")]
            .joined(separator: "\u{1}")
        let result = await feedReads.read(key) {
            do {
                return .success(try await self.changes(bucket: bucket, collection: collection, since: since, identity: identity).changes)
            } catch let error as KintoError {
                return .failure(error)
            } catch {
                return .failure(.backend("The storage backend failed: \(error). Retry later.", retryAfter: self.settings.retryAfterSeconds))
            }
        }
        return try result.get()
    }

    /// Most seconds a long-poll (`_wait`) may hold a request.
    static let maxWaitSeconds = 300

    /// A records list with `_wait=SECONDS`: answers as soon as a change after `_since` exists,
    /// or with the empty list when the wait ends.
    func longPoll(_ request: APIRequest, path: ObjectPath, wait: String) async throws -> APIResponse {
        guard let seconds = Double(wait), seconds >= 0, seconds <= Double(Self.maxWaitSeconds), seconds.isFinite else {
            throw KintoError.invalidParameters(location: "querystring", name: "_wait",
                                               description: "_wait must be a number of seconds from 0 to \(Self.maxWaitSeconds)")
        }
        guard request.query.contains(where: { $0.0 == "_since" }) else {
            throw KintoError.invalidParameters(location: "querystring", name: "_wait", description: "_wait needs _since (wait for changes after which timestamp?)")
        }
        var withoutWait = request
        withoutWait.query.removeAll { $0.0 == "_wait" }
        let inner = withoutWait
        let subscription = changeHub.subscribe(path.collectionURI!)
        defer { changeHub.unsubscribe(subscription) }
        let deadline = ContinuousClock.now + .milliseconds(Int64(seconds * 1000))
        while true {
            let response = try await storage.read { session in try self.resource(inner, route: .plural(path), path: path, session: session) }
            let now = ContinuousClock.now
            guard response.status == 200, Self.isEmptyList(response), now < deadline, !subscription.isClosed else { return response }
            _ = await subscription.wait(timeout: deadline - now)
        }
    }

    static func isEmptyList(_ response: APIResponse) -> Bool {
        switch response.body {
        case .raw(let bytes): return bytes.elementsEqual("{\"data\":[]}".utf8)
        case .json(let json): return json["data"]?.arrayValue?.isEmpty == true
        case .empty, .text, .bytes: return false
        }
    }
}

extension ResourceHandler {
    /// See ``KintoAPI/changes(bucket:collection:since:identity:limit:)``.
    func changes(since: Int64?, limit: Int) throws -> (changes: [StoredObject], timestamp: Int64) {
        let ids = try visibleIDs("read")
        try ensureParents()
        let current = try session.timestamp(key)
        guard let since else { return ([], current) }
        var result: [StoredObject] = []
        let query = ListQuery(filters: [Filter("last_modified", .gt, .int(since))], sort: [Sort("last_modified", descending: false)],
                              limit: limit, includeDeleted: true, ids: ids)
        try session.list(key, query: query) { object in
            result.append(object)
            return true
        }
        _ = try checkHorizon(since: since, what: "The change feed's start")
        return (result, current)
    }
}

/// Reads in flight by key: a caller with the key of a read under way waits for its result.
final class SharedReads: Sendable {
    typealias Outcome = Result<[StoredObject], KintoError>
    private let inFlight = NIOLockedValueBox<[String: Task<Outcome, Never>]>([:])

    func read(_ key: String, _ body: @escaping @Sendable () async -> Outcome) async -> Outcome {
        let (task, isOwner) = inFlight.withLockedValue { inFlight -> (Task<Outcome, Never>, Bool) in
            if let running = inFlight[key] { return (running, false) }
            let task = Task { await body() }
            inFlight[key] = task
            return (task, true)
        }
        let outcome = await task.value
        if isOwner { inFlight.withLockedValue { _ = $0.removeValue(forKey: key) } }
        return outcome
    }
}
