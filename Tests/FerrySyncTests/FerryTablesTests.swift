import FerryCore
import FerryTestSupport
import Foundation
import GRDB
import Testing
@testable import FerrySync

/// Ferry's own tables in a target database (``FerryTables``): their version, the migration of a
/// database written by a Ferry from before versions, and the refusal of a newer one. The logic
/// alone, then through `ferry sync` into real SQLite files (PostgreSQL: `PostgresConnectorTests`).
@Suite struct FerryTablesTests {
    static let tables = FerryTables(dialect: .sqlite, place: "sqlite:t.db#users")

    /// The layout the probe finds from the answers a database gives (nil: no row).
    static func probe(_ answers: [String?]) -> (queries: [String], layout: FerryTables.Layout) {
        var probe = tables.probe()
        var queries: [String] = []
        var answer: String? = nil
        var remaining = answers[...]
        while let query = probe.next(answer) {
            queries.append(query.description)
            answer = remaining.popFirst() ?? nil
        }
        return (queries, probe.layout)
    }

    @Test func theProbeAsksForTheVersionOnlyWhereThereIsOne() {
        let meta = #"SELECT name FROM sqlite_master WHERE type = 'table' AND name = ? ["_ferry_meta"]"#
        let checkpoints = #"SELECT name FROM sqlite_master WHERE type = 'table' AND name = ? ["_ferry_checkpoints"]"#
        let version = #"SELECT value FROM _ferry_meta WHERE name = ? ["schema_version"]"#
        #expect(Self.probe([nil, nil]) == ([meta, checkpoints], .absent))
        #expect(Self.probe([nil, "_ferry_checkpoints"]) == ([meta, checkpoints], .version(0)))
        #expect(Self.probe(["_ferry_meta", "1"]) == ([meta, version], .version(1)))
        #expect(Self.probe(["_ferry_meta", "7"]) == ([meta, version], .version(7)))
        #expect(Self.probe(["_ferry_meta", nil]) == ([meta, version], .version(0)))
        #expect(Self.probe(["_ferry_meta", "one"]) == ([meta, version], .unreadable("one")))
        #expect(Self.probe(["_ferry_meta", "-1"]) == ([meta, version], .unreadable("-1")))
    }

    @Test func migrationsGoFromAnyOlderVersionToTheCurrentOneAndRefuseNewerOnes() throws {
        let tables = Self.tables
        #expect(tables.steps.count == FerryTables.currentVersion, "one list of statements per version")
        let setVersion = FerryTables.Statement(
            sql: "INSERT INTO _ferry_meta (name, value) VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET value = excluded.value",
            arguments: ["schema_version", String(FerryTables.currentVersion)])
        let all = tables.steps.flatMap { $0 } + [setVersion]
        #expect(try tables.migration(from: .absent) == all)
        #expect(try tables.migration(from: .version(0)) == all)
        #expect(try tables.migration(from: .version(FerryTables.currentVersion)) == [])
        // Version 1 is version 0's two tables, untouched, and the version row.
        #expect(all.map(\.sql).contains("CREATE TABLE IF NOT EXISTS _ferry_checkpoints (job TEXT PRIMARY KEY, cursor TEXT NOT NULL, updated_at TEXT NOT NULL)"))
        #expect(all.map(\.sql).contains("CREATE TABLE IF NOT EXISTS _ferry_tables (name TEXT PRIMARY KEY)"))

        let newer = FerryTables.currentVersion + 1
        let refusal = "sqlite:t.db#users: Ferry's tables in this database are at schema version \(newer), and this Ferry knows versions up to \(FerryTables.currentVersion): run a newer Ferry (nothing was changed)"
        #expect(throws: SyncError(.badInput, refusal)) { try tables.migration(from: .version(newer)) }
        #expect(throws: SyncError(.badInput, refusal)) { try tables.readCheckpoint(job: "j", layout: .version(newer)) }
        #expect(throws: SyncError(.badInput, refusal)) { try tables.clearCheckpoint(job: "j", layout: .version(newer)) }
        #expect(throws: SyncError.self) { try tables.migration(from: .unreadable("one")) }
        // Reads take every version up to the current one; with no tables there is no checkpoint.
        #expect(try tables.readCheckpoint(job: "j", layout: .version(0)) != nil)
        #expect(try tables.readCheckpoint(job: "j", layout: .absent) == nil)
        #expect(try tables.clearCheckpoint(job: "j", layout: .absent) == nil)
    }

