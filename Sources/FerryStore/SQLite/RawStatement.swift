import GRDB
import GRDBSQLite

/// The hot statements of the SQLite backend (one object, a page, a grant, a record write),
/// run through SQLite's C API on GRDB's cached statements. GRDB's generic path (its
/// `StatementArguments`, `Row` and cursor objects) cost three times SQLite's own work on a
/// primary-key lookup; here a value is bound and a column read with no allocation but the
/// Swift string itself. Everything else keeps GRDB's API.
struct RawStatement {
    private let statement: SQLiteStatement
    private let db: Database
    private let sql: String

    /// The connection's cached statement for `sql`, reset and with `values` bound.
    init(_ db: Database, _ sql: String, _ values: [RawValue]) throws {
        let cached = try db.cachedStatement(sql: sql)
        self.statement = cached.sqliteStatement
        self.db = db
        self.sql = sql
        sqlite3_reset(statement)
        sqlite3_clear_bindings(statement)
        for (index, value) in zip(Int32(1)..., values) {
            let code: Int32
            switch value {
            case .text(let text):
                // Up to the first NUL, as GRDB binds text: SQLite's json_extract ends its results
                // there too, so a filter value with a NUL matches the stored value as before.
                code = text.withCString { sqlite3_bind_text(statement, index, $0, -1, Self.transient) }
            case .int(let int):
                code = sqlite3_bind_int64(statement, index, int)
            case .double(let double):
                code = sqlite3_bind_double(statement, index, double)
            case .blob(let bytes):
                code = bytes.withUnsafeBytes { sqlite3_bind_blob(statement, index, $0.baseAddress, Int32($0.count), Self.transient) }
            case .null:
                code = sqlite3_bind_null(statement, index)
            }
            guard code == SQLITE_OK else { throw error(code) }
        }
    }

    /// Runs it to the end (a write).
    func execute() throws {
        defer { sqlite3_reset(statement) }
        var code = sqlite3_step(statement)
        while code == SQLITE_ROW { code = sqlite3_step(statement) }
        guard code == SQLITE_DONE else { throw error(code) }
    }

    /// Calls `each` with every row until it returns false.
    func forEachRow(_ each: (RawRow) throws -> Bool) throws {
        defer { sqlite3_reset(statement) }
        while true {
            let code = sqlite3_step(statement)
            if code == SQLITE_DONE { return }
            guard code == SQLITE_ROW else { throw error(code) }
            if try !each(RawRow(statement: statement)) { return }
        }
    }

    /// The first row's value made by `read`, nil when there is no row.
    func first<T>(_ read: (RawRow) throws -> T) throws -> T? {
        var result: T?
        try forEachRow { row in
            result = try read(row)
            return false
        }
        return result
    }

    private func error(_ code: Int32) -> DatabaseError {
        DatabaseError(resultCode: ResultCode(rawValue: code), message: String(cString: sqlite3_errmsg(db.sqliteConnection)), sql: sql)
    }

    /// SQLite copies a bound value before the call returns.
    private static let transient = unsafeBitCast(-1, to: sqlite3_destructor_type.self)
}

/// A value bound to a ``RawStatement``.
enum RawValue {
    case text(String)
    case int(Int64)
    case double(Double)
    case blob([UInt8])
    case null
}

/// The current row of a ``RawStatement``; valid only inside the call that received it.
struct RawRow {
    let statement: SQLiteStatement

    func int(_ column: Int32) -> Int64 { sqlite3_column_int64(statement, column) }

    func text(_ column: Int32) -> String {
        guard let bytes = sqlite3_column_text(statement, column) else { return "" }
        let count = Int(sqlite3_column_bytes(statement, column))
        return String(decoding: UnsafeBufferPointer(start: bytes, count: count), as: UTF8.self)
    }

    /// The column's text, nil when it is NULL.
    func optionalText(_ column: Int32) -> String? {
        sqlite3_column_type(statement, column) == SQLITE_NULL ? nil : text(column)
    }

    /// The column's bytes, nil when it is NULL.
    func blob(_ column: Int32) -> [UInt8]? {
        guard sqlite3_column_type(statement, column) != SQLITE_NULL else { return nil }
        let count = Int(sqlite3_column_bytes(statement, column))
        guard count > 0, let bytes = sqlite3_column_blob(statement, column) else { return [] }
        return Array(UnsafeRawBufferPointer(start: bytes, count: count))
    }
}
