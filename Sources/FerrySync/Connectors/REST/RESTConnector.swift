import Foundation

/// `rest+http(s)://[USER:PASSWORD@]HOST[:PORT]/PATH[?PARAMS]`: any JSON REST API (``RESTEndpoint``).
struct RESTConnector: Connector {
    var schemes: [String] { ["rest+http", "rest+https"] }
    var usage: [String] { ["rest+http(s)://HOST/PATH"] }

    func endpoint(_ url: String, options: EndpointOptions, context: ConnectorContext) throws(SyncError) -> any Endpoint {
        var options = options
        let http = String(url.dropFirst("rest+".count))
        guard var components = KintoConnector.components(http, options: &options) else {
            throw .badInput("\(ConnectorRegistry.redactedUserinfo(url)): not a valid URL")
        }
        guard components.fragment == nil else { throw .badInput("\(ConnectorRegistry.redactedUserinfo(url)): a REST endpoint takes no #fragment") }
        if components.path.isEmpty { components.path = "/" }
        return try RESTEndpoint(url: components.string ?? http, options: options, client: context.client)
    }
}
