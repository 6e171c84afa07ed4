import Foundation
import NIOConcurrencyHelpers

/// Whether another Ferry process listens for this database's change announcements, as last
/// looked up: a write's announcements of changed collections are sent only then.
///
/// A `NOTIFY` takes a lock that every committing notifier queues on until its commit is on disk,
/// so writers that announce commit one after the other: on a loaded machine, 2-4 of a line's 10
/// connections waited on it at any moment (`bench/server_pg.sh`, the PUT line's lock waits, all of
/// the kind `object`). The announcements of changed collections only wake other processes'
/// streams, which then read what changed since where they are; with no other process listening,
/// they wake no one. Accounts, groups and webhooks are always announced (they drop caches).
///
/// Each process's listening connection holds a shared advisory lock (``key``, in its database:
/// another database's listeners hear nothing of this one's) for as long as it listens; a write
/// looks the holders up in `pg_locks` before it begins when the last answer is older than
/// half a second. One that held announcements back sends them after all before its
/// `COMMIT` if another process listens by then, or if the answer has aged meanwhile. So a write
/// decides on an answer at most that old, just before it commits. A process that starts
/// listening wakes its streams when it starts and twice more within a few seconds
/// (``PostgresStorage/listenForChanges(_:)``): those wakes read what such a write committed.
final class OtherListeners: Sendable {
    private struct State {
        /// The last answer (true until looked up: announce).
        var listening = true
        var checked: ContinuousClock.Instant?
        /// The backend of this process's own listening connection (nil while it has none).
        var ownBackend: Int32?
        /// How old an answer may be when a write decides on it.
        var maximumAge: Duration = .milliseconds(500)
    }

    private let state = NIOLockedValueBox(State())
    /// The advisory lock a listening connection holds (shared).
    static let key = PostgresStorage.lockKey("listening")

    /// The last answer.
    var listening: Bool { state.withLockedValue { $0.listening } }

    /// Whether the last answer is older than its maximum age (half a second), or there is none.
    var isStale: Bool {
        state.withLockedValue { state in state.checked.map { ContinuousClock.now - $0 > state.maximumAge } ?? true }
    }

    /// Sets how old an answer may be (tests: a write on a loaded machine can take longer than
    /// half a second, and then announces all the same).
    func setMaximumAge(_ age: Duration) {
        state.withLockedValue { $0.maximumAge = age }
    }

    /// This process's listening connection's backend (nil: it has none now).
    func setOwnBackend(_ pid: Int32?) {
        state.withLockedValue { $0.ownBackend = pid }
    }

    /// Looks the other holders of ``key`` up with `query` (SQL and its binds); a failure counts as
    /// "listening" (announce, as before this existed).
    func refresh(_ query: (String, [Int64]) throws -> Bool?) {
        let own = state.withLockedValue { $0.ownBackend }
        let key = UInt64(bitPattern: Self.key)
        let sql = """
            SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND classid::int8 = $1 AND objid::int8 = $2
                                                    AND objsubid = 1 AND pid <> $3
                                                    AND database = (SELECT oid FROM pg_database WHERE datname = current_database()))
            """
        let found = (try? query(sql, [Int64(key >> 32), Int64(key & 0xffff_ffff), Int64(own ?? -1)])) ?? nil
        state.withLockedValue { state in
            state.listening = found ?? true
            state.checked = .now
        }
    }

    /// Whether an announcement may be held back when no other process listens: a changed
    /// collection's (`TAG /buckets/…`), not accounts, groups, webhooks or "anything" (`*`).
    static func isCollection(_ payload: String) -> Bool {
        guard let space = payload.firstIndex(of: " ") else { return false }
        return payload[payload.index(after: space)...].hasPrefix("/")
    }
}
