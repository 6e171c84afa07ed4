import FerryCore
import FerryStore
import Foundation
import Yams

/// Everything `ferry serve` can be told. Sources, weakest first: defaults, the YAML
/// file (`server:` section of `ferry.yml`), `FERRY_*` environment variables, flags.
public struct ServerConfiguration: Sendable, Equatable {
    /// Address to listen on.
    public var host: String = "127.0.0.1"
    /// Port to listen on (0 picks a free one).
    public var port: Int = 8888
    /// Folder of the SQLite database and the server secret.
    public var dataDirectory: String = "./ferry-data"
    /// `postgres://USER:PASS@HOST:PORT/DB[?pool=N&statement_timeout=MS&connect_timeout=S&sslmode=…]`; nil: SQLite in the data folder.
    public var database: String? = nil
    /// `trace`, `debug`, `info`, `notice`, `warning`, `error` or `critical`.
    public var logLevel: String = "info"
    /// Most sub-requests in one `/batch`. Kinto's default is 25; Ferry's is 1000: a batch is
    /// one transaction whose fixed cost (a request, a commit) 25 records cannot amortise (a
    /// million records went in at 3,300 a second through batches of 25), and clients size
    /// their batches from the `batch_max_requests` the server announces.
    public var batchMaxRequests: Int = 1000
    /// Largest accepted request body, in bytes (413 above).
    public var maxBodySize: Int = 1 << 20
    /// Refuse writes.
    public var readonly: Bool = false
    /// Forced page size.
    public var paginateBy: Int? = nil
    /// Most objects in one page.
    public var maxFetchSize: Int = 10_000
    /// Principals allowed to create buckets.
    public var bucketCreatePrincipals: [String] = ["system.Authenticated"]
    /// Secret keying the `basicauth:` user ids; generated into the data folder when not given.
    public var secret: String? = nil
    /// `Backoff` seconds to send with every response (ask clients to slow down).
    public var backoffSeconds: Int? = nil
    /// `Retry-After` seconds sent with 503.
    public var retryAfterSeconds: Int = 30
    /// fsync every commit (survives power loss, not only a crash of the process).
    public var fullSync: Bool = false
    /// Authentication policies, tried in order: account, basicauth, token, jwt.
    public var authPolicies: [String] = ["account", "basicauth", "token", "jwt"]
    /// Who may create accounts.
    public var accountCreatePrincipals: [String] = ["system.Everyone"]
    /// Principals with every right on every account.
    public var admins: [String] = []
    public var passwordMinLength: Int = 8
    /// PBKDF2 rounds of new password hashes.
    public var passwordRounds: Int = 210_000
    /// API tokens as `NAME:SHA256HEX` (principal `token:NAME`); `ferry token NAME` makes one.
    public var tokens: [String] = []
    public var jwtHS256Secret: String? = nil
    /// A PEM file with the RSA public key of RS256 JWTs.
    public var jwtRS256PublicKey: String? = nil
    public var jwtIssuer: String? = nil
    public var jwtAudience: String? = nil
    public var jwtPrincipalPrefix: String = "jwt:"
    /// Requests per principal: `REQUESTS/SECONDS`, e.g. `600/60`; nil: no limit.
    public var rateLimit: RateLimit? = nil