    @Test func postgresNamesFerrysTablesInTheDatasSchema() throws {
        let tables = FerryTables(dialect: .postgres(schema: "crm"), place: "postgres://h/db#crm.users")
        #expect(tables.dialect.exists("_ferry_meta") == FerryTables.Statement(sql: "SELECT to_regclass($1)::text", arguments: [#""crm"._ferry_meta"#]))
        #expect(tables.saveCheckpoint(job: "j", cursor: .since(3)).sql.hasPrefix(#"INSERT INTO "crm"._ferry_checkpoints (job, cursor, updated_at) VALUES ($1, $2, now())"#))
        #expect(try tables.migration(from: .absent).first?.sql == #"CREATE TABLE IF NOT EXISTS "crm"._ferry_checkpoints (job text PRIMARY KEY, cursor text NOT NULL, updated_at timestamptz NOT NULL DEFAULT now())"#)
    }

    // MARK: SQLite, through `ferry sync`

    /// Ferry's tables as a Ferry from before versions made them, with job `old`'s checkpoint after
    /// the 600th row of `writeUsersTable`'s, and a table `users` Ferry made (without `address`).
    static let oldLayout = """
        CREATE TABLE _ferry_checkpoints (job TEXT PRIMARY KEY, cursor TEXT NOT NULL, updated_at TEXT NOT NULL);
        CREATE TABLE _ferry_tables (name TEXT PRIMARY KEY);
        INSERT INTO _ferry_checkpoints VALUES ('old', '{"field":1000059,"key":"u0000599"}', '2026-01-01 10:00:00');
        INSERT INTO _ferry_tables VALUES ('users');
        CREATE TABLE users (id TEXT PRIMARY KEY NOT NULL, username TEXT, age INTEGER, updated_at INTEGER);
        """

    static func execute(_ path: String, _ sql: String) throws {
        let queue = try DatabaseQueue(path: path)
        try queue.write { try $0.execute(sql: sql) }
        try queue.close()
    }

    static func texts(_ path: String, _ sql: String) throws -> [String] {
        let queue = try DatabaseQueue(path: path)
        defer { try? queue.close() }
        return try queue.read { try String.fetchAll($0, sql: sql) }
    }

