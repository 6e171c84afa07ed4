public import FerryCore
public import Foundation
import GRDB
import GRDBSQLite

/// The engine's local state: each job's checkpoint and the history of its runs, in a SQLite
/// file (`.ferry/state.db` by default).
public final class StateStore {
    let queue: DatabaseQueue
    public let path: String

    /// Opens (creating if needed) the state database at `path`.
    /// - Parameter forWriting: false for a command that only reads it (`ferry status`): a state
    ///   database in a read-only folder is then read as it is; a run needs to write, so its open
    ///   fails at once, naming the folder, rather than at its first checkpoint.
    public init(path: String, forWriting: Bool = true) throws(SyncError) {
        self.path = path
        let folder = (path as NSString).deletingLastPathComponent
        if !folder.isEmpty && !FileSystem.exists(folder) { try FileSystem.createDirectory(folder) }
        do {
            var config = Configuration()
            config.busyMode = .timeout(10)
            // SQLite's default synchronous mode: a commit here (a checkpoint, two-way sync's bases,
            // the run history) survives a power cut. NORMAL saved a few fsyncs a run (a no-op
            // incremental run waited on about ten, four of them here) but could take back two-way
            // bases, which nothing showed safe; the per-page save is gone, so few commits are left.
            queue = try DatabaseQueue(path: path, configuration: config)
            // SQLite opens a file it may not write read-only, and only a write would then fail.
            if forWriting, queue.inDatabase({ sqlite3_db_readonly($0.sqliteConnection, "main") == 1 }) {
                throw SyncError(.io, "cannot open the state database \(path) for writing: SQLite could only open it read-only (\(WritableFolder.problem(for: path) ?? "the file or its file system is read-only"))")
            }
            try Self.migrate(queue)
        } catch let error as SyncError {
            throw error
        } catch let error as DatabaseError {
            let why = WritableFolder.problem(for: path).map { " (\($0))" } ?? ""
            throw SyncError(.io, "cannot open the state database \(path): \(error.message ?? "\(error)")\(why)")
        } catch {
            throw SyncError(.io, "cannot open the state database \(path): \(error)")
        }
    }

    private static func migrate(_ queue: DatabaseQueue) throws {
        try queue.writeWithoutTransaction { db in
            try db.execute(sql: "PRAGMA journal_mode = WAL")
            try db.execute(sql: """
                CREATE TABLE IF NOT EXISTS checkpoints (
                    job TEXT PRIMARY KEY, source TEXT NOT NULL, target TEXT NOT NULL,
                    cursor TEXT NOT NULL, updated_at TEXT NOT NULL);
                CREATE TABLE IF NOT EXISTS runs (
                    id INTEGER PRIMARY KEY, job TEXT NOT NULL, mode TEXT NOT NULL,
                    started_at TEXT NOT NULL, ended_at TEXT NOT NULL, outcome TEXT NOT NULL, report TEXT NOT NULL);
                CREATE INDEX IF NOT EXISTS runs_job ON runs (job, id);
                CREATE TABLE IF NOT EXISTS two_way_base (
                    job TEXT NOT NULL, key TEXT NOT NULL, hash TEXT NOT NULL,
                    version_a INTEGER, version_b INTEGER, PRIMARY KEY (job, key)) WITHOUT ROWID;
                CREATE TABLE IF NOT EXISTS conflicts (
                    id INTEGER PRIMARY KEY, job TEXT NOT NULL, key TEXT NOT NULL, key_field TEXT NOT NULL, status TEXT NOT NULL,
                    a TEXT, b TEXT, a_hash TEXT, b_hash TEXT, detected_at TEXT NOT NULL,
                    resolution TEXT, resolution_hash TEXT, taken TEXT, resolved_at TEXT);
                CREATE UNIQUE INDEX IF NOT EXISTS conflicts_open ON conflicts (job, key) WHERE status != 'settled';
                CREATE TABLE IF NOT EXISTS job_states (
                    id INTEGER PRIMARY KEY, job TEXT NOT NULL, state TEXT NOT NULL,
                    since TEXT NOT NULL, until TEXT NOT NULL, intervals INTEGER NOT NULL, interval_seconds REAL NOT NULL);
                CREATE INDEX IF NOT EXISTS job_states_job ON job_states (job, id);
                """)
        }
    }

    public func cursor(job: String) throws -> Cursor? {
        let text = try queue.read { db in
            try String.fetchOne(db, sql: "SELECT cursor FROM checkpoints WHERE job = ?", arguments: [job])
        }
        guard let text else { return nil }
        guard let json = try? JSON.parse(text), let cursor = Cursor(json: json) else {
            throw SyncError(.badInput, "the checkpoint of job \(job) in \(path) is unreadable; rerun with --reset")
        }
        return cursor
    }

    public func save(job: String, source: String, target: String, cursor: Cursor) throws {
        try queue.write { db in
            try db.execute(sql: """
                INSERT INTO checkpoints (job, source, target, cursor, updated_at) VALUES (?, ?, ?, ?, ?)
                ON CONFLICT(job) DO UPDATE SET source = excluded.source, target = excluded.target,
                    cursor = excluded.cursor, updated_at = excluded.updated_at
                """, arguments: [job, source, target, cursor.json.serialized(), Self.now()])
        }
    }