    public struct RateLimit: Sendable, Equatable {
        public var requests: Int
        public var seconds: Int
    }
    public var bodyTimeout: Int = 30
    /// Seconds a request has to be answered once its body arrived (503 after, its changes rolled back).
    public var requestTimeout: Int = 30
    public var busyThreshold: Int = 256
    public var busyBackoff: Int = 10
    /// Host names, addresses or CIDR ranges webhooks may reach although internal (`*`: anywhere).
    public var webhookAllowHosts: [String] = []
    /// Addresses or CIDR ranges of reverse proxies whose `X-Forwarded-Proto`/`Forwarded: proto=`
    /// says which scheme the client used (for `Next-Page` links and the `url` of `GET /v1/`).
    public var trustedProxies: [String] = []
    /// Seconds a webhook receiver has to answer.
    public var webhookTimeout: Int = 10
    /// Most event streams open at once.
    public var maxStreams: Int = 1000
    /// Seconds between heartbeats on an idle event stream.
    public var streamHeartbeat: Int = 15
    /// Answer a path without the `/v1` prefix (`/buckets`, `/accounts/user`) with a `307` to the
    /// same path and query under `/v1/` (Kinto's `version_prefix_redirect_enabled`); off: 404.
    public var versionPrefixRedirect: Bool = true
    /// Serve `POST /v1/__flush__`, which deletes everything the server holds (Kinto's flush
    /// plugin; for test suites only: anyone may call it).
    public var flushEndpoint: Bool = false
    /// Serve the `/admin` pages: sign in with an account, browse and edit what that account may.
    public var adminEnabled: Bool = true
    /// `/buckets/default` is each user's personal bucket, created (with the collections named
    /// under it) on first use: Kinto's `default_bucket` plugin, which kinto.js apps rely on.
    public var defaultBucket: Bool = false
    /// Origins of the browser pages that may call the API (CORS): `*` (any, Kinto's default),
    /// origins such as `https://app.example.com`, or patterns such as `https://*.example.com`;
    /// empty: none.
    public var corsOrigins: [String] = ["*"]
    /// How long browsers may keep a preflight's answer (`Access-Control-Max-Age`), in seconds.
    public var corsMaxAgeSeconds: Int = 3600
    /// Where people read about this deployment (an http or https URL), announced in `GET /v1/`
    /// and `__version__`; none by default (nothing points at an address nobody published).
    public var projectURL: String? = nil
    /// Serve the kinto-attachment API, files kept in `<data>/attachments`.
    public var attachmentsEnabled: Bool = true
    /// What `attachment.location` is relative to (a CDN in front of the files); nil: this server's `/attachments/`.
    public var attachmentBaseURL: String? = nil
    /// The largest attachment, in bytes.
    public var attachmentMaxSize: Int = 25 << 20
    /// Allowed file extensions (without the dot); nil: any.
    public var attachmentExtensions: [String]? = nil
    /// Allowed media types (`image/png`, `image/*`); nil: any.
    public var attachmentMimetypes: [String]? = nil
    /// Keep files when their record goes or their attachment is replaced.
    public var attachmentKeepOldFiles: Bool = false
    /// Serve files to anyone, not only to who may read the record.
    public var attachmentPublic: Bool = false
    /// Purge tombstones (what deleted records leave for `_since` readers) older than this many
    /// seconds; nil: keep them forever, as Kinto does. Off by default: a client whose `_since`
    /// is older than a purge must then re-read or reconcile (it gets a 410), which only the
    /// deployment can decide is acceptable for its clients.
    public var tombstoneMaxAge: Int? = nil
    /// Keep at most this many tombstones per collection (the newest); nil: no limit.
    public var tombstoneMaxCount: Int? = nil
    /// Seconds between two purges of old tombstones.
    public var tombstonePurgeInterval: Int = 3600
    /// PEM certificate chain and private key: serve HTTPS.
    public var tlsCertificate: String? = nil
    public var tlsKey: String? = nil

    public init() {}

    /// A configuration problem, said in one line: what, where, and what is expected.
    public struct Error: Swift.Error, CustomStringConvertible, Equatable {
        public let description: String
        init(_ description: String) { self.description = description }
    }

    /// One setting: its YAML key, environment variable, what it means, its value in a
    /// configuration (so the default shown is the default used) and how to apply a text value.
    struct Key: Sendable {
        let name: String
        /// What the setting does, for `ferry serve --list-settings` and docs/reference/settings.md.
        let summary: String
        /// The setting's value in a configuration, as text; nil when unset.
        let value: @Sendable (ServerConfiguration) -> String?
        let apply: @Sendable (inout ServerConfiguration, String) throws(Error) -> Void
        var environment: String { "FERRY_" + name.uppercased() }
    }

    /// A setting as the reference shows it.
    public struct Setting: Sendable, Equatable {
        /// The YAML key of the `server:` section.
        public let name: String
        /// The `FERRY_*` environment variable.
        public let environment: String
        /// What it does.
        public let summary: String
        /// The default, as text; nil when unset by default.
        public let defaultValue: String?
    }

