import FerryCore

/// The tables Ferry keeps in a SQL target's database, and what they mean, once for every SQL
/// connector; a ``Dialect`` only says how its SQL spells parameters, names and types, and each
/// connector runs the ``Statement``s this type hands it (no I/O here).
///
/// - `_ferry_meta (name, value)`: the row `schema_version` is the layout of Ferry's tables in
///   this database (``currentVersion``).
/// - `_ferry_checkpoints (job, cursor, updated_at)`: each job's cursor, written in the
///   transaction of the batch it follows.
/// - `_ferry_tables (name)`: the tables Ferry created, which may grow a column for a new field.
///
/// A database written by a Ferry from before versions has no `_ferry_meta` (version 0). The
/// first batch written migrates it (``migration(from:)``), in that batch's transaction, to the
/// current version; reads (a checkpoint, `--reset`) take every version up to the current one
/// (a version that changes `_ferry_checkpoints` must make them read the older layouts too).
/// A version newer than this Ferry knows is refused before anything is changed.
///
/// Versions:
/// - 0: `_ferry_checkpoints` and `_ferry_tables`, no version row.
/// - 1: the same, plus `_ferry_meta` saying `schema_version` 1.
struct FerryTables: Sendable {
    /// A statement and its text parameters.
    struct Statement: Sendable, Equatable, CustomStringConvertible {
        var sql: String
        var arguments: [String] = []
        var description: String { arguments.isEmpty ? sql : "\(sql) \(arguments)" }
    }

    /// How one SQL dialect writes what Ferry's tables need.
    struct Dialect: Sendable {
        /// The `n`th parameter, from 1: `?` or `$n`.
        var parameter: @Sendable (Int) -> String
        /// One of Ferry's tables as a statement names it (on PostgreSQL, in the data's schema).
        var name: @Sendable (String) -> String
        /// A query with one row (any text) if the named table of Ferry's exists, none if not.
        var exists: @Sendable (String) -> Statement
        /// The type of a text column.
        var text: String
        /// The definition of `_ferry_checkpoints.updated_at` after its name.
        var timestamp: String
        /// The time now, as `updated_at` stores it.
        var now: String
    }

    /// Where a database's tables of Ferry's stand.
    enum Layout: Equatable, Sendable {
        /// None of them (a database Ferry never wrote to).
        case absent
        /// The layout of that version (0: from before versions, without `_ferry_meta`).
        case version(Int)
        /// `_ferry_meta` holds this, which is no version.
        case unreadable(String)
    }

    static let meta = "_ferry_meta"
    static let checkpoints = "_ferry_checkpoints"
    static let owned = "_ferry_tables"
    /// The name of the version row in `_ferry_meta`.
    static let versionName = "schema_version"

    /// The version of Ferry's tables this Ferry writes.
    static let currentVersion = 1

    let dialect: Dialect
    /// The target, as error messages name it.
    let place: String

    private var checkpoints: String { dialect.name(Self.checkpoints) }
    private var owned: String { dialect.name(Self.owned) }
    private var meta: String { dialect.name(Self.meta) }
    private func p(_ n: Int) -> String { dialect.parameter(n) }

    // MARK: versions

    /// The statements of each version (one entry per version, ``currentVersion`` in all), run
    /// after those of the versions before: `[0]` makes version 1 of a database with no tables of
    /// Ferry's or with those of version 0 (whose two tables it leaves as they are).
    var steps: [[Statement]] {
        let text = dialect.text
        return [
            [
                Statement(sql: "CREATE TABLE IF NOT EXISTS \(checkpoints) (job \(text) PRIMARY KEY, cursor \(text) NOT NULL, updated_at \(dialect.timestamp))"),
                Statement(sql: "CREATE TABLE IF NOT EXISTS \(owned) (name \(text) PRIMARY KEY)"),
                Statement(sql: "CREATE TABLE IF NOT EXISTS \(meta) (name \(text) PRIMARY KEY, value \(text) NOT NULL)"),
            ],
        ]
    }

    /// Finds the ``Layout`` with up to two queries, each chosen by the answer to the one before.
    struct Probe: Sendable {
        private enum Stage: Sendable { case start, meta, checkpoints, version, done }
        private var stage = Stage.start
        private let tables: FerryTables
        /// What the queries found (once ``next(_:)`` returned nil).
        private(set) var layout = Layout.absent

        init(_ tables: FerryTables) { self.tables = tables }

