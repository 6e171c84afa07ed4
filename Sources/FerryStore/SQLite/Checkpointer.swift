import GRDB
import GRDBSQLite
import NIOConcurrencyHelpers

/// Checkpoints of the write-ahead log on a connection and thread of their own, so the single
/// writer does not stop to copy the log into the database (and sync it) every thousand pages.
///
/// SQLite's automatic checkpoint runs on the connection that commits: a tenth of the writer's
/// time in a push of records. Here the writer's connection reports each commit's log size
/// (``install(on:)``, SQLite's WAL hook, which replaces the automatic checkpoint); past
/// ``requestPages`` the checkpointer copies the log on its own connection, beside the writer (a
/// passive checkpoint takes no lock the writer needs). Past ``writerPages`` (the checkpointer
/// behind, or unable to finish) the writer checkpoints itself, as SQLite would have: the log stays
/// bounded either way.
final class Checkpointer: Sendable {
    private struct State {
        var connection: DatabaseQueue?
        var running = false
        var closed = false
        /// Checkpoints run here and by the writer itself (read by the tests).
        var counts = (checkpointer: 0, writer: 0)
    }

    private let state = NIOLockedValueBox(State())
    private let path: String
    private let busyTimeout: Double
    /// SQLite's own automatic checkpoint threshold.
    static let requestPages: Int32 = 1_000
    /// The log's bound: ten times the request, about 40 MB with 4-KiB pages.
    static let writerPages: Int32 = 10_000

    /// A checkpointer of the database at `path`, whose connection opens when it is first needed.
    init(path: String, busyTimeout: Double) {
        self.path = path
        self.busyTimeout = busyTimeout
    }

    /// Reports the commits of the writer connection `db` to this checkpointer.
    ///
    /// The hook holds a weak reference: a connection that outlives its storage checkpoints
    /// itself, as SQLite would. (That small reference object is never freed: one for each writer
    /// connection opened, which is one a storage, two when it is opened again read-write.)
    func install(on db: Database) {
        let target = Unmanaged.passRetained(HookTarget(self)).toOpaque()
        sqlite3_wal_hook(db.sqliteConnection, { target, connection, name, pages in
            guard pages >= Checkpointer.requestPages else { return SQLITE_OK }
            let checkpointer = Unmanaged<HookTarget>.fromOpaque(target!).takeUnretainedValue().checkpointer
            if pages < Checkpointer.writerPages, checkpointer?.request() == true { return SQLITE_OK }
            checkpointer?.countWriter()
            sqlite3_wal_checkpoint(connection, name)
            return SQLITE_OK
        }, target)
    }

    /// A passive checkpoint on the checkpointer's connection, unless one runs already. False when
    /// the checkpointer is closed or its connection cannot open: the writer checkpoints then.
    private func request() -> Bool {
        let (connection, taken) = state.withLockedValue { state -> (DatabaseQueue?, Bool) in
            if state.closed { return (nil, false) }
            if state.running { return (nil, true) }
            if state.connection == nil {
                var configuration = GRDB.Configuration()
                configuration.busyMode = .timeout(busyTimeout)
                state.connection = try? DatabaseQueue(path: path, configuration: configuration)
            }
            guard let connection = state.connection else { return (nil, false) }
            state.running = true
            state.counts.checkpointer += 1
            return (connection, true)
        }
        guard let connection else { return taken }
        connection.asyncWriteWithoutTransaction { [self] db in
            _ = try? db.checkpoint(.passive)
            state.withLockedValue { $0.running = false }
        }
        return true
    }

    private func countWriter() {
        state.withLockedValue { $0.counts.writer += 1 }
    }

    /// How many checkpoints ran on the checkpointer's connection and on the writer's.
    var counts: (checkpointer: Int, writer: Int) { state.withLockedValue { $0.counts } }

    /// Whether a checkpoint runs on the checkpointer's connection now.
    var isRunning: Bool { state.withLockedValue { $0.running } }

    /// Closes the checkpointer's connection once its checkpoint (if one runs) has finished; the
    /// writer checkpoints itself after this.
    func close() throws {
        let connection = state.withLockedValue { state -> DatabaseQueue? in
            state.closed = true
            defer { state.connection = nil }
            return state.connection
        }
        try connection?.close()
    }

    /// What the writer's hook holds: a weak reference to its checkpointer.
    private final class HookTarget {
        weak var checkpointer: Checkpointer?
        init(_ checkpointer: Checkpointer) { self.checkpointer = checkpointer }
    }
}