    public func reset(job: String) throws {
        try queue.write { db in try db.execute(sql: "DELETE FROM checkpoints WHERE job = ?", arguments: [job]) }
    }

    public func recordRun(job: String, mode: String, startedAt: Date, outcome: String, report: JSON) throws {
        try queue.write { db in
            try db.execute(
                sql: "INSERT INTO runs (job, mode, started_at, ended_at, outcome, report) VALUES (?, ?, ?, ?, ?, ?)",
                arguments: [job, mode, Self.format(startedAt), Self.now(), outcome, report.serialized()])
        }
    }

    /// The last `limit` runs (of one job, when given), newest first: (job, mode, started, ended, outcome, report).
    public func runs(limit: Int = 20, job: String? = nil) throws -> [(job: String, mode: String, startedAt: String, endedAt: String, outcome: String, report: String)] {
        try queue.read { db in
            let sql = "SELECT job, mode, started_at, ended_at, outcome, report FROM runs" + (job == nil ? "" : " WHERE job = ?") + " ORDER BY id DESC LIMIT ?"
            let arguments: StatementArguments = job.map { [$0, limit] } ?? [limit]
            return try Row.fetchAll(db, sql: sql, arguments: arguments).map { ($0[0], $0[1], $0[2], $0[3], $0[4], $0[5]) }
        }
    }

    /// Records the state a job was seen in at the end of one interval of `seconds`: the last
    /// row of the job grows by one interval when the state and interval are the same, else a row starts.
    /// One row per run of a state keeps months of one-minute intervals small.
    public func recordState(job: String, state: SyncHealthState, intervalSeconds: Double, at date: Date = Date()) throws {
        let at = Self.format(date)
        try queue.write { db in
            let last = try Row.fetchOne(db, sql: "SELECT id, state, interval_seconds FROM job_states WHERE job = ? ORDER BY id DESC LIMIT 1", arguments: [job])
            if let last, last[1] as String == state.rawValue, last[2] as Double == intervalSeconds {
                try db.execute(sql: "UPDATE job_states SET intervals = intervals + 1, until = ? WHERE id = ?", arguments: [at, last[0] as Int64])
            } else {
                try db.execute(sql: "INSERT INTO job_states (job, state, since, until, intervals, interval_seconds) VALUES (?, ?, ?, ?, 1, ?)",
                               arguments: [job, state.rawValue, at, at, intervalSeconds])
            }
        }
    }

    /// A job's recorded states, oldest first, as runs of one state; and the interval of the last run.
    public func stateHistory(job: String) throws -> (history: [(state: SyncHealthState, intervals: Int)], intervalSeconds: Double?) {
        try queue.read { db in
            let rows = try Row.fetchAll(db, sql: "SELECT state, intervals, interval_seconds FROM job_states WHERE job = ? ORDER BY id", arguments: [job])
            let history = rows.compactMap { row in SyncHealthState(rawValue: row[0]).map { (state: $0, intervals: row[1] as Int) } }
            return (history, rows.last.map { $0[2] as Double })
        }
    }

    /// The jobs with recorded states, by name.
    public func jobsWithStates() throws -> [String] {
        try queue.read { db in try String.fetchAll(db, sql: "SELECT DISTINCT job FROM job_states ORDER BY job") }
    }

    static func now() -> String { format(Date()) }
    /// ISO 8601 with milliseconds (`2026-12-04T22:33:05.054Z`). A format style, not an
    /// `ISO8601DateFormatter` made per call: that was 6 % of a full read saving a checkpoint per page.
    static func format(_ date: Date) -> String { date.formatted(timeFormat) }
    private static let timeFormat = Date.ISO8601FormatStyle(includingFractionalSeconds: true)
}

/// Records a target refused (or a transform could not handle), one JSON object per line.
final class DeadLetterFile {
    let path: String
    private var handle: FileHandle?
    private(set) var count = 0

    init(path: String) { self.path = path }

    func append(job: String, key: String?, record: JSON?, reason: String) throws {
        if handle == nil {
            let folder = (path as NSString).deletingLastPathComponent
            if !folder.isEmpty && !FileSystem.exists(folder) { try FileSystem.createDirectory(folder) }
            if !FileSystem.exists(path) { FileManager.default.createFile(atPath: path, contents: nil) }
            guard let h = FileHandle(forWritingAtPath: path) else {
                throw SyncError(.io, "cannot write the dead-letter file \(path)")
            }
            h.seekToEndOfFile()
            handle = h
        }
        var line: [String: JSON] = ["job": .string(job), "reason": .string(reason), "at": .string(StateStore.now())]
        if let key { line["key"] = .string(key) }
        if let record { line["record"] = record }
        var bytes = JSON.object(line).serializedBytes()
        bytes.append(UInt8(ascii: "\n"))
        handle!.write(Data(bytes))
        count += 1
    }

    func close() {
        try? handle?.synchronize()
        try? handle?.close()
        handle = nil
    }
}
