import FerryCore
public import FerryStore
import Foundation
public import Hummingbird
public import Logging

/// Builds the `ferry serve` application from a configuration.
public enum FerryServerApp {
    /// The parts of a running server, for tests and the CLI.
    public struct Parts: Sendable {
        public let api: KintoAPI
        public let storage: SQLiteStorage
        public let responder: FerryResponder
        public let metrics: ServerMetrics
    }

    /// Opens the data folder (creating it), the SQLite database and the server secret.
    public static func makeParts(_ configuration: ServerConfiguration, logger: Logger) throws -> Parts {
        let fm = FileManager.default
        do {
            try fm.createDirectory(atPath: configuration.dataDirectory, withIntermediateDirectories: true)
        } catch {
            throw ServerConfiguration.Error("data: cannot create the folder \(configuration.dataDirectory): \(error.localizedDescription)")
        }
        let storage = try SQLiteStorage(path: configuration.dataDirectory + "/ferry.sqlite",
                                        configuration: .init(fullSync: configuration.fullSync), logger: logger)
        let secret = try configuration.secret ?? loadOrCreateSecret(in: configuration.dataDirectory)
        var settings = KintoAPI.Settings()
        settings.batchMaxRequests = configuration.batchMaxRequests
        settings.readonly = configuration.readonly
        settings.paginateBy = configuration.paginateBy
        settings.maxFetchSize = configuration.maxFetchSize
        settings.bucketCreatePrincipals = Set(configuration.bucketCreatePrincipals)
        settings.backoffSeconds = configuration.backoffSeconds
        settings.retryAfterSeconds = configuration.retryAfterSeconds
        let metrics = ServerMetrics()
        let api = KintoAPI(storage: storage, settings: settings, metrics: metrics)
        let responder = FerryResponder(api: api, authenticator: BasicAuthenticator(secret: secret),
                                       maxBodySize: configuration.maxBodySize, metrics: metrics)
        return Parts(api: api, storage: storage, responder: responder, metrics: metrics)
    }

    /// The secret in `<data>/secret`, created (random, mode 0600) on first start so user ids stay stable.
    static func loadOrCreateSecret(in directory: String) throws -> String {
        let path = directory + "/secret"
        if let data = FileManager.default.contents(atPath: path), let text = String(data: data, encoding: .utf8) {
            let secret = text.trimmingCharacters(in: .whitespacesAndNewlines)
            if secret.utf8.count >= 16 { return secret }
        }
        var generator = SystemRandomNumberGenerator()
        let secret = (0..<32).map { _ in String(format: "%02x", UInt8.random(in: 0...255, using: &generator)) }.joined()
        guard FileManager.default.createFile(atPath: path, contents: Data(secret.utf8), attributes: [.posixPermissions: 0o600]) else {
            throw ServerConfiguration.Error("data: cannot write the server secret to \(path)")
        }
        return secret
    }

    /// The Hummingbird application.
    public static func makeApplication(_ configuration: ServerConfiguration, parts: Parts, logger: Logger,
                                       onServerRunning: @escaping @Sendable (Int) async -> Void = { _ in }) -> Application<FerryResponder> {
        Application(
            responder: parts.responder,
            configuration: .init(address: .hostname(configuration.host, port: configuration.port), serverName: "ferry"),
            onServerRunning: { channel in await onServerRunning(channel.localAddress?.port ?? configuration.port) },
            logger: logger
        )
    }
}
