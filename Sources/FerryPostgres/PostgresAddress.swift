import Foundation
public import NIOSSL
public import PostgresNIO

/// Where a PostgreSQL server is and how to sign in to it, parsed from a `postgres://` URL:
/// checked, no I/O. The one parser of such URLs: the server's storage (`ferry serve --database`)
/// and the sync connector (`postgres://…#TABLE`) both read theirs with it.
///
/// `postgres://USER:PASSWORD@HOST[:PORT]/DATABASE[?SETTINGS]` (or `postgresql://`). The
/// credentials end at the last `@`, so a password with an unencoded `/`, `?` (or, where the
/// caller takes no `#fragment`, `#`) still parses; percent-encoding works too. Settings:
/// `sslmode=disable|require|verify-full` (default `disable`), `connect_timeout=SECONDS`
/// (default 10), `statement_timeout=MS` (default: the server's), and those the caller adds.
///
/// ```swift
/// let parsed = try PostgresAddress.parse("postgres://ada:pw@db.local/crm?pool=4", extraSettings: ["pool"])
/// parsed.address.displayName   // postgres://ada@db.local:5432/crm
/// parsed.settings              // [("pool", "4")]
/// ```
public struct PostgresAddress: Sendable, Equatable {
    public enum SSLMode: String, Sendable, CaseIterable {
        /// Plain TCP.
        case disable
        /// TLS without checking the server's certificate (libpq's `require`).
        case require
        /// TLS with the certificate checked against the system's roots and the host name.
        case verifyFull = "verify-full"
    }

    public var user: String
    public var password: String?
    public var host: String
    public var port: Int
    public var database: String
    public var sslMode = SSLMode.disable
    public var connectTimeoutSeconds = 10
    /// Sent as the session's `statement_timeout`; nil leaves the server's setting.
    public var statementTimeoutMilliseconds: Int?

    /// The settings every address takes.
    public static let settings = ["sslmode", "connect_timeout", "statement_timeout"]

    /// `HOST:PORT` (an IPv6 host in brackets), for messages about the connection.
    public var address: String { (host.contains(":") ? "[\(host)]" : host) + ":\(port)" }

    /// The URL without the password or the settings: what messages show.
    public var displayName: String { "postgres://\(user)@\(address)/\(database)" }

    /// What ``parse(_:extraSettings:fragment:auth:)`` found.
    public struct Parsed: Sendable {
        public var address: PostgresAddress
        /// After the last `#` (only when the caller takes a fragment); nil without one.
        public var fragment: String?
        /// The caller's own settings (`extraSettings`), as given, in order.
        public var settings: [(name: String, value: String)]
    }

    /// Why a URL is not a PostgreSQL address; the message never holds the password and names no URL
    /// (the caller says which URL, redacted, or which setting).
    public struct URLError: Error, Sendable, CustomStringConvertible {
        public let message: String
        public var description: String { message }
        init(_ message: String) { self.message = message }
    }

    /// - Parameters:
    ///   - extraSettings: settings the caller knows besides ``settings``: returned, not checked.
    ///   - fragment: whether the URL may end with `#FRAGMENT` (the connector's table), split off at the last `#`.
    ///   - auth: `USER:PASSWORD` given apart from the URL: wins over the URL's credentials.
    public static func parse(_ text: String, extraSettings: [String] = [], fragment: Bool = false, auth: String? = nil) throws(URLError) -> Parsed {
        guard let schemeEnd = text.range(of: "://"), ["postgres", "postgresql"].contains(text[..<schemeEnd.lowerBound]) else {
            throw URLError("a PostgreSQL URL starts with postgres:// or postgresql://")
        }
        var rest = Substring(text[schemeEnd.upperBound...])
        var fragmentText: String? = nil
        if fragment, let hash = rest.lastIndex(of: "#") {
            fragmentText = String(rest[rest.index(after: hash)...])
            rest = rest[..<hash]
        }
        // USER:PASSWORD@ up to the last "@", so an unencoded "/" or "?" in a password still splits right.
        var userinfo: Substring? = nil
        if let at = rest.lastIndex(of: "@") {
            userinfo = rest[..<at]
            rest = rest[rest.index(after: at)...]
        }
        var query: Substring? = nil
        if let question = rest.firstIndex(of: "?") {
            query = rest[rest.index(after: question)...]
            rest = rest[..<question]
        }
        let hostPort: Substring
        let databaseText: Substring
        if let slash = rest.firstIndex(of: "/") {
            hostPort = rest[..<slash]
            databaseText = rest[rest.index(after: slash)...]
        } else {
            hostPort = rest
            databaseText = ""
        }

        // host and port, [IPv6] in brackets
        var hostText = hostPort
        var portText: Substring? = nil
        if hostText.hasPrefix("[") {
            guard let close = hostText.firstIndex(of: "]") else { throw URLError("an IPv6 host must end with ]") }
            let after = hostText[hostText.index(after: close)...]
            hostText = hostText[hostText.index(after: hostText.startIndex)..<close]
            if !after.isEmpty {
                guard after.hasPrefix(":") else { throw URLError("expected :PORT after the ]") }
                portText = after.dropFirst()
            }
        } else if let colon = hostText.lastIndex(of: ":") {
            portText = hostText[hostText.index(after: colon)...]
            hostText = hostText[..<colon]
        }
        let shape = fragment ? "postgres://USER:PASSWORD@HOST:PORT/DATABASE#TABLE" : "postgres://USER:PASSWORD@HOST:PORT/DATABASE"
        guard !hostText.isEmpty else { throw URLError("no host (\(shape))") }
        let host = String(hostText)
        var port = 5432
        if let portText {
            guard let value = Int(portText), (1...65535).contains(value) else {
                throw URLError("the port must be a number from 1 to 65535, not \"\(portText)\"")
            }
            port = value
        }

        let after = fragment ? "#\(fragmentText.map { $0.isEmpty ? "TABLE" : $0 } ?? "TABLE")" : ""
        guard let database = percentDecoded(databaseText), !database.isEmpty else {
            throw URLError("name the database after the host: postgres://USER:PASSWORD@\(host)/DATABASE\(after)")
        }
        guard !database.contains("/"), !database.contains("#") else { throw URLError("\"\(database)\" is not a database name") }

        // credentials: the auth option, else the URL's
        var user: String? = nil
        var password: String? = nil
        if let userinfo {
            let parts = userinfo.split(separator: ":", maxSplits: 1, omittingEmptySubsequences: false)
            user = percentDecoded(parts[0])
            if parts.count == 2 { password = percentDecoded(parts[1]) }
            guard user != nil, parts.count == 1 || password != nil else {
                throw URLError("the user or the password is not properly percent-encoded")
            }
        }
        if let auth {
            guard let colon = auth.firstIndex(of: ":"), !auth.hasPrefix("Bearer ") else {
                throw URLError("credentials for PostgreSQL are USER:PASSWORD")
            }
            user = String(auth[..<colon])
            password = String(auth[auth.index(after: colon)...])
        }
        guard let user, !user.isEmpty else {
            let elsewhere = fragment ? " (or --source-auth/--target-auth USER:PASSWORD)" : ""
            throw URLError("no user: postgres://USER:PASSWORD@\(host)/\(database)\(after)\(elsewhere)")
        }

        var parsed = Parsed(address: PostgresAddress(user: user, password: password, host: host, port: port, database: database),
                            fragment: fragmentText, settings: [])
        if let query, !query.isEmpty {
            var seen = Set<String>()
            let known = settings + extraSettings
            for pair in query.split(separator: "&") {
                let keyValue = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
                let key = String(keyValue[0])
                let value = keyValue.count == 2 ? (percentDecoded(keyValue[1]) ?? "") : ""
                guard known.contains(key) else {
                    throw URLError("unknown setting \"\(key)\" (known: \(known.joined(separator: ", ")))")
                }
                guard seen.insert(key).inserted else { throw URLError("setting \"\(key)\" is given twice") }
                try parsed.address.set(key, value, extra: &parsed.settings)
            }
        }
        return parsed
    }

