import Crypto
import FerryCore
public import FerryStore
import Foundation
public import Hummingbird
import HummingbirdCore
import HummingbirdTLS
public import Logging
import NIOSSL
public import ServiceLifecycle

/// Builds the `ferry serve` application from a configuration.
public enum FerryServerApp {
    /// The parts of a running server, for tests and the CLI.
    public struct Parts: Sendable {
        public let api: KintoAPI
        public let storage: any Storage
        public let responder: FerryResponder
        public let metrics: ServerMetrics
        /// Delivers webhooks; run it as a service beside the application.
        public let webhooks: WebhookDispatcher
        /// Purges old tombstones; run it as a service beside the application.
        public let purger: TombstonePurger

        /// What runs beside the HTTP application, in the order to start them (they stop in reverse).
        public var services: [any Service] { [webhooks, purger, ChangeHubCloser(hub: api.changeHub)] }
    }

    /// Opens the data folder (creating it), the SQLite database and the server secret.
    public static func makeParts(_ configuration: ServerConfiguration, logger: Logger) throws -> Parts {
        try makeDataDirectory(configuration)
        let storage = try SQLiteStorage(path: configuration.dataDirectory + "/ferry.sqlite",
                                        configuration: .init(fullSync: configuration.fullSync), logger: logger)
        return try makeParts(configuration, storage: storage, logger: logger)
    }

    /// The storage `database` names: the embedded SQLite file in the data folder, or PostgreSQL.
    public static func openStorage(_ configuration: ServerConfiguration, logger: Logger) async throws -> any Storage {
        try makeDataDirectory(configuration)
        guard let url = configuration.database else {
            return try SQLiteStorage(path: configuration.dataDirectory + "/ferry.sqlite",
                                     configuration: .init(fullSync: configuration.fullSync), logger: logger)
        }
        do {
            return try await PostgresStorage(configuration: try PostgresStorage.Configuration(url: url), logger: logger)
        } catch let error as StorageError {
            throw ServerConfiguration.Error("database: \(error.message)")
        }
    }

    /// The server secret: `secret` from the configuration; else, on a database several processes
    /// share, the one stored there (the first process to start stores its own), so a user has the
    /// same id on every process; else the data folder's.
    public static func secret(_ configuration: ServerConfiguration, storage: any Storage) async throws -> String {
        if let secret = configuration.secret { return secret }
        let local = try loadOrCreateSecret(in: configuration.dataDirectory)
        do {
            return try await storage.sharedSecret(proposing: local) ?? local
        } catch let error as StorageError {
            throw ServerConfiguration.Error("database: cannot read the server secret: \(error.message)")
        }
    }

    static func makeDataDirectory(_ configuration: ServerConfiguration) throws {
        do {
            try FileManager.default.createDirectory(atPath: configuration.dataDirectory, withIntermediateDirectories: true)
        } catch {
            throw ServerConfiguration.Error("data: cannot create the folder \(configuration.dataDirectory): \(error.localizedDescription)")
        }
    }

