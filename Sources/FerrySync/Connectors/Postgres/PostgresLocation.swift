import FerryPostgres

/// Where a `postgres://` endpoint points: the server and database (``PostgresAddress``, the
/// parser the server's `--database` uses too) and the table after `#`. Parsed, checked, no I/O.
///
/// `postgres://USER:PASSWORD@HOST[:PORT]/DATABASE[?SETTINGS]#[SCHEMA.]TABLE` (or `postgresql://`).
/// Percent-encode `@`, `:`, `/`, `?` and `#` in the user and the password (`%40`, …). Settings:
/// `sslmode=disable|require|verify-full` (default `disable`), `connect_timeout=SECONDS`
/// (default 10), `statement_timeout=MS` (default: the server's). Any other setting is an error.
/// The address's fields read through (`location.host`, `location.sslMode`, …).
///
/// ```swift
/// let location = try PostgresLocation(parsing: "postgres://ada:pw@db.local/crm?sslmode=require#users")
/// location.displayName   // postgres://ada@db.local:5432/crm#users
/// ```
@dynamicMemberLookup
struct PostgresLocation: Sendable, Equatable {
    typealias SSLMode = PostgresAddress.SSLMode

    var server: PostgresAddress
    /// nil: the connection's current schema (the first of the `search_path` that exists).
    var schema: String?
    var table: String

    subscript<T>(dynamicMember keyPath: WritableKeyPath<PostgresAddress, T>) -> T {
        get { server[keyPath: keyPath] }
        set { server[keyPath: keyPath] = newValue }
    }

    subscript<T>(dynamicMember keyPath: KeyPath<PostgresAddress, T>) -> T {
        server[keyPath: keyPath]
    }

    /// The URL without the password or the settings: what messages and the state database show.
    var displayName: String { server.displayName + "#" + (schema.map { $0 + "." } ?? "") + table }

    /// - Parameter auth: `USER:PASSWORD` from `--source-auth`/`--target-auth` (or their variables): wins over the URL's.
    init(parsing text: String, auth: String? = nil) throws(SyncError) {
        let shown = PostgresAddress.redacted(text)
        let parsed: PostgresAddress.Parsed
        do {
            parsed = try PostgresAddress.parse(text, fragment: true, auth: auth)
        } catch {
            throw .badInput("\(shown): \(error.message)")
        }
        guard let tableText = parsed.fragment else {
            throw .badInput("\(shown): name the table after #, e.g. postgres://USER:PASSWORD@HOST/DATABASE#users")
        }
        server = parsed.address
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
    }

    /// Letters, digits and `_`, not starting with a digit, at most 63 bytes (PostgreSQL's limit).
    static func isPlainIdentifier(_ name: String) -> Bool {
        guard let first = name.utf8.first, name.utf8.count <= 63 else { return false }
        func letter(_ b: UInt8) -> Bool { (b >= 0x41 && b <= 0x5A) || (b >= 0x61 && b <= 0x7A) || b == 0x5F }
        return letter(first) && name.utf8.allSatisfy { letter($0) || ($0 >= 0x30 && $0 <= 0x39) }
    }
}