    /// Every setting, in declaration order, with its default.
    public static var settings: [Setting] {
        let defaults = ServerConfiguration()
        return keys.map { Setting(name: $0.name, environment: $0.environment, summary: $0.summary, defaultValue: $0.value(defaults)) }
    }

    /// A list as the reference shows it: comma-separated, nil when empty.
    static func shown(_ items: [String]) -> String? { items.isEmpty ? nil : items.joined(separator: ", ") }

    static func int(_ text: String, _ what: String, min: Int = 0, max: Int = Int.max) throws(Error) -> Int {
        guard let n = Int(text.trimmingCharacters(in: .whitespaces)), n >= min, n <= max else {
            throw Error("\(what) must be a whole number between \(min) and \(max), not \"\(text)\"")
        }
        return n
    }

    /// A comma-separated list (YAML lists arrive joined with commas).
    /// `text` when it is an absolute http or https URL with a host and no blanks.
    static func httpURL(_ text: String, _ what: String, example: String) throws(Error) -> String {
        guard let url = URL(string: text), ["http", "https"].contains(url.scheme?.lowercased() ?? ""), url.host?.isEmpty == false,
              !text.contains(where: { $0.isWhitespace })
        else { throw Error("\(what) must be an http or https URL such as \(example), not \"\(text)\"") }
        return text
    }

    /// A tombstone age in whole seconds (see ``TombstoneRules/age(_:)``).
    static func tombstoneAge(_ text: String, _ what: String) throws(Error) -> Int {
        guard let seconds = TombstoneRules.age(.string(text)) else { throw Error("\(what) must be \(TombstoneRules.ageExpected), not \"\(text)\"") }
        return seconds
    }

    static func list(_ text: String) -> [String] {
        text.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
    }

    static func bool(_ text: String, _ what: String) throws(Error) -> Bool {
        switch text.lowercased().trimmingCharacters(in: .whitespaces) {
        case "true", "yes", "1", "on": return true
        case "false", "no", "0", "off": return false
        default: throw Error("\(what) must be true or false, not \"\(text)\"")
        }
    }

