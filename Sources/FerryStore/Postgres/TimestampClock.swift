import FerryCore
import FerryPostgres
import Logging
import NIOConcurrencyHelpers
import PostgresNIO

/// Where a process's writes allocate their timestamps: a connection of its own, on which each
/// allocation is a short transaction of its own.
///
/// A kind's timestamps strictly increase, so an allocation locks the kind's row in `timestamps`.
/// Held by the write until its COMMIT, that lock queued every writer of a collection behind the
/// one before it, disk flush included. Here it is held for one statement, and the allocation
/// leaves a claim (the timestamp and the writer's transaction id) in `timestamp_claims`,
/// committed with it. The writer deletes its claims in a statement of its own transaction (its
/// first upsert, or the statement before its COMMIT), so they go exactly when its writes appear. A reader stops below the oldest claim of the kind whose
/// transaction did not abort (``PostgresSession/belowClaims(_:_:)``): a timestamp it hands out
/// is one below which nothing can still commit, and a poller of `_since` misses nothing
/// (invariant 2) although writers commit in any order.
///
/// The allocation commits without waiting for the disk: a write that uses it commits after it,
/// and its own flush carries the allocation's WAL with it.
final class TimestampClock: @unchecked Sendable {
    private let lock = NIOLock()
    private var link: PostgresLink?
    private let connect: () throws -> PostgresLink
    private let logger: Logger

    init(logger: Logger, connect: @escaping () throws -> PostgresLink) {
        self.logger = logger
        self.connect = connect
    }

    /// A timestamp claimed on the clock, and the kind's timestamp before it was allocated.
    struct Claim {
        let key: ResourceKey
        let timestamp: Int64
        let previous: Int64
    }

    /// The kind's next timestamp (`requested` when above the kind's, else the next after it or
    /// now), claimed for the transaction `xid`.
    func allocate(_ key: ResourceKey, now: Int64, requested: Int64, xid: String) throws -> Claim {
        guard let (allocated, previous) = try run({ try $0.prepared(Allocate(key: key, now: now, requested: requested, xid: xid)) }).first,
              let allocated else {
            throw StorageError.backend("PostgreSQL allocated no timestamp")
        }
        return Claim(key: key, timestamp: allocated, previous: previous)
    }

    /// Raises the kind's timestamp to `value`, claimed for `xid`; nil when it was not below.
    func raise(_ key: ResourceKey, to value: Int64, xid: String) throws -> Claim? {
        try run { session in
            guard let (raised, previous) = try session.rows("""
                WITH old AS (SELECT last_modified FROM timestamps WHERE parent_id = $1 AND resource_name = $2),
                raised AS (INSERT INTO timestamps AS t (parent_id, resource_name, last_modified) VALUES ($1, $2, $3)
                           ON CONFLICT (parent_id, resource_name) DO UPDATE SET last_modified = EXCLUDED.last_modified
                           WHERE t.last_modified < EXCLUDED.last_modified
                           RETURNING last_modified),
                claimed AS (INSERT INTO timestamp_claims (parent_id, resource_name, last_modified, xid)
                            SELECT $1, $2, last_modified, $4::text::xid8 FROM raised RETURNING last_modified)
                SELECT (SELECT last_modified FROM claimed), coalesce((SELECT last_modified FROM old), 0)
                """, PostgresSession.binds([key.parentID, key.resourceName, value, xid])).first?.decode((Int64?, Int64).self),
                let raised else { return nil }
            return Claim(key: key, timestamp: raised, previous: previous)
        }
    }