    /// Ferry's tables' definitions and `_ferry_meta`'s rows.
    static func ferryTables(_ path: String) throws -> [String] {
        try texts(path, #"SELECT name || ': ' || sql FROM sqlite_master WHERE name LIKE '\_ferry%' ESCAPE '\' ORDER BY name"#)
            + texts(path, "SELECT name || '=' || value FROM _ferry_meta ORDER BY name")
    }

    static let incremental = ["sync", "sqlite:src.db#users", "sqlite:t.db#users", "--mode", "incremental", "--cursor-field", "updated_at", "--job", "old", "--json"]

    @Test func aDatabaseFromBeforeVersionsIsMigratedAndKeepsItsCheckpointAndTables() async throws {
        let dir = try TempDir()
        try writeUsersTable(dir.file("src.db"), count: 1000)
        try Self.execute(dir.file("t.db"), Self.oldLayout)

        let first = try await Ferry.run(Self.incremental, in: dir.path)
        #expect(first.status == 0, "\(first.stderr)")
        let report = try JSON.parse(first.stdout)
        // From the old checkpoint on; `address` grew a column, as only a table Ferry made does.
        #expect(report["cursorBefore"] == ["field": 1000059, "key": "u0000599"] && report["read"] == 400 && report["created"] == 400,
                "\(report.serialized())")
        #expect(try Self.texts(dir.file("t.db"), "SELECT count(address) FROM users") == ["400"])
        #expect(try Self.texts(dir.file("t.db"), "SELECT name FROM _ferry_tables") == ["users"])
        let checkpoints = try Self.texts(dir.file("t.db"), "SELECT job || ' ' || cursor FROM _ferry_checkpoints")
        #expect(checkpoints.count == 1 && checkpoints[0].hasPrefix(#"old {"field":1000099,"#), "\(checkpoints)")
        let migrated = try Self.ferryTables(dir.file("t.db"))
        #expect(migrated == [
            "_ferry_checkpoints: CREATE TABLE _ferry_checkpoints (job TEXT PRIMARY KEY, cursor TEXT NOT NULL, updated_at TEXT NOT NULL)",
            "_ferry_meta: CREATE TABLE _ferry_meta (name TEXT PRIMARY KEY, value TEXT NOT NULL)",
            "_ferry_tables: CREATE TABLE _ferry_tables (name TEXT PRIMARY KEY)",
            "schema_version=\(FerryTables.currentVersion)",
        ])

        // Once migrated, a run migrates nothing again.
        let second = try await Ferry.run(Self.incremental, in: dir.path)
        #expect(second.status == 0, "\(second.stderr)")
        #expect(try JSON.parse(second.stdout)["read"] == 0)
        #expect(try Self.ferryTables(dir.file("t.db")) == migrated)
        // And the migration itself, run again on the migrated database, has nothing to do.
        let rows = try Self.texts(dir.file("t.db"), "SELECT job || cursor || updated_at FROM _ferry_checkpoints")
        let again = try Self.migrateAgain(dir.file("t.db"))
        #expect(again.layout == .version(FerryTables.currentVersion) && again.statements == [])
        #expect(try Self.texts(dir.file("t.db"), "SELECT job || cursor || updated_at FROM _ferry_checkpoints") == rows)
    }

    /// The layout of Ferry's tables in a SQLite file, and the migration statements it runs from there.
    static func migrateAgain(_ path: String) throws -> (layout: FerryTables.Layout, statements: [FerryTables.Statement]) {
        let queue = try DatabaseQueue(path: path)
        defer { try? queue.close() }
        return try queue.write { db in
            let layout = try db.layout(of: tables)
            let statements = try tables.migration(from: layout)
            for statement in statements { try db.run(statement) }
            return (layout, statements)
        }
    }

    @Test(arguments: [["--mode", "incremental", "--cursor-field", "updated_at"], ["--mode", "full"], ["--mode", "incremental", "--cursor-field", "updated_at", "--reset"]])
    func aNewerVersionIsRefusedAndNothingChanges(mode: [String]) async throws {
        let dir = try TempDir()
        try writeUsersTable(dir.file("src.db"), count: 10)
        let newer = FerryTables.currentVersion + 1
        try Self.execute(dir.file("t.db"), Self.oldLayout + """
            CREATE TABLE _ferry_meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
            INSERT INTO _ferry_meta VALUES ('schema_version', '\(newer)');
            """)
        let bytes = fileBytes(dir.file("t.db"))

        let result = try await Ferry.run(["sync", "sqlite:src.db#users", "sqlite:t.db#users", "--job", "old"] + mode, in: dir.path)
        #expect(result.status == 2)
        #expect(result.stderr == """
            ferry: error: sqlite:t.db#users: Ferry's tables in this database are at schema version \(newer), and this Ferry knows versions \
            up to \(FerryTables.currentVersion): run a newer Ferry (nothing was changed)

            """, "\(result.stderr)")
        #expect(fileBytes(dir.file("t.db")) == bytes)
    }
}
