import Foundation

/// Where a `postgres://` endpoint points and how to connect: parsed from the URL, checked, no I/O.
///
/// `postgres://USER:PASSWORD@HOST[:PORT]/DATABASE[?SETTINGS]#[SCHEMA.]TABLE` (or `postgresql://`).
/// Percent-encode `@`, `:`, `/`, `?` and `#` in the user and the password (`%40`, …). Settings:
/// `sslmode=disable|require|verify-full` (default `disable`), `connect_timeout=SECONDS`
/// (default 10), `statement_timeout=MS` (default: the server's). Any other setting is an error.
///
/// ```swift
/// let location = try PostgresLocation(parsing: "postgres://ada:pw@db.local/crm?sslmode=require#users")
/// location.displayName   // postgres://ada@db.local:5432/crm#users
/// ```
struct PostgresLocation: Sendable, Equatable {
    enum SSLMode: String, Sendable, CaseIterable {
        /// Plain TCP.
        case disable
        /// TLS without checking the server's certificate (libpq's `require`).
        case require
        /// TLS with the certificate checked against the system's roots and the host name.
        case verifyFull = "verify-full"
    }

    var user: String
    var password: String?
    var host: String
    var port: Int
    var database: String
    /// nil: the connection's current schema (the first of the `search_path` that exists).
    var schema: String?
    var table: String
    var sslMode = SSLMode.disable
    var connectTimeoutSeconds = 10
    /// Sent as the session's `statement_timeout`; nil leaves the server's setting.
    var statementTimeoutMilliseconds: Int?

    static let settings = ["sslmode", "connect_timeout", "statement_timeout"]

    /// The URL without the password or the settings: what messages and the state database show.
    var displayName: String {
        let hostText = host.contains(":") ? "[\(host)]" : host
        return "postgres://\(user)@\(hostText):\(port)/\(database)#\(schema.map { $0 + "." } ?? "")\(table)"
    }

    /// `HOST:PORT`, for messages about the connection.
    var address: String { (host.contains(":") ? "[\(host)]" : host) + ":\(port)" }

    /// - Parameter auth: `USER:PASSWORD` from `--source-auth`/`--target-auth` (or their variables): wins over the URL's.
    init(parsing text: String, auth: String? = nil) throws(SyncError) {
        let shown = EndpointURL.redacted(text)
        guard let schemeEnd = text.range(of: "://"), ["postgres", "postgresql"].contains(text[..<schemeEnd.lowerBound]) else {
            throw .badInput("\(shown): a PostgreSQL endpoint starts with postgres:// or postgresql://")
        }
        var rest = Substring(text[schemeEnd.upperBound...])
        // #TABLE last: a password may hold a "#" only percent-encoded, but the last one is the table's anyway.
        guard let hash = rest.lastIndex(of: "#") else {
            throw .badInput("\(shown): name the table after #, e.g. postgres://USER:PASSWORD@HOST/DATABASE#users")
        }
        let tableText = String(rest[rest.index(after: hash)...])
        rest = rest[..<hash]
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
            guard let close = hostText.firstIndex(of: "]") else { throw .badInput("\(shown): an IPv6 host must end with ]") }
            let after = hostText[hostText.index(after: close)...]
            hostText = hostText[hostText.index(after: hostText.startIndex)..<close]
            if !after.isEmpty {
                guard after.hasPrefix(":") else { throw .badInput("\(shown): expected :PORT after the ]") }
                portText = after.dropFirst()
            }
        } else if let colon = hostText.lastIndex(of: ":") {
            portText = hostText[hostText.index(after: colon)...]
            hostText = hostText[..<colon]
        }
        guard !hostText.isEmpty else { throw .badInput("\(shown): no host (postgres://USER:PASSWORD@HOST:PORT/DATABASE#TABLE)") }
        host = String(hostText)
        port = 5432
        if let portText {
            guard let value = Int(portText), (1...65535).contains(value) else {
                throw .badInput("\(shown): the port must be a number from 1 to 65535, not \"\(portText)\"")
            }
            port = value
        }

        guard let database = Self.percentDecoded(databaseText), !database.isEmpty else {
            throw .badInput("\(shown): name the database after the host: postgres://USER:PASSWORD@\(host)/DATABASE#\(tableText.isEmpty ? "TABLE" : tableText)")
        }
        guard !database.contains("/") else { throw .badInput("\(shown): \"\(database)\" is not a database name") }
        self.database = database

