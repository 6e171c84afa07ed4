/// `sqlite:PATH#TABLE` (``SQLiteEndpoint``).
struct SQLiteConnector: Connector {
    var schemes: [String] { ["sqlite"] }
    var usage: [String] { ["sqlite:PATH#TABLE"] }

    func endpoint(_ url: String, options: EndpointOptions, context: ConnectorContext) throws(SyncError) -> any Endpoint {
        var rest = String(url.dropFirst("sqlite:".count))
        if rest.hasPrefix("//") { rest = String(rest.dropFirst(2)) }
        guard let hash = rest.lastIndex(of: "#") else {
            throw .badInput("\(url): name the table after #, e.g. sqlite:\(rest.isEmpty ? "app.db" : rest)#users")
        }
        let path = String(rest[..<hash])
        let table = String(rest[rest.index(after: hash)...])
        guard !path.isEmpty else { throw .badInput("\(url): no database path before #\(table)") }
        guard !table.isEmpty, !table.hasPrefix("sqlite_"), !table.hasPrefix("_ferry") else {
            throw .badInput("\(url): \"\(table)\" cannot be a table name here")
        }
        return SQLiteEndpoint(path: path, table: table, options: options)
    }
}
