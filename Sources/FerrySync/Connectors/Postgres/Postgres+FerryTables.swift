import PostgresNIO

// Ferry's own tables (``FerryTables``) in a PostgreSQL database: the dialect, and a session
// running their statements.

extension FerryTables.Dialect {
    /// Ferry's tables in `schema` (nil: the current schema), where the data's table is.
    static func postgres(schema: String?) -> Self {
        let name: @Sendable (String) -> String = { table in schema.map { PostgresEndpoint.quote($0) + "." + table } ?? table }
        return Self(
            parameter: { "$\($0)" },
            name: name,
            exists: { FerryTables.Statement(sql: "SELECT to_regclass($1)::text", arguments: [name($0)]) },
            text: "text",
            timestamp: "timestamptz NOT NULL DEFAULT now()",
            now: "now()")
    }
}

extension PostgresEndpointSession {
    /// Runs one of Ferry's statements; driver errors are left as they are.
    func run(_ statement: FerryTables.Statement) async throws {
        _ = try await query(statement.sql, statement.binds)
    }

    /// The first column of the first row, if there is one; driver errors are left as they are.
    func text(_ statement: FerryTables.Statement) async throws -> String? {
        try await query(statement.sql, statement.binds).first?.text(0)
    }

    /// Where Ferry's tables in this database stand; driver errors are left as they are.
    func layout(of tables: FerryTables) async throws -> FerryTables.Layout {
        var probe = tables.probe()
        var answer: String? = nil
        while let query = probe.next(answer) { answer = try await text(query) }
        return probe.layout
    }
}

extension FerryTables.Statement {
    /// The arguments as text parameters, `$1`, `$2`, ….
    var binds: PostgresBindings {
        var binds = PostgresBindings(capacity: arguments.count)
        for argument in arguments { binds.append(argument) }
        return binds
    }
}