    /// The server's parts on an open storage; with PostgreSQL, changes announced by the other
    /// processes on the database wake this one's streams, and their account changes clear its caches.
    /// - Parameter secret: the server secret; nil: `secret` from the configuration, else the data folder's.
    public static func makeParts(_ configuration: ServerConfiguration, storage: any Storage, secret: String? = nil, logger: Logger) throws -> Parts {
        let secret = try secret ?? configuration.secret ?? loadOrCreateSecret(in: configuration.dataDirectory)
        var settings = KintoAPI.Settings()
        settings.batchMaxRequests = configuration.batchMaxRequests
        settings.maxBodySize = configuration.maxBodySize
        settings.readonly = configuration.readonly
        settings.paginateBy = configuration.paginateBy
        settings.maxFetchSize = configuration.maxFetchSize
        settings.bucketCreatePrincipals = Set(configuration.bucketCreatePrincipals)
        settings.backoffSeconds = configuration.backoffSeconds
        settings.retryAfterSeconds = configuration.retryAfterSeconds
        settings.webhookPolicy = WebhookAddressPolicy(allowHosts: configuration.webhookAllowHosts)
        settings.flushEndpoint = configuration.flushEndpoint
        settings.projectURL = configuration.projectURL
        settings.defaultBucket = configuration.defaultBucket
        settings.tombstoneRetention = TombstoneRetention(maxAge: configuration.tombstoneMaxAge.map { Int64($0) * 1000 },
                                                         maxCount: configuration.tombstoneMaxCount)
        settings.tombstonePurgeInterval = Double(configuration.tombstonePurgeInterval)
        if configuration.attachmentsEnabled {
            var attachments = AttachmentSettings(folder: configuration.dataDirectory + "/attachments")
            attachments.baseURL = configuration.attachmentBaseURL
            attachments.maxSize = configuration.attachmentMaxSize
            attachments.extensions = configuration.attachmentExtensions.map(Set.init)
            attachments.mimetypes = configuration.attachmentMimetypes.map(Set.init)
            attachments.keepOldFiles = configuration.attachmentKeepOldFiles
            attachments.publicRead = configuration.attachmentPublic
            settings.attachments = attachments
        }
        let metrics = ServerMetrics()
        let authenticator = Authenticator(settings: try authSettings(configuration), secret: secret)
        let api = KintoAPI(storage: storage, settings: settings, metrics: metrics, authenticator: authenticator)
        var limits = RequestLimits()
        limits.maxBodySize = configuration.maxBodySize
        limits.bodyTimeout = Double(configuration.bodyTimeout)
        limits.requestTimeout = Double(configuration.requestTimeout)
        limits.busyThreshold = configuration.busyThreshold
        limits.busyBackoff = configuration.busyBackoff
        limits.maxStreams = configuration.maxStreams
        limits.streamHeartbeat = Double(configuration.streamHeartbeat)
        limits.rateLimiter = configuration.rateLimit.map { RateLimiter(requests: $0.requests, seconds: Double($0.seconds)) }
        let responder = FerryResponder(api: api, limits: limits, metrics: metrics,
                                       scheme: configuration.tlsCertificate == nil ? "http" : "https",
                                       trustedProxies: TrustedProxies(configuration.trustedProxies),
                                       cors: CORSPolicy(origins: configuration.corsOrigins, maxAgeSeconds: configuration.corsMaxAgeSeconds),
                                       versionPrefixRedirect: configuration.versionPrefixRedirect,
                                       admin: configuration.adminEnabled)
        let webhooks = WebhookDispatcher(api: api, logger: logger, timeoutSeconds: configuration.webhookTimeout, metrics: metrics)
        storage.listenForChanges { [api] announced in
            switch announced {
            case KintoAPI.accountsChanged?:
                api.authenticator?.accountsOrGroupsChanged()
            case KintoAPI.webhooksAnnounced?:
                api.webhooksChanged.raise()
            case nil:  // anything may have changed
                api.authenticator?.accountsOrGroupsChanged()
                api.webhooksChanged.raise()
                api.changeHub.changed(nil)
            case let collection?:
                api.changeHub.changed(collection)
            }
        }
        return Parts(api: api, storage: storage, responder: responder, metrics: metrics, webhooks: webhooks,
                     purger: TombstonePurger(api: api, logger: logger))
    }