    /// Undoes claims of a transaction (or savepoint) that rolled back, so it leaves the kinds'
    /// timestamps as they were: each kind's goes back to the last value others left it at before
    /// one of these claims, or to what others need it to be (their committed objects, claims
    /// still held, the tombstone horizon), unless a later allocation moved it on meanwhile (that
    /// one stands).
    func undo(_ claims: ArraySlice<Claim>) throws {
        var kinds: [ResourceKey: [Claim]] = [:]
        for claim in claims { kinds[claim.key, default: []].append(claim) }
        for (key, mine) in kinds {
            try run { session in
                var binds = PostgresSession.binds([key.parentID, key.resourceName, mine.map(\.timestamp)])
                // Where the kind was before each of them, but for where one of them had moved it:
                // the latest of those is the last value another transaction (or none) left.
                let ownStamps = Set(mine.map(\.timestamp))
                binds.append(mine.map(\.previous).filter { !ownStamps.contains($0) }.max() ?? 0)
                binds.append(mine.map(\.timestamp).max() ?? 0)
                _ = try session.rows("""
                    WITH gone AS (DELETE FROM timestamp_claims WHERE parent_id = $1 AND resource_name = $2 AND last_modified = ANY($3::bigint[])),
                    target AS (SELECT GREATEST($4::bigint,
                        (SELECT coalesce(max(last_modified), 0) FROM objects WHERE parent_id = $1 AND resource_name = $2),
                        (SELECT coalesce(max(c.last_modified), 0) FROM timestamp_claims c WHERE c.parent_id = $1 AND c.resource_name = $2
                         AND c.last_modified <> ALL($3::bigint[]) AND pg_xact_status(c.xid) IN ('in progress', 'committed')),
                        (SELECT coalesce(max(horizon), 0) FROM tombstone_horizons WHERE parent_id = $1 AND resource_name = $2)) AS value),
                    lowered AS (UPDATE timestamps SET last_modified = (SELECT value FROM target)
                                WHERE parent_id = $1 AND resource_name = $2 AND last_modified = $5 AND (SELECT value FROM target) > 0)
                    DELETE FROM timestamps WHERE parent_id = $1 AND resource_name = $2 AND last_modified = $5 AND (SELECT value FROM target) = 0
                    """, binds)
            }
        }
    }

    struct Allocate: PostgresPreparedStatement {
        static let sql = """
            WITH old AS (SELECT last_modified FROM timestamps WHERE parent_id = $1 AND resource_name = $2),
            allocated AS (INSERT INTO timestamps AS t (parent_id, resource_name, last_modified)
                          VALUES ($1, $2, CASE WHEN $4 > 0 THEN $4 ELSE $3 END)
                          ON CONFLICT (parent_id, resource_name) DO UPDATE SET last_modified =
                              CASE WHEN $4 > t.last_modified THEN $4 ELSE GREATEST($3, t.last_modified + 1) END
                          RETURNING last_modified),
            claimed AS (INSERT INTO timestamp_claims (parent_id, resource_name, last_modified, xid)
                        SELECT $1, $2, last_modified, $5::text::xid8 FROM allocated RETURNING last_modified)
            SELECT (SELECT last_modified FROM claimed), coalesce((SELECT last_modified FROM old), 0)
            """
        typealias Row = (Int64?, Int64)
        let key: ResourceKey
        let now: Int64
        let requested: Int64
        let xid: String

        func makeBindings() throws -> PostgresBindings {
            PostgresSession.binds([key.parentID, key.resourceName, now, requested, xid])
        }

        func decodeRow(_ row: PostgresRow) throws -> Row { try row.decode((Int64?, Int64).self) }
    }

    /// One statement at a time, each its own transaction. A connection that fails other than by
    /// the server refusing the statement is dropped, and the next allocation makes a new one.
    private func run<T>(_ body: (PostgresSession) throws -> T) throws -> T {
        try lock.withLock {
            let current: PostgresLink
            if let link, !link.isClosed {
                current = link
            } else {
                current = try connect()
                link = current
                try PostgresSession(link: current, logger: logger).execute("SET synchronous_commit = off")
            }
            do {
                return try body(PostgresSession(link: current, logger: logger))
            } catch let error as PSQLError where error.code == .server {
                throw error
            } catch {
                try? current.connection.close().wait()
                link = nil
                throw error
            }
        }
    }

    func close() {
        let open = lock.withLock { () -> PostgresLink? in
            defer { link = nil }
            return link
        }
        try? open?.connection.close().wait()
    }
}