        /// The next query to fetch one text with, given the answer to the one before (ignored at
        /// the first call; nil: no row), or nil once ``layout`` is known.
        mutating func next(_ answer: String?) -> Statement? {
            switch stage {
            case .start:
                stage = .meta
                return tables.dialect.exists(FerryTables.meta)
            case .meta:
                if answer != nil {
                    stage = .version
                    return Statement(sql: "SELECT value FROM \(tables.meta) WHERE name = \(tables.p(1))", arguments: [FerryTables.versionName])
                }
                stage = .checkpoints
                return tables.dialect.exists(FerryTables.checkpoints)
            case .checkpoints:
                stage = .done
                layout = answer == nil ? .absent : .version(0)
                return nil
            case .version:
                stage = .done
                // No row in a `_ferry_meta` (emptied by hand): the tables are taken as version 0's.
                layout = answer.map { text in Int(text).flatMap { $0 >= 0 ? .version($0) : nil } ?? .unreadable(text) } ?? .version(0)
                return nil
            case .done:
                return nil
            }
        }
    }

    func probe() -> Probe { Probe(self) }

    /// Refuses a layout this Ferry cannot read or write: a newer version, or no version at all.
    func check(_ layout: Layout) throws(SyncError) {
        switch layout {
        case .absent:
            return
        case .version(let version):
            guard version > Self.currentVersion else { return }
            throw SyncError(.badInput, """
                \(place): Ferry's tables in this database are at schema version \(version), and this Ferry knows versions up to \
                \(Self.currentVersion): run a newer Ferry (nothing was changed)
                """)
        case .unreadable(let text):
            throw SyncError(.badInput, """
                \(place): the schema version of Ferry's tables in this database is unreadable (\(Self.meta) says \
                \(Self.versionName) is "\(text)"): set it to a version, or drop \(Self.meta) to migrate from version 0 (nothing was changed)
                """)
        }
    }

    /// The statements that bring Ferry's tables to ``currentVersion``, to run in one transaction
    /// (none when they are there already).
    func migration(from layout: Layout) throws(SyncError) -> [Statement] {
        try check(layout)
        let from: Int
        switch layout {
        case .version(let version): from = version
        case .absent, .unreadable: from = 0
        }
        guard from < Self.currentVersion else { return [] }
        return steps[from..<Self.currentVersion].flatMap { $0 } + [
            Statement(sql: "INSERT INTO \(meta) (name, value) VALUES (\(p(1)), \(p(2))) ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                      arguments: [Self.versionName, String(Self.currentVersion)]),
        ]
    }

    // MARK: checkpoints

    /// The query of `job`'s checkpoint (nil: there is no checkpoint table, so no checkpoint).
    func readCheckpoint(job: String, layout: Layout) throws(SyncError) -> Statement? {
        try check(layout)
        guard layout != .absent else { return nil }
        return Statement(sql: "SELECT cursor FROM \(checkpoints) WHERE job = \(p(1))", arguments: [job])
    }

    /// The cursor a checkpoint's text holds (nil: no checkpoint).
    func cursor(_ text: String?, job: String) throws(SyncError) -> Cursor? {
        guard let text else { return nil }
        guard let json = try? JSON.parse(text), let cursor = Cursor(json: json) else {
            throw SyncError(.badInput, "\(place): the checkpoint of job \(job) is unreadable (\(text)); rerun with --mode full or --reset")
        }
        return cursor
    }

    /// Records `cursor` as `job`'s checkpoint (in the transaction of the batch it follows).
    func saveCheckpoint(job: String, cursor: Cursor) -> Statement {
        Statement(sql: """
            INSERT INTO \(checkpoints) (job, cursor, updated_at) VALUES (\(p(1)), \(p(2)), \(dialect.now)) \
            ON CONFLICT (job) DO UPDATE SET cursor = excluded.cursor, updated_at = excluded.updated_at
            """, arguments: [job, cursor.json.serialized()])
    }

    /// Forgets `job`'s checkpoint (`--reset`; nil: there is no checkpoint table).
    func clearCheckpoint(job: String, layout: Layout) throws(SyncError) -> Statement? {
        try check(layout)
        guard layout != .absent else { return nil }
        return Statement(sql: "DELETE FROM \(checkpoints) WHERE job = \(p(1))", arguments: [job])
    }

    // MARK: tables Ferry made

    /// Records that Ferry created `table` (in the transaction that created it).
    func recordOwned(_ table: String) -> Statement {
        Statement(sql: "INSERT INTO \(owned) (name) VALUES (\(p(1))) ON CONFLICT DO NOTHING", arguments: [table])
    }

    /// A query with a row if Ferry created `table`.
    func findOwned(_ table: String) -> Statement {
        Statement(sql: "SELECT name FROM \(owned) WHERE name = \(p(1))", arguments: [table])
    }
}
