/// How long a collection keeps the tombstones of its deleted records: those older than
/// `maxAge`, and those beyond the newest `maxCount`, may be purged. Both nil: kept forever
/// (Kinto's behaviour, the default).
///
/// Purging a tombstone raises the kind's *horizon* (``StorageSession/tombstoneHorizon(_:)``) to
/// its `last_modified`, in the same transaction: a change feed read from a timestamp at or above
/// the horizon is complete, one from below it may miss deletes, and the server refuses it.
public struct TombstoneRetention: Sendable, Hashable, CustomStringConvertible {
    /// Milliseconds a tombstone is kept; nil: no age limit.
    public var maxAge: Int64?
    /// Most tombstones kept (the newest); nil: no count limit.
    public var maxCount: Int?

    public init(maxAge: Int64? = nil, maxCount: Int? = nil) {
        self.maxAge = maxAge
        self.maxCount = maxCount
    }

    /// Keep every tombstone.
    public static let forever = TombstoneRetention()

    public var keepsEverything: Bool { maxAge == nil && maxCount == nil }

    public var description: String {
        var parts: [String] = []
        if let maxAge { parts.append("max_age \(maxAge / 1000) s") }
        if let maxCount { parts.append("max_count \(maxCount)") }
        return parts.isEmpty ? "forever" : parts.joined(separator: ", ")
    }

    /// The newest `last_modified` a tombstone may have and still be purged at `now` (ms), nil
    /// when none may be: the two rules each purge a suffix of the tombstones in time order, so
    /// their union is the longer suffix.
    func purgeThrough(_ key: ResourceKey, now: Int64, in session: some StorageSession) throws -> Int64? {
        var through: Int64? = nil
        if let maxAge { through = now - maxAge - 1 }
        if let maxCount, let beyond = try session.tombstoneTimestamp(key, offset: maxCount, newestFirst: true, atMost: nil) {
            through = max(through ?? beyond, beyond)
        }
        return through
    }
}

extension StorageSession {
    /// Purges at most `batch` of the kind's tombstones that `retention` no longer keeps, oldest
    /// first, and raises the kind's horizon to the newest one purged (in this transaction).
    /// Call again while it returns `batch`: each call is one bounded transaction's work.
    /// - Returns: how many tombstones went.
    public func purgeTombstones(_ key: ResourceKey, retention: TombstoneRetention, now: Int64, batch: Int = 10_000) throws -> Int {
        guard batch > 0, let through = try retention.purgeThrough(key, now: now, in: self) else { return 0 }
        let last = try tombstoneTimestamp(key, offset: batch - 1, newestFirst: false, atMost: through) ?? through
        return try dropTombstones(key, through: min(last, through))
    }
}
