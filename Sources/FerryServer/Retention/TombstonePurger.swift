import CoreMetrics
import FerryCore
public import FerryStore
import Foundation
public import Logging
public import ServiceLifecycle

/// Purges the tombstones retention no longer keeps, every `tombstone_purge_interval`.
///
/// Each collection's retention is the server's (`tombstone_max_age`, `tombstone_max_count`)
/// overridden by its `data.tombstones`. Each batch is one write transaction that deletes old
/// tombstones and raises the collection's horizon together (``StorageSession/purgeTombstones(_:retention:now:batch:)``),
/// so no reader ever sees tombstones gone below a horizon that does not say so. With several
/// server processes on one database (PostgreSQL), only the one leading `tombstone-purge` purges
/// (`ferry_tombstone_purge_leading` says which; `ferry_tombstones_purged_total` counts).
public final class TombstonePurger: Service, Sendable {
    let api: KintoAPI
    let logger: Logger
    /// Tombstones deleted per transaction.
    let batch: Int

    public init(api: KintoAPI, logger: Logger, batch: Int = 10_000) {
        self.api = api
        self.logger = logger
        self.batch = batch
    }

    public func run() async throws {
        await cancelWhenGracefulShutdown {
            await self.api.storage.whileLeading("tombstone-purge") {
                self.api.metrics?.tombstonePurgeLeading.record(1)
                defer { self.api.metrics?.tombstonePurgeLeading.record(0) }
                while !Task.isCancelled {
                    do {
                        let purged = try await self.purgeOnce(now: Timestamp.now())
                        if purged > 0 { self.logger.info("tombstones purged", metadata: ["ferry.tombstones": .stringConvertible(purged)]) }
                    } catch {
                        self.logger.warning("tombstones: purge failed, retrying at the next interval", metadata: ["ferry.error": .string("\(error)")])
                    }
                    try? await Task.sleep(for: .seconds(self.api.settings.tombstonePurgeInterval))
                }
            }
        }
    }

    /// One pass over every collection as of `now` (ms). Returns how many tombstones went.
    public func purgeOnce(now: Int64) async throws -> Int {
        let server = api.settings.tombstoneRetention
        let collections = try await api.storage.read { session in try Self.collectionRetentions(session, server: server) }
        var total = 0
        for (uri, retention) in collections where !retention.keepsEverything {
            let key = ResourceKey(parentID: uri, resourceName: ResourceKind.record.rawValue)
            let batch = self.batch
            while !Task.isCancelled {
                let purged = try await api.storage.write { session in try session.purgeTombstones(key, retention: retention, now: now, batch: batch) }
                total += purged
                api.metrics?.tombstonesPurged.increment(by: Int64(purged))
                if purged < batch { break }
            }
        }
        return total
    }

    /// Every live collection's URI and retention. A collection whose `data.tombstones` does not
    /// read (stored before it was checked) keeps its tombstones: purging on a guess loses deletes.
    static func collectionRetentions(_ session: any StorageSession, server: TombstoneRetention) throws -> [(String, TombstoneRetention)] {
        var buckets: [String] = []
        try session.list(ResourceKey(parentID: "", resourceName: ResourceKind.bucket.rawValue), query: ListQuery(sort: [Sort("id")])) {
            buckets.append($0.id)
            return true
        }
        var result: [(String, TombstoneRetention)] = []
        for bucket in buckets {
            let key = ResourceKey(parentID: "/buckets/\(bucket)", resourceName: ResourceKind.collection.rawValue)
            try session.list(key, query: ListQuery(sort: [Sort("id")])) { collection in
                let uri = "/buckets/\(bucket)/collections/\(collection.id)"
                let value = (try? collection.parsed())?["tombstones"] ?? .null
                if value == .null {
                    result.append((uri, server))
                } else if let rules = try? TombstoneRules(value) {
                    result.append((uri, rules.applied(to: server)))
                }
                return true
            }
        }
        return result
    }
}