    static let keys: [Key] = [
        Key(name: "host",
            summary: "Address to listen on (0.0.0.0: every interface).",
            value: { $0.host }) { c, v throws(Error) in
            guard !v.isEmpty, !v.contains(" ") else { throw Error("host must be an address such as 127.0.0.1, not \"\(v)\"") }
            c.host = v
        },
        Key(name: "port",
            summary: "Port to listen on (0: any free port; the port taken is logged).",
            value: { String($0.port) }) { c, v throws(Error) in c.port = try int(v, "port", max: 65535) },
        Key(name: "data",
            summary: "Folder of the SQLite database (WAL mode) and of the generated server secret.",
            value: { $0.dataDirectory }) { c, v throws(Error) in
            guard !v.isEmpty else { throw Error("data must be a folder path") }
            c.dataDirectory = v
        },
        Key(name: "database",
            summary: "Store in PostgreSQL instead of SQLite: `postgres://USER:PASS@HOST:PORT/DB`, with URL settings `pool` (connections, 10), `statement_timeout` (ms, 30000), `connect_timeout` (s, 10), `sslmode` (`disable`, `require`, `verify-full`). Better in FERRY_DATABASE than as a flag, which `ps` shows. `sqlite` or empty: SQLite in the data folder.",
            value: { $0.database }) { c, v throws(Error) in
            if v == "sqlite" || v.isEmpty {
                c.database = nil
                return
            }
            do {
                _ = try PostgresStorage.Configuration(url: v)
            } catch {
                let message = (error as? StorageError)?.message ?? "\(error)"
                throw Error("database " + (message.hasPrefix("database: ") ? String(message.dropFirst(10)) : message))
            }
            c.database = v
        },
        Key(name: "log_level",
            summary: "`trace`, `debug`, `info`, `notice`, `warning`, `error` or `critical`.",
            value: { $0.logLevel }) { c, v throws(Error) in
            let levels = ["trace", "debug", "info", "notice", "warning", "error", "critical"]
            guard levels.contains(v.lowercased()) else { throw Error("log_level must be one of \(levels.joined(separator: ", ")), not \"\(v)\"") }
            c.logLevel = v.lowercased()
        },
        Key(name: "batch_max_requests",
            summary: "Most sub-requests in one `/batch` (Kinto's default is 25: a batch is one transaction, and 25 records cannot amortise its cost). 1 to 10000.",
            value: { String($0.batchMaxRequests) }) { c, v throws(Error) in c.batchMaxRequests = try int(v, "batch_max_requests", min: 1, max: 10_000) },
        Key(name: "max_body_size",
            summary: "Largest request body in bytes (413 above). 1024 to 1073741824.",
            value: { String($0.maxBodySize) }) { c, v throws(Error) in c.maxBodySize = try int(v, "max_body_size", min: 1024, max: 1 << 30) },
        Key(name: "readonly",
            summary: "Refuse every write (405).",
            value: { String($0.readonly) }) { c, v throws(Error) in c.readonly = try bool(v, "readonly") },
        Key(name: "paginate_by",
            summary: "Force pages of at most this many objects, whatever `_limit` asks.",
            value: { $0.paginateBy.map(String.init) }) { c, v throws(Error) in c.paginateBy = try int(v, "paginate_by", min: 1, max: 1_000_000) },
        Key(name: "max_fetch_size",
            summary: "Most objects in one page (Kinto's `storage_max_fetch_size`).",
            value: { String($0.maxFetchSize) }) { c, v throws(Error) in c.maxFetchSize = try int(v, "max_fetch_size", min: 1, max: 10_000_000) },
        Key(name: "bucket_create_principals",
            summary: "Principals that may create buckets (comma-separated, or a YAML list).",
            value: { shown($0.bucketCreatePrincipals) }) { c, v throws(Error) in
            c.bucketCreatePrincipals = v.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        },
        Key(name: "secret",
            summary: "Secret keying the basicauth user ids (at least 16 characters). Unset: generated into `<data>/secret`, or on PostgreSQL kept in the database by the first process, so every process agrees.",
            value: { $0.secret.map { _ in "(hidden)" } }) { c, v throws(Error) in
            guard v.utf8.count >= 16 else { throw Error("secret must be at least 16 characters long") }
            c.secret = v
        },
        Key(name: "backoff",
            summary: "Seconds to send in a `Backoff` header with every response (ask clients to slow down).",
            value: { $0.backoffSeconds.map(String.init) }) { c, v throws(Error) in c.backoffSeconds = try int(v, "backoff", max: 86_400) },
        Key(name: "retry_after",
            summary: "Seconds to send in `Retry-After` with a 503 (storage unavailable).",
            value: { String($0.retryAfterSeconds) }) { c, v throws(Error) in c.retryAfterSeconds = try int(v, "retry_after", max: 86_400) },
        Key(name: "full_sync",
            summary: "fsync every commit, to survive power loss and not only a crash of the process (slower).",
            value: { String($0.fullSync) }) { c, v throws(Error) in c.fullSync = try bool(v, "full_sync") },
        Key(name: "auth_policies",
            summary: "Sign-in policies tried in order: `account`, `basicauth`, `token`, `jwt`.",
            value: { shown($0.authPolicies) }) { c, v throws(Error) in
            let names = list(v)
            let known = ["account", "basicauth", "token", "jwt"]
            for name in names where !known.contains(name) {
                throw Error("auth_policies: unknown policy \"\(name)\" (known: \(known.joined(separator: ", ")))")
            }
            guard !names.isEmpty else { throw Error("auth_policies needs at least one of account, basicauth, token, jwt") }
            c.authPolicies = names
        },
        Key(name: "account_create_principals",
            summary: "Principals that may create accounts.",
            value: { shown($0.accountCreatePrincipals) }) { c, v throws(Error) in c.accountCreatePrincipals = list(v) },
        Key(name: "admins",
            summary: "Principals with every right on every account (e.g. `account:admin`).",
            value: { shown($0.admins) }) { c, v throws(Error) in c.admins = list(v) },
        Key(name: "password_min_length",
            summary: "Shortest account password accepted.",
            value: { String($0.passwordMinLength) }) { c, v throws(Error) in c.passwordMinLength = try int(v, "password_min_length", min: 1, max: 1024) },
        Key(name: "password_rounds",
            summary: "PBKDF2-SHA256 rounds of new password hashes.",
            value: { String($0.passwordRounds) }) { c, v throws(Error) in c.passwordRounds = try int(v, "password_rounds", min: 1000, max: 10_000_000) },
        Key(name: "tokens",
            summary: "API tokens as `NAME:SHA256` entries, from `ferry token NAME` (principal `token:NAME`).",
            value: { shown($0.tokens) }) { c, v throws(Error) in
            var tokens: [String] = []
            for entry in list(v) {
                let parts = entry.split(separator: ":", maxSplits: 1).map(String.init)
                guard parts.count == 2, !parts[0].isEmpty, parts[0].allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || "-_.".contains($0)) }),
                      parts[1].count == 64, parts[1].allSatisfy(\.isHexDigit)
                else { throw Error("tokens: each entry is NAME:SHA256-HEX (from `ferry token NAME`), not \"\(entry.prefix(12))…\"") }
                tokens.append(parts[0] + ":" + parts[1].lowercased())
            }
            c.tokens = tokens
        },
        Key(name: "jwt_hs256_secret",
            summary: "Secret of HS256 JWTs (at least 32 characters).",
            value: { $0.jwtHS256Secret.map { _ in "(hidden)" } }) { c, v throws(Error) in
            guard v.utf8.count >= 32 else { throw Error("jwt_hs256_secret must be at least 32 characters long") }
            c.jwtHS256Secret = v
        },
        Key(name: "jwt_rs256_public_key",
            summary: "A PEM file with the RSA public key of RS256 JWTs.",
            value: { $0.jwtRS256PublicKey }) { c, v throws(Error) in c.jwtRS256PublicKey = v },
        Key(name: "jwt_issuer",
            summary: "When set, a JWT's `iss` must be this.",
            value: { $0.jwtIssuer }) { c, v throws(Error) in c.jwtIssuer = v },
        Key(name: "jwt_audience",
            summary: "When set, a JWT's `aud` must hold this.",
            value: { $0.jwtAudience }) { c, v throws(Error) in c.jwtAudience = v },
        Key(name: "jwt_principal_prefix",
            summary: "Prefix of a JWT's principal (followed by its `sub`).",
            value: { $0.jwtPrincipalPrefix }) { c, v throws(Error) in c.jwtPrincipalPrefix = v },
        Key(name: "rate_limit",
            summary: "Requests per principal (per address when anonymous): `REQUESTS/SECONDS`, e.g. `600/60`; 429 with `Retry-After` above.",
            value: { $0.rateLimit.map { "\($0.requests)/\($0.seconds)" } }) { c, v throws(Error) in
            let parts = v.split(separator: "/").map { $0.trimmingCharacters(in: .whitespaces) }
            guard parts.count == 2, let n = Int(parts[0]), let s = Int(parts[1].hasSuffix("s") ? String(parts[1].dropLast()) : parts[1]),
                  n >= 1, n <= 1_000_000, s >= 1, s <= 86_400
            else { throw Error("rate_limit must be REQUESTS/SECONDS, e.g. 600/60, not \"\(v)\"") }
            c.rateLimit = RateLimit(requests: n, seconds: s)
        },
        Key(name: "body_timeout",
            summary: "Seconds a request body has to arrive (408 after).",
            value: { String($0.bodyTimeout) }) { c, v throws(Error) in c.bodyTimeout = try int(v, "body_timeout", min: 1, max: 3600) },
        Key(name: "request_timeout",
            summary: "Seconds a request has to be answered once its body arrived: past them the answer is a 503 and the request's changes are rolled back, never committed after that answer (a long-poll's `_wait` comes on top).",
            value: { String($0.requestTimeout) }) { c, v throws(Error) in c.requestTimeout = try int(v, "request_timeout", min: 1, max: 3600) },
        Key(name: "busy_threshold",
            summary: "Requests in flight above which answers carry a `Backoff` header.",
            value: { String($0.busyThreshold) }) { c, v throws(Error) in c.busyThreshold = try int(v, "busy_threshold", min: 1, max: 1_000_000) },
        Key(name: "busy_backoff",
            summary: "Seconds of that `Backoff` header.",
            value: { String($0.busyBackoff) }) { c, v throws(Error) in c.busyBackoff = try int(v, "busy_backoff", min: 1, max: 86_400) },
        Key(name: "webhook_allow_hosts",
            summary: "Host names, addresses or CIDR ranges webhooks may reach although internal (loopback, private, link-local…); `*`: anywhere.",
            value: { shown($0.webhookAllowHosts) }) { c, v throws(Error) in
            let entries = list(v)
            for entry in entries {
                if let problem = WebhookAddressPolicy.problem(withEntry: entry) { throw Error("webhook_allow_hosts: \(problem)") }
            }
            c.webhookAllowHosts = entries
        },
        Key(name: "trusted_proxies",
            summary: "Addresses or CIDR ranges of reverse proxies whose `X-Forwarded-Proto` (or `Forwarded: proto=`) says which scheme the client used; from any other address those headers are ignored.",
            value: { shown($0.trustedProxies) }) { c, v throws(Error) in
            let entries = list(v)
            for entry in entries where TrustedProxies.range(entry) == nil {
                throw Error("trusted_proxies: \"\(entry)\" is not an address or a CIDR range (like 127.0.0.1 or 10.0.0.0/8)")
            }
            c.trustedProxies = entries
        },
        Key(name: "webhook_timeout",
            summary: "Seconds a webhook receiver has to answer a delivery.",
            value: { String($0.webhookTimeout) }) { c, v throws(Error) in c.webhookTimeout = try int(v, "webhook_timeout", min: 1, max: 300) },
        Key(name: "max_streams",
            summary: "Most event streams open at once (503 above).",
            value: { String($0.maxStreams) }) { c, v throws(Error) in c.maxStreams = try int(v, "max_streams", min: 0, max: 1_000_000) },
        Key(name: "stream_heartbeat",
            summary: "Seconds between `: heartbeat` lines on an idle event stream.",
            value: { String($0.streamHeartbeat) }) { c, v throws(Error) in c.streamHeartbeat = try int(v, "stream_heartbeat", min: 1, max: 3600) },
        Key(name: "version_prefix_redirect_enabled",
            summary: "Answer a path without `/v1` (`/buckets`, `/accounts/user`) with a 307 to it under `/v1/` (Kinto's setting); off: 404.",
            value: { String($0.versionPrefixRedirect) }) { c, v throws(Error) in c.versionPrefixRedirect = try bool(v, "version_prefix_redirect_enabled") },
        Key(name: "flush_endpoint_enabled",
            summary: "Serve `POST /v1/__flush__`, which deletes everything the server holds, for anyone (Kinto's flush plugin): test servers only.",
            value: { String($0.flushEndpoint) }) { c, v throws(Error) in c.flushEndpoint = try bool(v, "flush_endpoint_enabled") },
        Key(name: "admin_enabled",
            summary: "Serve the `/admin` pages: sign in with an account and browse, create, edit and delete what it may (the API's permissions, CSRF-protected forms, a strict Content-Security-Policy).",
            value: { String($0.adminEnabled) }) { c, v throws(Error) in c.adminEnabled = try bool(v, "admin_enabled") },
        Key(name: "default_bucket_enabled",
            summary: "`/v1/buckets/default` is each signed-in user's personal bucket, created with the collections named under it on first use (Kinto's `default_bucket` plugin, which kinto.js apps rely on).",
            value: { String($0.defaultBucket) }) { c, v throws(Error) in c.defaultBucket = try bool(v, "default_bucket_enabled") },
        Key(name: "cors_origins",
            summary: "Origins of the browser pages that may call the API (CORS): `*` (any, Kinto's default), origins such as `https://app.example.com`, patterns such as `https://*.example.com`; empty: none.",
            value: { $0.corsOrigins.joined(separator: ",") }) { c, v throws(Error) in
            let entries = list(v)
            for entry in entries {
                if let problem = CORSPolicy.problem(withOrigin: entry) { throw Error("cors_origins: \(problem)") }
            }
            c.corsOrigins = entries
        },
        Key(name: "cors_max_age_seconds",
            summary: "How long browsers may keep a preflight's answer (`Access-Control-Max-Age`), in seconds.",
            value: { String($0.corsMaxAgeSeconds) }) { c, v throws(Error) in c.corsMaxAgeSeconds = try int(v, "cors_max_age_seconds", max: 86_400) },
        Key(name: "project_url",
            summary: "An http(s) address where users read about this deployment: `project_docs` of `GET /v1/`, `source` of `__version__`, the `url` of Ferry's own capabilities; unset, they are left out.",
            value: { $0.projectURL }) { c, v throws(Error) in
            c.projectURL = try httpURL(v, "project_url", example: "https://docs.example.com/ferry")
        },
        Key(name: "attachments_enabled",
            summary: "Serve the kinto-attachment API (`POST`/`DELETE …/records/ID/attachment`), files kept in `<data>/attachments` and served under `/attachments/`.",
            value: { String($0.attachmentsEnabled) }) { c, v throws(Error) in c.attachmentsEnabled = try bool(v, "attachments_enabled") },
        Key(name: "attachment_base_url",
            summary: "What an attachment's `location` is relative to (a CDN in front of the files); unset: this server's `/attachments/`.",
            value: { $0.attachmentBaseURL }) { c, v throws(Error) in
            c.attachmentBaseURL = try httpURL(v, "attachment_base_url", example: "https://cdn.example.com/files/")
        },
        Key(name: "attachment_max_size",
            summary: "The largest attachment, in bytes (a larger upload is a 413 and stores nothing).",
            value: { String($0.attachmentMaxSize) }) { c, v throws(Error) in c.attachmentMaxSize = try int(v, "attachment_max_size", min: 1, max: 1 << 30) },
        Key(name: "attachment_extensions",
            summary: "File extensions an attachment may have (`pdf,png`), or `any`.",
            value: { $0.attachmentExtensions?.joined(separator: ",") ?? "any" }) { c, v throws(Error) in
            let entries = list(v).map { ($0.hasPrefix(".") ? String($0.dropFirst()) : $0).lowercased() }
            if entries == ["any"] { c.attachmentExtensions = nil; return }
            for entry in entries where entry.isEmpty || !entry.allSatisfy({ $0.isLetter || $0.isNumber }) {
                throw Error("attachment_extensions: \"\(entry)\" is not a file extension (letters and digits, like pdf), nor any")
            }
            c.attachmentExtensions = entries
        },
        Key(name: "attachment_mimetypes",
            summary: "Media types an attachment may have (`image/png`, `image/*`), or `any`.",
            value: { $0.attachmentMimetypes?.joined(separator: ",") ?? "any" }) { c, v throws(Error) in
            let entries = list(v).map { $0.lowercased() }
            if entries == ["any"] { c.attachmentMimetypes = nil; return }
            for entry in entries where entry.split(separator: "/", omittingEmptySubsequences: false).count != 2 {
                throw Error("attachment_mimetypes: \"\(entry)\" is not a media type (like image/png or image/*), nor any")
            }
            c.attachmentMimetypes = entries
        },
        Key(name: "attachment_keep_old_files",
            summary: "Keep attachment files when their record goes or their attachment is replaced.",
            value: { String($0.attachmentKeepOldFiles) }) { c, v throws(Error) in c.attachmentKeepOldFiles = try bool(v, "attachment_keep_old_files") },
        Key(name: "attachment_public",
            summary: "Serve attachment files to anyone, not only to who may read their record.",
            value: { String($0.attachmentPublic) }) { c, v throws(Error) in c.attachmentPublic = try bool(v, "attachment_public") },
        Key(name: "tombstone_max_age",
            summary: "Purge the tombstones of deleted records older than this (`90d`, `12h`, or seconds), in every collection that does not set `tombstones.max_age` itself; a `_since` older than a purge then gets a 410 (errno 124). Unset: keep them forever, as Kinto does.",
            value: { $0.tombstoneMaxAge.map { "\($0)s" } }) { c, v throws(Error) in c.tombstoneMaxAge = try tombstoneAge(v, "tombstone_max_age") },
        Key(name: "tombstone_max_count",
            summary: "Keep at most this many tombstones per collection (the newest), where the collection does not set `tombstones.max_count` itself. Unset: no limit.",
            value: { $0.tombstoneMaxCount.map(String.init) }) { c, v throws(Error) in
            c.tombstoneMaxCount = try int(v, "tombstone_max_count", min: 0, max: TombstoneRules.maxCount)
        },
        Key(name: "tombstone_purge_interval",
            summary: "How often old tombstones are purged (`10m`, `1h`, or seconds), when a retention is set.",
            value: { "\($0.tombstonePurgeInterval)s" }) { c, v throws(Error) in
            guard let seconds = DurationText.seconds(v), seconds >= 1, seconds <= 86_400 else {
                throw Error("tombstone_purge_interval must be a duration of 1 s to 1 d, like 10m or 1h, not \"\(v)\"")
            }
            c.tombstonePurgeInterval = Int(seconds)
        },
        Key(name: "tls_cert",
            summary: "PEM certificate chain: serve HTTPS (with `tls_key`).",
            value: { $0.tlsCertificate }) { c, v throws(Error) in c.tlsCertificate = v },
        Key(name: "tls_key",
            summary: "PEM private key of `tls_cert`.",
            value: { $0.tlsKey }) { c, v throws(Error) in c.tlsKey = v },
    ]

    /// Sets one key by name.
    public mutating func set(_ name: String, _ value: String, source: String) throws(Error) {
        guard let key = Self.keys.first(where: { $0.name == name }) else {
            throw Error("\(source): unknown setting \"\(name)\" (known: \(Self.keys.map(\.name).joined(separator: ", ")))")
        }
        do {
            try key.apply(&self, value)
        } catch {
            throw Error("\(source): \(error.description)")
        }
    }

    /// Applies `FERRY_*` variables.
    public mutating func applyEnvironment(_ environment: [String: String]) throws(Error) {
        for key in Self.keys {
            if let value = environment[key.environment] {
                try set(key.name, value, source: "environment variable \(key.environment)")
            }
        }
    }

    /// Applies the `server:` section of a YAML file. Unknown keys are errors with their line.
    public mutating func applyYAML(_ text: String, file: String) throws(Error) {
        let node: Node?
        do {
            node = try Yams.compose(yaml: text)
        } catch {
            throw Error("\(file): not valid YAML: \(error)")
        }
        guard let node else { return }
        guard let top = node.mapping else { throw Error("\(file): the top level must be a mapping with a server: section") }
        for (keyNode, value) in top {
            let line = (keyNode.mark?.line).map { ":\($0)" } ?? ""
            switch keyNode.string {
            case "server":
                guard let section = value.mapping else { throw Error("\(file)\(line): server must be a mapping of settings") }
                for (k, v) in section {
                    let kline = (k.mark?.line).map { ":\($0)" } ?? ""
                    guard let name = k.string else { throw Error("\(file)\(kline): setting names must be strings") }
                    let text: String
                    if let scalar = v.scalar {
                        text = scalar.string
                    } else if let sequence = v.sequence {
                        text = sequence.compactMap { $0.string }.joined(separator: ",")
                    } else {
                        throw Error("\(file)\(kline): \(name) must be a value")
                    }
                    try set(name, text, source: "\(file)\(kline)")
                }
            case "jobs":
                continue  // read by `ferry run`
            default:
                throw Error("\(file)\(line): unknown section \"\(keyNode.string ?? "?")\" (expected server or jobs)")
            }
        }
    }

    /// Loads a YAML file.
    public mutating func applyFile(_ path: String) throws(Error) {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw Error("\(path): cannot read the configuration file")
        }
        guard let text = String(data: data, encoding: .utf8) else { throw Error("\(path): not UTF-8 text") }
        try applyYAML(text, file: path)
    }
}
