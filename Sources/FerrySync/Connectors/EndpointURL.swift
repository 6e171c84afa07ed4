public import AsyncHTTPClient
import FerryPostgres
import Foundation

/// Turns an endpoint URL into a connector.
///
/// - `file:PATH.jsonl` (or `.ndjson`) and `file:PATH.csv`
/// - `sqlite:PATH#TABLE`
/// - `http(s)://[USER:PASSWORD@]HOST[:PORT]/v1/buckets/B/collections/C`
/// - `rest+http(s)://[USER:PASSWORD@]HOST[:PORT]/PATH[?PARAMS]`: any JSON REST API
/// - `postgres(ql)://USER:PASSWORD@HOST[:PORT]/DATABASE[?SETTINGS]#[SCHEMA.]TABLE` (``PostgresLocation``)
public enum EndpointURL {
    static let schemes = "file:PATH.jsonl, file:PATH.csv, sqlite:PATH#TABLE, postgres://USER:PASSWORD@HOST/DB#TABLE, http(s)://HOST/v1/buckets/B/collections/C or rest+http(s)://HOST/PATH"

    /// - Parameter client: the HTTP client server connectors use.
    public static func make(_ text: String, options: EndpointOptions, client: HTTPClient = .ferrySync) throws(SyncError) -> any Endpoint {
        var options = options
        if text.hasPrefix("file:") {
            var path = String(text.dropFirst(5))
            if path.hasPrefix("//") { path = String(path.dropFirst(2)) }
            guard !path.isEmpty else { throw .badInput("\(text): no path after file:") }
            let lower = path.lowercased()
            if lower.hasSuffix(".jsonl") || lower.hasSuffix(".ndjson") {
                return FileEndpoint(path: path, format: .jsonl, options: options)
            }
            if lower.hasSuffix(".csv") {
                return FileEndpoint(path: path, format: .csv, options: options)
            }
            throw .badInput("\(text): a file endpoint must end in .jsonl, .ndjson or .csv")
        }
        if text.hasPrefix("sqlite:") {
            var rest = String(text.dropFirst(7))
            if rest.hasPrefix("//") { rest = String(rest.dropFirst(2)) }
            guard let hash = rest.lastIndex(of: "#") else {
                throw .badInput("\(text): name the table after #, e.g. sqlite:\(rest.isEmpty ? "app.db" : rest)#users")
            }
            let path = String(rest[..<hash])
            let table = String(rest[rest.index(after: hash)...])
            guard !path.isEmpty else { throw .badInput("\(text): no database path before #\(table)") }
            guard !table.isEmpty, !table.hasPrefix("sqlite_"), !table.hasPrefix("_ferry") else {
                throw .badInput("\(text): \"\(table)\" cannot be a table name here")
            }
            return SQLiteEndpoint(path: path, table: table, options: options)
        }
        if text.hasPrefix("postgres://") || text.hasPrefix("postgresql://") {
            return PostgresEndpoint(location: try PostgresLocation(parsing: text, auth: options.auth), options: options)
        }
        if text.hasPrefix("rest+http://") || text.hasPrefix("rest+https://") {
            guard var components = URLComponents(string: String(text.dropFirst(5))), let host = components.host, !host.isEmpty else {
                throw .badInput("\(redacted(text)): not a valid URL")
            }
            if let user = components.user {
                if options.auth == nil { options.auth = user + ":" + (components.password ?? "") }
                components.user = nil
                components.password = nil
            }
            guard components.fragment == nil else { throw .badInput("\(redacted(text)): a REST endpoint takes no #fragment") }
            if components.path.isEmpty { components.path = "/" }
            return try RESTEndpoint(url: components.string ?? String(text.dropFirst(5)), options: options, client: client)
        }
        if text.hasPrefix("http://") || text.hasPrefix("https://") {
            guard var components = URLComponents(string: text), let host = components.host, !host.isEmpty else {
                throw .badInput("\(redacted(text)): not a valid URL")
            }
            if let user = components.user {
                if options.auth == nil { options.auth = user + ":" + (components.password ?? "") }
                components.user = nil
                components.password = nil
            }
            guard components.query == nil, components.fragment == nil else {
                throw .badInput("\(redacted(text)): a server endpoint takes no query or fragment")
            }
            var url = components.string ?? text
            while url.hasSuffix("/") { url.removeLast() }
            return try KintoEndpoint(url: url, options: options, client: client)
        }
        let scheme = text.split(separator: ":", maxSplits: 1).first.map(String.init) ?? text
        throw .badInput("\(redacted(text)): unknown endpoint \"\(scheme)\"; use \(schemes)")
    }

    /// The URL with any password replaced by `***`.
    ///
    /// In a `postgres://` URL the credentials end at the last `@`, so a password with an
    /// unencoded `/`, `?` or `#` is hidden all the same.
    public static func redacted(_ text: String) -> String {
        guard let schemeEnd = text.range(of: "://") else { return text }
        let scheme = text[..<schemeEnd.lowerBound]
        if scheme == "postgres" || scheme == "postgresql" { return PostgresAddress.redacted(text) }
        let authorityEnd = text[schemeEnd.upperBound...].firstIndex(of: "/") ?? text.endIndex
        guard let at = text[schemeEnd.upperBound..<authorityEnd].lastIndex(of: "@") else { return text }
        let userinfo = text[schemeEnd.upperBound..<at]
        let user = userinfo.split(separator: ":", maxSplits: 1).first ?? ""
        return text[..<schemeEnd.upperBound] + user + ":***" + text[at...]
    }
}
