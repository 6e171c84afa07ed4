import Foundation

/// `http(s)://[USER:PASSWORD@]HOST[:PORT]/v1/buckets/B/collections/C`: a Ferry or Kinto server (``KintoEndpoint``).
struct KintoConnector: Connector {
    var schemes: [String] { ["http", "https"] }
    var usage: [String] { ["http(s)://HOST/v1/buckets/B/collections/C"] }

    func endpoint(_ url: String, options: EndpointOptions, context: ConnectorContext) throws(SyncError) -> any Endpoint {
        var options = options
        guard var components = Self.components(url, options: &options) else {
            throw .badInput("\(ConnectorRegistry.redactedUserinfo(url)): not a valid URL")
        }
        guard components.query == nil, components.fragment == nil else {
            throw .badInput("\(ConnectorRegistry.redactedUserinfo(url)): a server endpoint takes no query or fragment")
        }
        var text = components.string ?? url
        while text.hasSuffix("/") { text.removeLast() }
        return try KintoEndpoint(url: text, options: options, client: context.client)
    }

    /// The URL's parts with any `USER:PASSWORD@` taken out into `options.auth` (unless the job
    /// gives credentials itself); nil when it is no URL with a host.
    static func components(_ url: String, options: inout EndpointOptions) -> URLComponents? {
        guard var components = URLComponents(string: url), let host = components.host, !host.isEmpty else { return nil }
        if let user = components.user {
            if options.auth == nil { options.auth = user + ":" + (components.password ?? "") }
            components.user = nil
            components.password = nil
        }
        return components
    }
}
