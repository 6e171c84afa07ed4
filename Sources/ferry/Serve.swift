import ArgumentParser
import FerryCore
import FerryJobs
import FerryServer
import FerryStore
import Foundation
import Hummingbird
import Logging
import ServiceLifecycle
import UnixSignals

/// `ferry serve`: the Kinto HTTP API on SQLite (the default) or PostgreSQL.
struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run the server: the Kinto HTTP API 1.x (buckets, collections, records, /batch) on SQLite or PostgreSQL.",
        discussion: """
            Records are kept in a SQLite database in --data (./ferry-data) unless --database (or FERRY_DATABASE) names a PostgreSQL one, which several `ferry serve` processes can share.

            Settings come from, weakest first: defaults, the server: section of --config FILE, FERRY_* environment variables (FERRY_PORT, FERRY_DATABASE, FERRY_SECRET, …), then flags. Only the common settings have flags: `ferry serve --list-settings` lists them all, with their variables and defaults.
            """
    )

    @Option(name: .long, help: ArgumentHelp("Address to listen on (default: 127.0.0.1).", valueName: "ADDRESS")) var host: String?
    @Option(name: .long, help: ArgumentHelp("Port to listen on; 0 picks a free one (default: 8888).", valueName: "PORT")) var port: String?
    @Option(name: .long, help: ArgumentHelp("Folder of the SQLite database (default: ./ferry-data).", valueName: "FOLDER")) var data: String?
    @Option(name: .long, help: ArgumentHelp("Store in PostgreSQL instead of SQLite: postgres://USER:PASS@HOST:PORT/DB (better in FERRY_DATABASE: ps shows flags).", valueName: "URL")) var database: String?
    @Option(name: .long, help: ArgumentHelp("A YAML file whose server: section holds settings (ferry init writes one).", valueName: "FILE")) var config: String?
    @Option(name: .long, help: ArgumentHelp("trace, debug, info, notice, warning, error or critical (default: info).", valueName: "LEVEL")) var logLevel: String?
    @Option(name: .long, help: ArgumentHelp("Most sub-requests in one /batch (default: 1000).", valueName: "N")) var batchMaxRequests: String?
    @Option(name: .long, help: ArgumentHelp("Largest request body in bytes (default: 1048576).", valueName: "BYTES")) var maxBodySize: String?
    @Option(name: .long, help: ArgumentHelp("Most objects in one page (default: 10000).", valueName: "N")) var maxFetchSize: String?
    @Flag(name: .long, help: "Refuse every write.") var readonly = false
    @Flag(name: .long, help: "fsync every commit (survives power loss; slower).") var fullSync = false
    @Option(name: .customLong("tls-cert"), help: ArgumentHelp("PEM certificate chain: serve HTTPS (with --tls-key).", valueName: "FILE")) var tlsCert: String?
    @Option(name: .customLong("tls-key"), help: ArgumentHelp("PEM private key of --tls-cert.", valueName: "FILE")) var tlsKey: String?
    @Option(name: .long, help: ArgumentHelp("Requests per principal, e.g. 600/60 (429 with Retry-After above).", valueName: "REQUESTS/SECONDS")) var rateLimit: String?
    @Option(name: .long, help: ArgumentHelp("Origins of the browser pages that may call the API, comma-separated; * for any (default: *).", valueName: "ORIGINS")) var corsOrigins: String?
    @Option(name: .long, help: ArgumentHelp("Purge tombstones of deleted records older than this, e.g. 90d; a _since older than a purge then gets a 410 (default: keep them forever).", valueName: "DURATION")) var tombstoneMaxAge: String?
    @Option(name: .long, help: ArgumentHelp("Keep at most this many tombstones per collection, the newest (default: no limit).", valueName: "N")) var tombstoneMaxCount: String?
    @Flag(name: .long, help: "Serve POST /v1/__flush__, which deletes everything (for test suites).") var flushEndpoint = false
    @Flag(name: .long, help: "Make /v1/buckets/default each user's personal bucket, created on first use (Kinto's default_bucket).") var defaultBucket = false
    @Flag(name: .long, help: "Answer paths without /v1 with 404 instead of a 307 to them under /v1.") var noVersionPrefixRedirect = false
    @Flag(name: .long, help: "Do not serve the /admin pages.") var noAdmin = false
    @Flag(name: .long, help: "Print every setting (YAML key, environment variable, flag, default, meaning) as Markdown, and exit.") var listSettings = false

    /// The settings that have a flag of their own (`--` and the name with dashes).
    static let flagged: Set<String> = [
        "host", "port", "data", "database", "log_level", "batch_max_requests", "max_body_size", "max_fetch_size",
        "readonly", "full_sync", "tls_cert", "tls_key", "rate_limit", "cors_origins", "tombstone_max_age", "tombstone_max_count",
    ]
    /// The switches whose flag is not the setting's name.
    static let switches: [String: String] = [
        "flush_endpoint_enabled": "--flush-endpoint", "default_bucket_enabled": "--default-bucket",
        "version_prefix_redirect_enabled": "--no-version-prefix-redirect", "admin_enabled": "--no-admin",
    ]

    static func flag(_ setting: String) -> String { "--" + setting.replacingOccurrences(of: "_", with: "-") }

    /// The configuration from every source.
    func resolve(environment: [String: String]) throws -> ServerConfiguration {
        var configuration = ServerConfiguration()
        if let config { try configuration.applyFile(config) }
        try configuration.applyEnvironment(environment)
        let flags: [(String, String?)] = [
            ("host", host), ("port", port), ("data", data), ("database", database), ("log_level", logLevel),
            ("batch_max_requests", batchMaxRequests), ("max_body_size", maxBodySize), ("max_fetch_size", maxFetchSize),
            ("tls_cert", tlsCert), ("tls_key", tlsKey), ("rate_limit", rateLimit), ("cors_origins", corsOrigins),
            ("tombstone_max_age", tombstoneMaxAge), ("tombstone_max_count", tombstoneMaxCount),
        ]
        for (name, value) in flags {
            if let value { try configuration.set(name, value, source: Self.flag(name)) }
        }
        if readonly { configuration.readonly = true }
        if fullSync { configuration.fullSync = true }
        if flushEndpoint { configuration.flushEndpoint = true }
        if defaultBucket { configuration.defaultBucket = true }
        if noVersionPrefixRedirect { configuration.versionPrefixRedirect = false }
        if noAdmin { configuration.adminEnabled = false }
        return configuration
    }

    /// docs/reference/settings.md: every setting from its declaration in ``ServerConfiguration``.
    static func settingsReference() -> String {
        var out = """
            # Server settings

            <!-- Generated by scripts/gen-docs from `ferry serve --list-settings`, which reads the declarations in
                 Sources/FerryServer/Configuration/ServerConfiguration.swift. Do not edit: change those, then run scripts/gen-docs. -->

            `ferry serve` takes each setting from, weakest first: the default below, the `server:` section of a YAML
            file (`--config ferry.yml`), its `FERRY_*` environment variable, then its flag (only the common settings
            have one). Unknown keys and bad values are errors that name the file and line, the variable or the flag.
            A list is comma-separated in a variable or a flag, and a YAML list (or comma-separated) in the file.

            | YAML key (`server:`) | environment variable | flag | default | meaning |
            | --- | --- | --- | --- | --- |

            """
        for setting in ServerConfiguration.settings {
            let flag = flagged.contains(setting.name) ? "`\(Self.flag(setting.name))`" : Self.switches[setting.name].map { "`\($0)`" } ?? ""
            let value = setting.defaultValue.map { "`\($0)`" } ?? "none"
            out += "| `\(setting.name)` | `\(setting.environment)` | \(flag) | \(value) | \(setting.summary.replacingOccurrences(of: "|", with: "\\|")) |\n"
        }
        return out
    }

    func run() async throws {
        if listSettings {
            print(Self.settingsReference(), terminator: "")
            return
        }
        Self.tuneMalloc()
        let configuration: ServerConfiguration
        do {
            configuration = try resolve(environment: ProcessInfo.processInfo.environment)
        } catch let error as ServerConfiguration.Error {
            throw ValidationError(error.description)
        }
        var baseLogger = Logger(label: "ferry")
        baseLogger.logLevel = Logger.Level(rawValue: configuration.logLevel) ?? .info
        let logger = baseLogger
        // The first line says which build this is.
        logger.notice("ferry serve \(FerryVersion.description) starting", metadata: [
            "ferry.version": .string(FerryVersion.current), "ferry.commit": .string(FerryVersion.commit),
        ])
        let parts: FerryServerApp.Parts
        let app: Application<FerryResponder>
        let scheme = configuration.tlsCertificate == nil ? "http" : "https"
        do {
            let storage = try await FerryServerApp.openStorage(configuration, logger: logger)
            let secret = try await FerryServerApp.secret(configuration, storage: storage)
            parts = try FerryServerApp.makeParts(configuration, storage: storage, secret: secret, logger: logger)
            app = try FerryServerApp.makeApplication(configuration, parts: parts, logger: logger) { port in
                logger.notice("ferry serve is listening", metadata: [
                    "ferry.url": .string("\(scheme)://\(configuration.host):\(port)/v1/"),
                    "ferry.data": .string(configuration.dataDirectory),
                ])
            }
        } catch let error as ServerConfiguration.Error {
            throw ValidationError(error.description)
        }
        // The first SIGTERM or SIGINT lets open requests and streams end; a second one ends
        // the process at once, with 130, as it does every long-running command.
        let secondSignal = GracefulShutdown.SecondSignal(firstSignalDoes: "stopping once open requests and streams end")
        let group = ServiceGroup(configuration: .init(
            services: [ServiceGroupConfiguration.ServiceConfiguration(service: secondSignal)]
                + ([app] + parts.services).map { ServiceGroupConfiguration.ServiceConfiguration(service: $0) },
            gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        try await group.run()
        parts.storage.stopListening()
        try parts.storage.close()
    }
}

extension Serve {
    /// glibc gives freed memory back to the system as soon as the top of a thread's heap holds
    /// 128 KiB free (`madvise`, which interrupts the other cores to flush their TLBs), and
    /// serves allocations above an adaptive size with `mmap`. A server that allocates and frees
    /// the same few hundred kilobytes on every request paid that on every request: perf showed
    /// `madvise` and its cross-core flushes under a third of a GET's storage time. Keeping up to
    /// 64 MiB free per heap costs memory that the next requests use anyway (measured: GET +20-35 %,
    /// PUT +15 %).
    static func tuneMalloc() {
        #if os(Linux)
        _ = glibcMallopt(-1 /* M_TRIM_THRESHOLD */, 64 << 20)
        _ = glibcMallopt(-3 /* M_MMAP_THRESHOLD */, 32 << 20)
        #endif
    }
}

#if os(Linux)
/// glibc's `mallopt` (malloc.h is not part of the Glibc module).
@_silgen_name("mallopt")
private func glibcMallopt(_ parameter: Int32, _ value: Int32) -> Int32
#endif

/// `ferry token NAME`: a new API token, and the line that lets the server accept it.
struct TokenCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "token",
        abstract: "Make an API token for a service: prints the token (give it to the service) and its hash (put it in the server's tokens).",
        discussion: "The server keeps only the SHA-256 of each token: `tokens: [NAME:HASH]` in the server: section, or FERRY_TOKENS. The principal is token:NAME."
    )

    @Argument(help: "The service's name (letters, digits, - _ .); its principal is token:NAME.") var name: String

    func validate() throws {
        guard !name.isEmpty, name.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || "-_.".contains($0)) }) else {
            throw ValidationError("the token name must be letters, digits, - _ or ., not \"\(name)\"")
        }
    }

    func run() throws {
        var generator = SystemRandomNumberGenerator()
        let token = "fy_" + Hex.encode((0..<32).map { _ in UInt8.random(in: 0...255, using: &generator) })
        print("token:  \(token)")
        print("server: tokens: [\"\(name):\(TokenHash.sha256Hex(token))\"]")
    }
}
