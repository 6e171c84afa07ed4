import FerryCore
public import FerryStore
import Foundation

/// Tombstone retention as clients see it: the horizon on record lists and collection reads,
/// and a 410 (errno 124) for a change feed asked from before it.
extension KintoAPI {
    /// The header holding a collection's tombstone horizon (0: no tombstone was ever purged).
    public static let tombstoneHorizonHeader = "Ferry-Tombstone-Horizon"

    /// `capabilities.tombstone_retention` of `GET /v1/`: the server's rules, and how a client learns it fell behind.
    func retentionCapability(projectURL: JSON?) -> JSON {
        let retention = settings.tombstoneRetention
        return .object([
            "description": "Tombstones of deleted records may be purged (max_age, max_count; a collection's data.tombstones overrides them). A change feed (_since, Last-Event-ID, a webhook cursor) from before a collection's horizon (header Ferry-Tombstone-Horizon) is answered 410 with errno 124: read in full or reconcile, then resume",
            "url": projectURL,
            "max_age": retention.maxAge.map { .int($0 / 1000) } ?? .null,
            "max_count": retention.maxCount.map { .int(Int64($0)) } ?? .null,
            "errno": .int(Int64(KintoError.Errno.beforeTombstoneHorizon)),
            "header": .string(Self.tombstoneHorizonHeader),
        ].compactMapValues { $0 })
    }
}

extension ResourceHandler {
    /// The horizon of the records listed, after the list was read (the horizon only grows, and
    /// moves with the purge: read after the page, it covers every tombstone the page could miss).
    /// Throws the 410 when the list is a change feed from before it.
    /// - Parameters:
    ///   - since: where the feed starts (changes after it); nil or 0: not a feed.
    ///   - known: the horizon read beside the list (in its snapshot), if it was.
    func checkHorizon(since: Int64?, what: String, horizon known: Int64? = nil) throws -> Int64 {
        let horizon = try known ?? session.tombstoneHorizon(key)
        if let since, since > 0, since < horizon {
            throw KintoError.beforeTombstoneHorizon(what, since: since, horizon: horizon)
        }
        return horizon
    }
}

extension ListParameters {
    /// Where the list starts as a change feed: the largest lower bound on `last_modified`
    /// (`_since=T`, `gt_last_modified=T`: after T; `min_last_modified=T`: after T - 1); nil when none.
    var feedStart: Int64? {
        var start: Int64? = nil
        for filter in filters where filter.field == "last_modified" {
            let value = filter.value.intValue ?? filter.value.stringValue.flatMap { Int64($0.trimmingCharacters(in: .init(charactersIn: "\""))) }
            guard let value else { continue }
            switch filter.comparison {
            case .gt: start = max(start ?? value, value)
            case .min: start = max(start ?? (value - 1), value - 1)
            default: continue
            }
        }
        return start
    }
}