        // credentials: the auth option, else the URL's
        var user: String? = nil
        var password: String? = nil
        if let userinfo {
            let parts = userinfo.split(separator: ":", maxSplits: 1, omittingEmptySubsequences: false)
            user = Self.percentDecoded(parts[0])
            if parts.count == 2 { password = Self.percentDecoded(parts[1]) }
            guard user != nil, parts.count == 1 || password != nil else {
                throw .badInput("\(shown): the user or the password is not properly percent-encoded")
            }
        }
        if let auth {
            guard let colon = auth.firstIndex(of: ":"), !auth.hasPrefix("Bearer ") else {
                throw .badInput("\(shown): credentials for PostgreSQL are USER:PASSWORD")
            }
            user = String(auth[..<colon])
            password = String(auth[auth.index(after: colon)...])
        }
        guard let user, !user.isEmpty else {
            throw .badInput("\(shown): no user: postgres://USER:PASSWORD@\(host)/\(database)#TABLE (or --source-auth/--target-auth USER:PASSWORD)")
        }
        self.user = user
        self.password = password

        // [SCHEMA.]TABLE, plain identifiers only: they are quoted too, but nothing odd gets that far.
        let parts = tableText.split(separator: ".", omittingEmptySubsequences: false).map(String.init)
        guard (1...2).contains(parts.count), parts.allSatisfy(Self.isPlainIdentifier) else {
            throw .badInput("\(shown): \"\(tableText)\" is not a plain table name (letters, digits and _, not starting with a digit, at most 63 bytes; SCHEMA.TABLE for another schema)")
        }
        table = parts.last!
        schema = parts.count == 2 ? parts[0] : nil
        let lower = table.lowercased()
        guard !lower.hasPrefix("pg_"), !lower.hasPrefix("_ferry") else {
            throw .badInput("\(shown): \"\(table)\" cannot be a table name here (pg_ and _ferry names are reserved)")
        }

        if let query, !query.isEmpty {
            var seen = Set<String>()
            for pair in query.split(separator: "&") {
                let keyValue = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
                let key = String(keyValue[0])
                let value = keyValue.count == 2 ? (Self.percentDecoded(keyValue[1]) ?? "") : ""
                guard Self.settings.contains(key) else {
                    throw .badInput("\(shown): unknown setting \"\(key)\" (known: \(Self.settings.joined(separator: ", ")))")
                }
                guard seen.insert(key).inserted else { throw .badInput("\(shown): setting \"\(key)\" is given twice") }
                switch key {
                case "sslmode":
                    guard let mode = SSLMode(rawValue: value) else {
                        throw .badInput("\(shown): sslmode must be \(SSLMode.allCases.map(\.rawValue).joined(separator: ", ")), not \"\(value)\"")
                    }
                    sslMode = mode
                case "connect_timeout":
                    guard let seconds = Int(value), (1...3600).contains(seconds) else {
                        throw .badInput("\(shown): connect_timeout must be a whole number of seconds from 1 to 3600, not \"\(value)\"")
                    }
                    connectTimeoutSeconds = seconds
                default:
                    guard let milliseconds = Int(value), (0...Int(Int32.max)).contains(milliseconds) else {
                        throw .badInput("\(shown): statement_timeout must be a whole number of milliseconds (0 for none), not \"\(value)\"")
                    }
                    statementTimeoutMilliseconds = milliseconds
                }
            }
        }
    }

    /// Letters, digits and `_`, not starting with a digit, at most 63 bytes (PostgreSQL's limit).
    static func isPlainIdentifier(_ name: String) -> Bool {
        guard let first = name.utf8.first, name.utf8.count <= 63 else { return false }
        func letter(_ b: UInt8) -> Bool { (b >= 0x41 && b <= 0x5A) || (b >= 0x61 && b <= 0x7A) || b == 0x5F }
        return letter(first) && name.utf8.allSatisfy { letter($0) || ($0 >= 0x30 && $0 <= 0x39) }
    }

    static func percentDecoded(_ text: Substring) -> String? {
        text.contains("%") ? String(text).removingPercentEncoding : String(text)
    }
}
