import GRDB
import NIOConcurrencyHelpers

/// Group commit for the SQLite writer: writes that arrive while another transaction runs wait
/// together and then share one transaction, each in a savepoint of its own, so N concurrent
/// writers pay one commit (one WAL append and lock round) instead of N.
///
/// What each write sees is unchanged: it runs alone on the writer connection, in arrival order;
/// its changes are undone when it throws (its savepoint, or the whole transaction when it ran
/// alone); and its caller hears of it only after the commit, so an answered write is in the WAL
/// (invariant 3) and timestamps keep commit order (invariant 2). If the commit fails, every write
/// of the group fails with that error: none of them is answered as done.
final class GroupCommit: Sendable {
    /// One write waiting for (or in) a group.
    protocol Job: AnyObject, Sendable {
        /// Runs the write inside the group's transaction (in a savepoint when `isolated`);
        /// returns whether it succeeded.
        func run(_ db: Database, isolated: Bool, pending: PendingTimestamps) -> Bool
        /// Tells the caller: its own outcome when the group committed (`error` nil), else `error`.
        func finish(_ error: (any Error)?)
    }

    /// The pool whose writer runs the next group (it changes when ``ReopeningPool`` opens the database again).
    private let writer: @Sendable () -> DatabasePool
    /// Runs just before each `COMMIT`.
    private let beforeCommit: @Sendable () -> Void
    /// Runs after each transaction, committed or not, before its writers hear of it.
    private let afterEach: @Sendable () -> Void
    private let state = NIOLockedValueBox<(pending: [any Job], draining: Bool)>(([], false))
    /// Most writes in one transaction (bounds how long the writer holds one transaction open).
    static let maxGroup = 256

    init(writer: @escaping @Sendable () -> DatabasePool, beforeCommit: @escaping @Sendable () -> Void = {},
         afterEach: @escaping @Sendable () -> Void = {}) {
        self.writer = writer
        self.beforeCommit = beforeCommit
        self.afterEach = afterEach
    }

    /// Queues `job`; the writer runs it with whatever else is waiting.
    func submit(_ job: any Job) {
        let start = state.withLockedValue { state -> Bool in
            state.pending.append(job)
            if state.draining { return false }
            state.draining = true
            return true
        }
        if start {
            writer().asyncWriteWithoutTransaction { [self] db in drain(db) }
        }
    }

    /// Runs groups until nothing waits.
    private func drain(_ db: Database) {
        while true {
            let jobs = state.withLockedValue { state -> [any Job] in
                let count = min(state.pending.count, Self.maxGroup)
                let taken = Array(state.pending.prefix(count))
                state.pending.removeFirst(count)
                if taken.isEmpty { state.draining = false }
                return taken
            }
            if jobs.isEmpty { return }
            let error = runGroup(jobs, db)
            afterEach()
            for job in jobs { job.finish(error) }
        }
    }

    /// One transaction for `jobs`; the error that undid all of them, or nil when they committed.
    private func runGroup(_ jobs: [any Job], _ db: Database) -> (any Error)? {
        do {
            try db.beginTransaction(.immediate)
        } catch {
            return error
        }
        let isolated = jobs.count > 1
        let pending = PendingTimestamps()
        var succeeded = false
        for job in jobs {
            succeeded = job.run(db, isolated: isolated, pending: pending)
            // Some SQLite errors (disk full, I/O) roll back the whole transaction: then the jobs
            // before this one are undone too, and the rest must not run outside a transaction.
            guard db.isInsideTransaction else {
                return StorageError.backend("SQLite write failed: the transaction was rolled back by an earlier error")
            }
        }
        do {
            if !isolated && !succeeded {
                try db.rollback()
            } else {
                try pending.store(db)
                beforeCommit()
                try db.commit()
            }
            return nil
        } catch {
            try? db.rollback()
            return error
        }
    }
}

/// A write of ``SQLiteStorage`` in a group: `body` on a session of the group's transaction.
///
/// With a ``StorageDeadline`` it does not start once the time is up, SQLite's progress handler
/// stops its statements then, and it keeps its changes only if it claims its commit in time:
/// else its savepoint (or the transaction, when it ran alone) is undone.
final class GroupedWrite<T: Sendable>: GroupCommit.Job, @unchecked Sendable {
    // Written by the writer thread in `run`, read by it in `finish`: no other thread touches it.
    private var outcome: Result<T, any Error>?
    private let body: @Sendable (any StorageSession) throws -> T
    private let deadline: StorageDeadline?
    private let continuation: CheckedContinuation<T, any Error>

    init(_ body: @escaping @Sendable (any StorageSession) throws -> T, deadline: StorageDeadline?,
         continuation: CheckedContinuation<T, any Error>) {
        self.body = body
        self.deadline = deadline
        self.continuation = continuation
    }

    func run(_ db: Database, isolated: Bool, pending: PendingTimestamps) -> Bool {
        if let deadline, deadline.isExpired {
            outcome = .failure(deadline.error)
            return false
        }
        let body = body
        let deadline = deadline
        let work = { () throws -> T in
            let value = try SQLiteStorage.stopping(db, at: deadline) { try body(SQLiteSession(db: db, pending: pending)) }
            if let deadline, !deadline.claim() { throw deadline.error }
            return value
        }
        do {
            outcome = .success(isolated ? try SQLiteSession.savepoint(db, pending, work) : try work())
            return true
        } catch {
            outcome = .failure(deadline?.isExpired == true ? deadline!.error : error)
            return false
        }
    }

    func finish(_ error: (any Error)?) {
        switch (error, outcome) {
        case (let error?, _): continuation.resume(throwing: SQLiteStorage.translate(error, "write"))
        case (nil, .success(let value)?): continuation.resume(returning: value)
        case (nil, .failure(let error)?): continuation.resume(throwing: SQLiteStorage.translate(error, "write"))
        case (nil, nil): continuation.resume(throwing: StorageError.backend("SQLite write failed: the write did not run"))
        }
    }
}