    /// One setting of the URL's query: the address's own, or one of the caller's (kept as given).
    private mutating func set(_ key: String, _ value: String, extra: inout [(name: String, value: String)]) throws(URLError) {
        switch key {
        case "sslmode":
            guard let mode = SSLMode(rawValue: value) else {
                throw URLError("sslmode must be \(SSLMode.allCases.map(\.rawValue).joined(separator: ", ")), not \"\(value)\"")
            }
            sslMode = mode
        case "connect_timeout":
            guard let seconds = Int(value), (1...3600).contains(seconds) else {
                throw URLError("connect_timeout must be a whole number of seconds from 1 to 3600, not \"\(value)\"")
            }
            connectTimeoutSeconds = seconds
        case "statement_timeout":
            guard let milliseconds = Int(value), (0...Int(Int32.max)).contains(milliseconds) else {
                throw URLError("statement_timeout must be a whole number of milliseconds (0 for none), not \"\(value)\"")
            }
            statementTimeoutMilliseconds = milliseconds
        default:
            extra.append((key, value))
        }
    }

    /// The driver's configuration: TLS as `sslmode` says, the connect timeout, and the session's
    /// start-up parameters (`application_name=ferry`, `TimeZone=UTC` and `DateStyle=ISO`, so dates
    /// and times read the same whatever the server's defaults, and `statement_timeout` when set):
    /// no statement is spent on them after connecting.
    public func connectionConfiguration() throws(URLError) -> PostgresConnection.Configuration {
        let tls: PostgresConnection.Configuration.TLS
        switch sslMode {
        case .disable:
            tls = .disable
        case .require, .verifyFull:
            var configuration = TLSConfiguration.makeClientConfiguration()
            if sslMode == .require { configuration.certificateVerification = .none }
            do {
                tls = .require(try NIOSSLContext(configuration: configuration))
            } catch {
                throw URLError("cannot set up TLS: \(error)")
            }
        }
        var configuration = PostgresConnection.Configuration(host: host, port: port, username: user, password: password,
                                                             database: database, tls: tls)
        configuration.options.connectTimeout = .seconds(Int64(connectTimeoutSeconds))
        var parameters = [("application_name", "ferry"), ("TimeZone", "UTC"), ("DateStyle", "ISO")]
        if let statementTimeoutMilliseconds { parameters.append(("statement_timeout", String(statementTimeoutMilliseconds))) }
        configuration.options.additionalStartupParameters = parameters
        return configuration
    }

    /// `text` with any password replaced by `***`: the credentials end at the last `@`, so a
    /// password with an unencoded `/`, `?` or `#` is hidden all the same.
    public static func redacted(_ text: String) -> String {
        guard let schemeEnd = text.range(of: "://"), let at = text[schemeEnd.upperBound...].lastIndex(of: "@") else { return text }
        let user = text[schemeEnd.upperBound..<at].split(separator: ":", maxSplits: 1).first ?? ""
        return text[..<schemeEnd.upperBound] + user + ":***" + text[at...]
    }

    static func percentDecoded(_ text: Substring) -> String? {
        text.contains("%") ? String(text).removingPercentEncoding : String(text)
    }
}
