import FerryCore
import Foundation
import GRDB
import GRDBSQLite
import Logging
import NIOConcurrencyHelpers
import NIOPosix

/// The storage's `DatabasePool`, opened again once its folder is writable when SQLite could only
/// open it read-only (its folder or file system was read-only when the server started): writes
/// then resume by themselves, without a restart.
///
/// Only the write path asks (``reopenIfDue()``), at most once a second and only while the pool is
/// read-only; a read just takes the current pool (an uncontended lock). SQLite shares a file's
/// shared-memory index among all the connections of a process, read-only as the first of them
/// opened it, so the old pool is closed before the new one opens: reads in flight finish first
/// (GRDB's close waits for them), and a read that finds the old pool closed waits for the new
/// one (``reopened()``) and runs again there. Writes that arrive meanwhile fail as every write did
/// while the folder was read-only (503), and their clients' retries reach the new writer.
final class ReopeningPool: Sendable {
    private struct State {
        var pool: DatabasePool
        /// The read connections (``Readers``), closed and opened again with the pool.
        var readers: Readers
        var readOnly: Bool
        var lastTry: ContinuousClock.Instant
        /// While the pool is being opened again: the reads waiting for it (nil otherwise).
        var waiting: [CheckedContinuation<Void, Never>]?
    }

    private let state: NIOLockedValueBox<State>
    private let path: String
    private let configuration: GRDB.Configuration
    private let logger: Logger
    /// The shortest time between two tries to open a read-only pool again.
    static let interval: Duration = .seconds(1)

    /// Opens (creating if needed) and migrates the database at `path`.
    init(path: String, configuration: GRDB.Configuration, logger: Logger) throws {
        self.path = path
        self.configuration = configuration
        self.logger = logger
        let pool = try Self.open(path, configuration)
        let readOnly = Self.isReadOnly(pool)
        if readOnly {
            logger.warning("the SQLite database was opened read-only: writes are refused until its folder is writable", metadata: ["ferry.path": "\(path)"])
        }
        state = NIOLockedValueBox(State(pool: pool, readers: Readers(path: path, configuration: configuration), readOnly: readOnly,
                                        lastTry: .now - Self.interval, waiting: nil))
    }

    /// The pool to write with now.
    var current: DatabasePool { state.withLockedValue { $0.pool } }

    /// The connections to read with now.
    var readers: Readers { state.withLockedValue { $0.readers } }

    /// Closes the pool, then the readers. In that order, as GRDB's pool closes its writer before
    /// its readers: the last connection to close is then a reader, which leaves the write-ahead
    /// log and its index in place, and a server started again on a folder made read-only meanwhile
    /// can open the database (SQLite opens a WAL database read-only only when both files exist).
    func close() throws {
        let (pool, readers) = state.withLockedValue { ($0.pool, $0.readers) }
        try pool.close()
        try readers.close()
    }

    /// Whether SQLite could only open the database read-only (and it has not been opened again since).
    var isReadOnly: Bool { state.withLockedValue { $0.readOnly } }

    /// When the pool is read-only, its folder (and file) writable now, and the last try a second
    /// ago or more: closes the pool and opens the database again, read-write, for every read and
    /// write after this.
    func reopenIfDue() async {
        let old = state.withLockedValue { state -> (pool: DatabasePool, readers: Readers)? in
            guard state.readOnly, state.waiting == nil, ContinuousClock.now - state.lastTry >= Self.interval else { return nil }
            state.lastTry = .now
            guard WritableFolder.problem(for: self.path) == nil else { return nil }
            state.waiting = []
            return (state.pool, state.readers)
        }
        guard let old else { return }
        let (path, configuration) = (path, configuration)
        let reopened: Result<(pool: DatabasePool, readOnly: Bool), any Error>
        do {
            // Closing waits for the reads in flight, opening and migrating block on the file:
            // off Swift's cooperative threads.
            reopened = .success(try await NIOThreadPool.singleton.runIfActive {
                try old.pool.close()
                try old.readers.close()
                let pool = try Self.open(path, configuration)
                return (pool, Self.isReadOnly(pool))
            })
        } catch {
            reopened = .failure(error)
        }
        let waiting = state.withLockedValue { state -> [CheckedContinuation<Void, Never>] in
            if case .success(let new) = reopened {
                state.pool = new.pool
                state.readers = Readers(path: path, configuration: configuration)
                state.readOnly = new.readOnly
            }
            defer { state.waiting = nil }
            return state.waiting ?? []
        }
        for read in waiting { read.resume() }
        switch reopened {
        case .success(let new) where !new.readOnly:
            logger.notice("the SQLite database's folder is writable again: writes resume", metadata: ["ferry.path": "\(path)"])
        case .success: break
        case .failure(let error):
            // The old pool may be closed: reads fail (503) until a write's next try opens it.
            logger.error("the SQLite database's folder is writable again, but opening it failed: \(error)", metadata: ["ferry.path": "\(path)"])
        }
    }

    /// Whether the pool is being opened again now.
    var isReopening: Bool { state.withLockedValue { $0.waiting != nil } }

    /// Returns once the pool is not being opened again (at once, nearly always).
    func reopened() async {
        await withCheckedContinuation { (read: CheckedContinuation<Void, Never>) in
            let now = state.withLockedValue { state -> Bool in
                guard state.waiting != nil else { return true }
                state.waiting!.append(read)
                return false
            }
            if now { read.resume() }
        }
    }

    /// Whether `error` is GRDB's answer from a pool that was closed (by ``reopenIfDue()``).
    static func isClosed(_ error: any Error) -> Bool {
        guard let error = error as? DatabaseError else { return false }
        return error.resultCode == closedError.resultCode && error.message == closedError.message
    }

    /// GRDB's answer from a closed connection (``Readers`` answers with it too, once closed).
    static let closedError = DatabaseError(resultCode: .SQLITE_MISUSE, message: "Connection is closed")

    private static func open(_ path: String, _ configuration: GRDB.Configuration) throws -> DatabasePool {
        let pool = try DatabasePool(path: path, configuration: configuration)
        let applied = try pool.read { db in try SQLiteStorage.migrator.appliedIdentifiers(db) }
        try SQLiteStorage.migrator.migrate(pool)
        // v6 rebuilt the objects table of a database an older Ferry made: the old table's pages
        // are free inside the file, which would stay larger than before until they were written
        // again. Once, right after it, the file is rewritten without them, and the log that
        // rewrite filled (the whole database again) is emptied and cut back to nothing.
        if applied.contains("v1") && !applied.contains(SQLiteStorage.parentNumbers) {
            try pool.vacuum()
            _ = try pool.writeWithoutTransaction { db in try db.checkpoint(.truncate) }
        }
        return pool
    }

    /// Whether the pool's writer connection could only open the main database read-only.
    private static func isReadOnly(_ pool: DatabasePool) -> Bool {
        pool.writeWithoutTransaction { db in sqlite3_db_readonly(db.sqliteConnection, "main") == 1 }
    }
}
