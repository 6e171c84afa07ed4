public import AsyncHTTPClient

/// A kind of endpoint, chosen by the scheme of its URL: `file:`, `sqlite:`, `postgres://`, …
///
/// A connector turns a URL into an ``Endpoint``. The engine knows endpoints only through
/// ``Endpoint`` and ``TargetWriter`` and the capabilities an endpoint declares by conforming
/// to them (``RetryingEndpoint``, ``ValidatingSource``, ``ByteCountingSource``,
/// ``DeletingChangeFeed``, ``ChangeWatching``, ``ReconcilingEndpoint``, ``KeyOrderedReading``,
/// ``AttachmentSource``, ``AttachmentReceiving``). Adding one is a folder under `Connectors/` and
/// one line in ``ConnectorRegistry/standard`` (docs/connectors.md shows it by example).
///
/// ```swift
/// struct SQLiteConnector: Connector {
///     var schemes: [String] { ["sqlite"] }
///     var usage: [String] { ["sqlite:PATH#TABLE"] }
///     func endpoint(_ url: String, options: EndpointOptions, context: ConnectorContext) throws(SyncError) -> any Endpoint { … }
/// }
/// ```
public protocol Connector: Sendable {
    /// The URL schemes this connector takes: what comes before the first `:` (`rest+https`).
    var schemes: [String] { get }

    /// How its URLs are written, for the message that lists what Ferry takes.
    var usage: [String] { get }

    /// The endpoint a URL names, checked as far as can be without connecting.
    /// - Parameters:
    ///   - url: the whole URL, scheme included.
    ///   - options: the job's key field, credentials and settings of this side.
    ///   - context: what the engine shares with every endpoint (the HTTP client).
    func endpoint(_ url: String, options: EndpointOptions, context: ConnectorContext) throws(SyncError) -> any Endpoint

    /// The URL with any secret hidden, for messages and reports; nil: the usual rule
    /// (the password of `scheme://USER:PASSWORD@HOST` becomes `***`).
    func redacted(_ url: String) -> String?
}

extension Connector {
    public func redacted(_ url: String) -> String? { nil }
}

/// What the engine gives every connector.
public struct ConnectorContext: Sendable {
    /// The HTTP client of server and API endpoints.
    public var client: HTTPClient

    public init(client: HTTPClient = .ferrySync) {
        self.client = client
    }
}

// MARK: - Capabilities

/// An endpoint that tries requests again (an HTTP API): how often it did, for the report.
protocol RetryingEndpoint: Endpoint {
    /// Requests tried again since the endpoint was made.
    var retries: Int { get }
}

/// A source that can be checked whole before a run writes anything (a file: a malformed line
/// stops the run before the target is touched or created).
protocol ValidatingSource: Endpoint {
    func validate() async throws
}

/// A source that knows how many bytes its last read took (a file), for the report.
protocol ByteCountingSource: Endpoint {
    var bytesRead: Int { get }
}

/// A source whose ``Endpoint/readChanges(after:batchSize:)`` also reports deletes (a
/// server's tombstones). Two-way runs read only such a side incrementally; any other side is
/// read whole each run, since a deleted row would not show among its changes.
protocol DeletingChangeFeed: Endpoint {}

/// A source whose changes can be watched as they happen, for `--follow`.
protocol ChangeWatching: Endpoint {
    /// The feeds the source offers, best first; nil when it could not be asked (`--follow` then polls).
    func changeFeeds() async -> [Follower.Watch]?

    /// Watches one of ``changeFeeds()`` until it ends.
    /// - Parameters:
    ///   - connected: called once the feed is open, and after every answer that shows it is alive.
    ///   - changed: called for each change.
    /// - Returns: why it ended, for a notice.
    func watch(_ feed: Follower.Watch, connected: () -> Void, changed: () -> Void) async throws -> String?
}

/// A server that compares its side with another by fingerprints (`capabilities.reconcile`),
/// so `diff` and `verify` need not read it (SyncEngine+Reconcile.swift).
protocol ReconcilingEndpoint: Endpoint {
    /// Whether the server announced reconciliation in the version Ferry speaks (known after ``Endpoint/open(forWriting:)``).
    var reconciles: Bool { get }

    /// Sends one reconciliation message and returns the answer.
    func reconcile(_ message: [UInt8]) async throws -> [UInt8]

    /// Reads the live records with these ids (those still there, in any order): what a
    /// reconciliation found different, without reading the rest.
    func records(ids: [String], _ body: ([SourceItem]) async throws -> Void) async throws

    /// The current position of its change feed: a read from it misses nothing written afterwards.
    func currentTimestamp() async throws -> Int64
}
