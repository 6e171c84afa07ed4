/// `file:PATH.jsonl` (or `.ndjson`) and `file:PATH.csv` (``FileEndpoint``).
struct FileConnector: Connector {
    var schemes: [String] { ["file"] }
    var usage: [String] { ["file:PATH.jsonl", "file:PATH.csv"] }

    func endpoint(_ url: String, options: EndpointOptions, context: ConnectorContext) throws(SyncError) -> any Endpoint {
        var path = String(url.dropFirst("file:".count))
        if path.hasPrefix("//") { path = String(path.dropFirst(2)) }
        guard !path.isEmpty else { throw .badInput("\(url): no path after file:") }
        let lower = path.lowercased()
        if lower.hasSuffix(".jsonl") || lower.hasSuffix(".ndjson") {
            return FileEndpoint(path: path, format: .jsonl, options: options)
        }
        if lower.hasSuffix(".csv") {
            return FileEndpoint(path: path, format: .csv, options: options)
        }
        throw .badInput("\(url): a file endpoint must end in .jsonl, .ndjson or .csv")
    }
}
