// libFuzzer target: a list's querystring (filters, `_sort`, `_fields`, `_limit`, `_token`,
// `_since`/`_before`), from the parser to the SQL it becomes on SQLite.
// Built by bench/fuzz.sh with -sanitize=fuzzer,address; a crash or sanitizer report is a bug.
//
// The input is a querystring: `&`-separated `name=value` pairs (the value after the first `=`).
// `ListParameters.parse` must either refuse it with a 400 (errno 107) or return parameters that
// hold only valid field names. Those parameters then go through the SQLite backend's query
// builder exactly as `SQLiteStorage.list` and `count` put them together, and the statements
// must prepare, take exactly their arguments and run on a small table without an error: a field
// name that broke out of its JSON path or a filter that produced bad SQL fails here.
import GRDBSQLite

nonisolated(unsafe) private var database: OpaquePointer? = {
    var db: OpaquePointer?
    precondition(sqlite3_open(":memory:", &db) == SQLITE_OK)
    let setup = """
        CREATE TABLE parents (number INTEGER PRIMARY KEY, uri TEXT NOT NULL UNIQUE);
        INSERT INTO parents VALUES (1, '/buckets/b/collections/c');
        CREATE TABLE objects (parent INTEGER NOT NULL, resource_name TEXT NOT NULL, id TEXT NOT NULL,
                              last_modified INTEGER NOT NULL, deleted INTEGER NOT NULL DEFAULT 0, data TEXT NOT NULL);
        INSERT INTO objects VALUES
          (1, 'record', 'r1', 10, 0, '{"id":"r1","last_modified":10,"name":"ada","age":36,"tags":["a","b"],"a":{"b":{"c":1}}}'),
          (1, 'record', 'r2', 11, 0, '{"id":"r2","last_modified":11,"name":"bob","age":null,"tags":[1,2.5,true,null,{"x":1}]}'),
          (1, 'record', 'r3', 12, 1, '{"deleted":true,"id":"r3","last_modified":12}'),
          (1, 'record', 'r4', 13, 0, '{"id":"r4","last_modified":13,"name":"%_\\\\*","age":1e300,"tags":"not-an-array"}');
        """
    precondition(sqlite3_exec(db, setup, nil, nil, nil) == SQLITE_OK)
    return db
}()

private let SQLITE_TRANSIENT_ = unsafeBitCast(-1, to: sqlite3_destructor_type.self)

/// Prepares `sql`, binds `arguments` (there must be exactly as many placeholders), runs it to the end.
private func run(_ sql: String, _ arguments: [RawValue]) {
    var statement: OpaquePointer?
    let prepared = sqlite3_prepare_v2(database, sql, -1, &statement, nil)
    precondition(prepared == SQLITE_OK, "does not prepare (\(String(cString: sqlite3_errmsg(database)))): \(sql)")
    defer { sqlite3_finalize(statement) }
    precondition(Int(sqlite3_bind_parameter_count(statement)) == arguments.count,
                 "\(arguments.count) arguments for \(sqlite3_bind_parameter_count(statement)) placeholders: \(sql)")
    for (i, argument) in arguments.enumerated() {
        let index = Int32(i + 1)
        switch argument {
        case .text(let s): sqlite3_bind_text(statement, index, s, -1, SQLITE_TRANSIENT_)
        case .int(let n): sqlite3_bind_int64(statement, index, n)
        case .double(let d): sqlite3_bind_double(statement, index, d)
        case .null: sqlite3_bind_null(statement, index)
        }
    }
    var step = sqlite3_step(statement)
    while step == SQLITE_ROW { step = sqlite3_step(statement) }
    precondition(step == SQLITE_DONE, "fails (\(String(cString: sqlite3_errmsg(database)))): \(sql)")
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzFilter(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let text = String(decoding: UnsafeBufferPointer(start: data, count: size), as: UTF8.self)
    let query: [(String, String)] = text.split(separator: "&", omittingEmptySubsequences: true).map { pair in
        guard let equals = pair.firstIndex(of: "=") else { return (String(pair), "") }
        return (String(pair[..<equals]), String(pair[pair.index(after: equals)...]))
    }
    let parameters: ListParameters
    do {
        parameters = try ListParameters.parse(query, paginateBy: nil, maxFetchSize: 10_000)
    } catch {
        precondition(error.status == 400 && error.errno == 107, "refused with \(error.status)/\(error.errno): \(error.message)")
        return 0
    }
    precondition(parameters.limit >= 1 && parameters.limit <= 10_000, "limit \(parameters.limit)")
    precondition(parameters.offset >= 0)
    for filter in parameters.filters { precondition(FieldName.isValid(filter.field), "filter field \(filter.field)") }
    for sort in parameters.sort { precondition(FieldName.isValid(sort.field), "sort field \(sort.field)") }
    for field in parameters.fields ?? [] { precondition(FieldName.isValid(field), "field \(field)") }
    for key in parameters.after?.lastValues.keys ?? [:].keys { precondition(FieldName.isValid(key), "token field \(key)") }

    // As SQLiteStorage.list and count build them.
    let key = ResourceKey(parentID: "/buckets/b/collections/c", resourceName: "record")
    var builder = SQLQueryBuilder(key: key, filters: parameters.filters, includeDeleted: parameters.includeDeleted, ids: nil)
    run("SELECT COUNT(*) FROM objects WHERE " + builder.whereClause, builder.arguments)
    if let after = parameters.after { builder.addPageAfter(after, sort: parameters.sort) }
    let order = parameters.sort.map { SQLQueryBuilder.expression($0.field) + ($0.descending ? " DESC" : " ASC") }.joined(separator: ", ")
    run("SELECT id, last_modified, deleted, data FROM objects WHERE " + builder.whereClause + " ORDER BY " + order
        + " LIMIT \(parameters.limit)", builder.arguments)
    return 0
}

/// What RawStatement binds (its file needs GRDB, which this binary does not link).
enum RawValue {
    case text(String)
    case int(Int64)
    case double(Double)
    case null
}

/// The one name KintoError takes from KintoAPI (its file needs the whole server).
enum KintoAPI {
    static let tombstoneHorizonHeader = "Ferry-Tombstone-Horizon"
}