    /// Who may sign in how, from the configuration (reading the RS256 key file).
    static func authSettings(_ configuration: ServerConfiguration) throws -> AuthSettings {
        var auth = AuthSettings()
        auth.policies = configuration.authPolicies.compactMap(AuthSettings.Policy.init(rawValue:))
        auth.accountCreatePrincipals = Set(configuration.accountCreatePrincipals)
        auth.admins = Set(configuration.admins)
        auth.passwordMinLength = configuration.passwordMinLength
        auth.passwordRounds = configuration.passwordRounds
        for entry in configuration.tokens {
            let parts = entry.split(separator: ":", maxSplits: 1)
            auth.tokens[String(parts[1])] = "token:" + parts[0]
        }
        if let secret = configuration.jwtHS256Secret {
            auth.jwt = try JWTVerifier(.hs256(secret: Array(secret.utf8)))
        } else if let path = configuration.jwtRS256PublicKey {
            guard let data = FileManager.default.contents(atPath: path), let pem = String(data: data, encoding: .utf8) else {
                throw ServerConfiguration.Error("jwt_rs256_public_key: cannot read \(path)")
            }
            do {
                auth.jwt = try JWTVerifier(.rs256(publicKeyPEM: pem))
            } catch {
                throw ServerConfiguration.Error("jwt_rs256_public_key: \(path) is not a PEM RSA public key (\(error))")
            }
        }
        auth.jwt?.issuer = configuration.jwtIssuer
        auth.jwt?.audience = configuration.jwtAudience
        auth.jwt?.principalPrefix = configuration.jwtPrincipalPrefix
        return auth
    }

    /// The TLS setup of `tls_cert`/`tls_key`, or nil for plain HTTP.
    static func tlsConfiguration(_ configuration: ServerConfiguration) throws -> TLSConfiguration? {
        switch (configuration.tlsCertificate, configuration.tlsKey) {
        case (nil, nil): return nil
        case (let cert?, let key?):
            let chain: [NIOSSLCertificate]
            let privateKey: NIOSSLPrivateKey
            do {
                chain = try NIOSSLCertificate.fromPEMFile(cert)
            } catch {
                throw ServerConfiguration.Error("tls_cert: cannot read a PEM certificate from \(cert) (\(error))")
            }
            do {
                privateKey = try NIOSSLPrivateKey(file: key, format: .pem)
            } catch {
                throw ServerConfiguration.Error("tls_key: cannot read a PEM private key from \(key) (\(error))")
            }
            guard !chain.isEmpty else { throw ServerConfiguration.Error("tls_cert: \(cert) holds no certificate") }
            return TLSConfiguration.makeServerConfiguration(certificateChain: chain.map { .certificate($0) }, privateKey: .privateKey(privateKey))
        default:
            throw ServerConfiguration.Error("--tls-cert and --tls-key go together")
        }
    }

    /// The secret in `<data>/secret`, created (random, mode 0600) on first start so user ids stay stable.
    static func loadOrCreateSecret(in directory: String) throws -> String {
        let path = directory + "/secret"
        if let data = FileManager.default.contents(atPath: path), let text = String(data: data, encoding: .utf8) {
            let secret = text.trimmingCharacters(in: .whitespacesAndNewlines)
            if secret.utf8.count >= 16 { return secret }
        }
        var generator = SystemRandomNumberGenerator()
        let secret = Hex.encode((0..<32).map { _ in UInt8.random(in: 0...255, using: &generator) })
        guard FileManager.default.createFile(atPath: path, contents: Data(secret.utf8), attributes: [.posixPermissions: 0o600]) else {
            throw ServerConfiguration.Error("data: cannot write the server secret to \(path)")
        }
        return secret
    }

    /// The Hummingbird application.
    public static func makeApplication(_ configuration: ServerConfiguration, parts: Parts, logger: Logger,
                                       onServerRunning: @escaping @Sendable (Int) async -> Void = { _ in }) throws -> Application<FerryResponder> {
        let server: HTTPServerBuilder
        if let tls = try tlsConfiguration(configuration) {
            server = try .tls(.http1(), tlsConfiguration: tls)
        } else {
            server = .http1()
        }
        return Application(
            responder: parts.responder,
            server: server,
            configuration: .init(address: .hostname(configuration.host, port: configuration.port), serverName: "ferry"),
            onServerRunning: { channel in await onServerRunning(channel.localAddress?.port ?? configuration.port) },
            logger: logger
        )
    }
}
