import FerryPostgres

/// `postgres(ql)://USER:PASSWORD@HOST[:PORT]/DATABASE[?SETTINGS]#[SCHEMA.]TABLE` (``PostgresLocation``, ``PostgresEndpoint``).
struct PostgresConnector: Connector {
    var schemes: [String] { ["postgres", "postgresql"] }
    var usage: [String] { ["postgres://USER:PASSWORD@HOST/DB#TABLE"] }

    func endpoint(_ url: String, options: EndpointOptions, context: ConnectorContext) throws(SyncError) -> any Endpoint {
        PostgresEndpoint(location: try PostgresLocation(parsing: url, auth: options.auth), options: options)
    }

    /// The credentials end at the last `@`, so a password with an unencoded `/`, `?` or `#` is hidden all the same.
    func redacted(_ url: String) -> String? {
        PostgresAddress.redacted(url)
    }
}
