import GRDB

// Ferry's own tables (``FerryTables``) in a SQLite database: the dialect, and GRDB running
// their statements.

extension FerryTables.Dialect {
    static let sqlite = Self(
        parameter: { _ in "?" },
        name: { $0 },
        exists: { FerryTables.Statement(sql: "SELECT name FROM sqlite_master WHERE type = 'table' AND name = ?", arguments: [$0]) },
        text: "TEXT",
        timestamp: "TEXT NOT NULL",
        now: "datetime('now')")
}

extension Database {
    func run(_ statement: FerryTables.Statement) throws {
        try execute(sql: statement.sql, arguments: StatementArguments(statement.arguments))
    }

    /// The first column of the first row, if there is one.
    func text(_ statement: FerryTables.Statement) throws -> String? {
        try String.fetchOne(self, sql: statement.sql, arguments: StatementArguments(statement.arguments))
    }

    /// Where Ferry's tables in this database stand.
    func layout(of tables: FerryTables) throws -> FerryTables.Layout {
        var probe = tables.probe()
        var answer: String? = nil
        while let query = probe.next(answer) { answer = try text(query) }
        return probe.layout
    }
}
