import NIOConcurrencyHelpers

/// What read sessions of ``SQLiteStorage`` learnt of the access-control entries (grant checks and
/// objects' permissions), kept until the next write transaction ends.
///
/// A GET of one record asks for two grants and the record's permissions: three of its four
/// statements, a fifth of its time. They change far less often than they are asked for.
///
/// Correct because this process is the database's only writer (``SQLiteStorage`` is the embedded
/// backend; several processes share PostgreSQL, which answers a GET in one statement instead):
/// - ``GroupCommit`` calls ``writeEnded()`` after every transaction it ran, committed or not, and
///   before any of its writers hears of it. Whoever is answered after a write therefore reads
///   after the version moved.
/// - A read session takes the version before its first statement and its answers are kept only
///   if the version has not moved since (``remember(_:_:asOf:)``): an answer read from a snapshot
///   older than a commit is never kept after that commit's bump.
/// - Write sessions never use it (they must see their own changes).
/// - ``GroupCommit`` also calls ``commitStarting()`` just before each `COMMIT`. A read that
///   began while a commit was under way, or during which one began, may have seen both sides of
///   it (a grant answered from before it, a record read after it): ``SQLiteStorage`` reads it
///   again, from one snapshot and without the cache (``unchanged(since:)``).
final class ACLCache: Sendable {
    enum Key: Hashable {
        case grant(objects: [String], permissions: [String], principals: [String])
        case permissions(uri: String)
    }

    enum Answer {
        case granted(Bool)
        case permissions(Permissions)
    }

    private struct State {
        var version: UInt64 = 0
        /// Between ``commitStarting()`` and ``writeEnded()``.
        var committing = false
        var answers: [Key: Answer] = [:]
    }

    private let state = NIOLockedValueBox(State())
    /// Most answers kept; past it, all are dropped (a cache, not an index: a scan of many ids
    /// must not grow it without bound).
    static let limit = 50_000

    /// What a read session uses: this cache, at the version it starts from, and whether a commit
    /// is under way then.
    var reading: (cache: ACLCache, version: UInt64, committing: Bool) {
        let (version, committing) = state.withLockedValue { ($0.version, $0.committing) }
        return (self, version, committing)
    }

    /// Whether no commit began since `version` was read.
    func unchanged(since version: UInt64) -> Bool {
        state.withLockedValue { $0.version == version }
    }

    func answer(_ key: Key) -> Answer? {
        state.withLockedValue { $0.answers[key] }
    }

    /// Keeps `answer`, read by a session that started at `version`, unless a write ended since.
    func remember(_ key: Key, _ answer: Answer, asOf version: UInt64) {
        state.withLockedValue { state in
            guard state.version == version else { return }
            if state.answers.count >= Self.limit { state.answers.removeAll(keepingCapacity: true) }
            state.answers[key] = answer
        }
    }

    /// A write transaction is about to commit: what readers learn from now on may be from either side of it.
    func commitStarting() {
        state.withLockedValue { state in
            state.version &+= 1
            state.committing = true
            state.answers.removeAll(keepingCapacity: true)
        }
    }

    /// A write transaction ended: nothing read before it is trusted after it.
    func writeEnded() {
        state.withLockedValue { state in
            state.version &+= 1
            state.committing = false
            state.answers.removeAll(keepingCapacity: true)
        }
    }
}
