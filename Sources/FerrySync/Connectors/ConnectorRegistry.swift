import Foundation

/// Which ``Connector`` takes which URL scheme.
///
/// ```swift
/// let endpoint = try ConnectorRegistry.standard.endpoint("sqlite:app.db#users", options: options)
/// ```
public struct ConnectorRegistry: Sendable {
    private var connectors: [any Connector] = []
    private var byScheme: [String: Int] = [:]

    /// Every connector Ferry ships with. A new connector is one more line here.
    public static let standard = ConnectorRegistry([
        FileConnector(),
        SQLiteConnector(),
        PostgresConnector(),
        KintoConnector(),
        RESTConnector(),
    ])

    public init(_ connectors: [any Connector] = []) {
        for connector in connectors { register(connector) }
    }

    /// Adds a connector; for a scheme two connectors claim, the later one wins.
    public mutating func register(_ connector: any Connector) {
        connectors.append(connector)
        for scheme in connector.schemes { byScheme[scheme] = connectors.count - 1 }
    }

    /// The connector of a URL's scheme, if one is registered.
    public func connector(for url: String) -> (any Connector)? {
        guard let colon = url.firstIndex(of: ":") else { return nil }
        return byScheme[String(url[..<colon])].map { connectors[$0] }
    }

    /// The endpoint a URL names.
    public func endpoint(_ url: String, options: EndpointOptions, context: ConnectorContext = ConnectorContext()) throws(SyncError) -> any Endpoint {
        guard let connector = connector(for: url) else {
            let scheme = url.split(separator: ":", maxSplits: 1).first.map(String.init) ?? url
            throw .badInput("\(redacted(url)): unknown endpoint \"\(scheme)\"; use \(usage)")
        }
        return try connector.endpoint(url, options: options, context: context)
    }

    /// Every way of writing an endpoint, for messages: "file:PATH.jsonl, …, or rest+http(s)://HOST/PATH".
    public var usage: String {
        let all = connectors.flatMap(\.usage)
        guard let last = all.last else { return "no connector is registered" }
        return all.count == 1 ? last : all.dropLast().joined(separator: ", ") + " or " + last
    }

    /// The URL with any password replaced by `***`.
    public func redacted(_ url: String) -> String {
        if let connector = connector(for: url), let text = connector.redacted(url) { return text }
        return Self.redactedUserinfo(url)
    }

    /// `scheme://USER:PASSWORD@HOST/…` with the password as `***`.
    static func redactedUserinfo(_ text: String) -> String {
        guard let schemeEnd = text.range(of: "://") else { return text }
        let authorityEnd = text[schemeEnd.upperBound...].firstIndex(of: "/") ?? text.endIndex
        guard let at = text[schemeEnd.upperBound..<authorityEnd].lastIndex(of: "@") else { return text }
        let userinfo = text[schemeEnd.upperBound..<at]
        let user = userinfo.split(separator: ":", maxSplits: 1).first ?? ""
        return text[..<schemeEnd.upperBound] + user + ":***" + text[at...]
    }
}
