import FerryCore
import Foundation

/// Builds the WHERE clause of a list query over the `objects` table.
///
/// Fields are validated by ``FieldName/isValid(_:)`` before they get here, so they
/// can be spliced into JSON paths; values are always bound as arguments.
struct SQLQueryBuilder {
    private(set) var clauses: [String] = []
    private(set) var arguments: [RawValue] = []

    var whereClause: String { clauses.joined(separator: " AND ") }

    init(key: ResourceKey, filters: [Filter], includeDeleted: Bool, ids: [String]?) {
        clauses.append(SQLiteSession.parentIs + " AND " + Self.resourceName(key.resourceName))
        arguments.append(.text(key.parentID))
        if !includeDeleted { clauses.append("deleted = 0") }
        if let ids {
            if ids.isEmpty {
                clauses.append("0")
            } else {
                clauses.append("id IN (\(Array(repeating: "?", count: ids.count).joined(separator: ",")))")
                arguments += ids.map(RawValue.text)
            }
        }
        for filter in filters { add(filter) }
    }

    /// `resource_name = 'record'`: the kind written into the statement, not bound. SQLite plans a
    /// statement on `objects` by asking whether its `resource_name` term implies the partial index
    /// `objects_groups` (`resource_name = 'group' AND deleted = 0`); a bound kind there marks the
    /// parameter as one whose value may change the plan, and every later execution then plans the
    /// statement again (a page of records did twice a request). The kinds are the server's own
    /// lower-case names: a cached statement for each. Any other text is written as an SQL string
    /// literal all the same (its quotes doubled).
    static func resourceName(_ name: String) -> String {
        "resource_name = '" + name.replacingOccurrences(of: "'", with: "''") + "'"
    }

    /// The SQL expression for a field: a column for `id`, `last_modified` and `deleted`, `json_extract` otherwise.
    static func expression(_ field: String) -> String {
        switch field {
        case "id", "last_modified": return field
        case "deleted": return "(CASE WHEN deleted = 1 THEN 1 ELSE NULL END)"
        default: return "json_extract(data, '\(path(field))')"
        }
    }

    static func path(_ field: String) -> String {
        "$" + field.split(separator: ".").map { ".\"\($0)\"" }.joined()
    }

    static func isColumn(_ field: String) -> Bool { field == "id" || field == "last_modified" }

    /// SQLite's view of a JSON scalar as `json_extract` returns it.
    static func bindable(_ value: JSON) -> RawValue {
        switch value {
        case .null: .null
        case .bool(let b): .int(b ? 1 : 0)
        case .int(let i): .int(i)
        case .double(let d): .double(d)
        case .string(let s): .text(s)
        case .array, .object: .text(value.serialized())
        }
    }

    /// The equality test `field == value`, typed as JSON: `true` does not equal `1`.
    mutating func equality(_ field: String, _ value: JSON) -> String {
        let expr = Self.expression(field)
        switch value {
        case .null:
            return Self.isColumn(field) ? "0" : "json_type(data, '\(Self.path(field))') = 'null'"
        case .bool(let b):
            return Self.isColumn(field) ? "0" : "json_type(data, '\(Self.path(field))') = '\(b ? "true" : "false")'"
        case .int, .double, .string, .array, .object:
            if field == "id" {
                arguments.append(.text(value.stringValue ?? value.serialized()))
            } else {
                arguments.append(Self.bindable(value))
            }
            return "\(expr) = ?"
        }
    }

    mutating func add(_ filter: Filter) {
        let expr = Self.expression(filter.field)
        let value = filter.value
        switch filter.comparison {
        case .eq:
            clauses.append(equality(filter.field, value))
        case .not:
            clauses.append("NOT COALESCE(\(equality(filter.field, value)), 0)")
        case .lt, .gt, .min, .max:
            let op = [Comparison.lt: "<", .gt: ">", .min: ">=", .max: "<="][filter.comparison]!
            clauses.append("\(expr) \(op) ?")
            arguments.append(Self.bindable(value))
        case .in, .exclude:
            let tests = (value.arrayValue ?? [value]).map { equality(filter.field, $0) }
            clauses.append(FilterSQL.anyOf(tests, excluding: filter.comparison == .exclude, no: "0"))
        case .like:
            let pattern = FilterSQL.likePattern(value)
            clauses.append("\(expr) LIKE ? ESCAPE '\\'")
            arguments.append(.text(pattern))
        case .has:
            let exists = Self.isColumn(filter.field) ? "1" : "json_type(data, '\(Self.path(filter.field))') IS NOT NULL"
            let wanted = FilterSQL.wantsPresence(value)
            clauses.append(wanted ? exists : "NOT (\(exists))")
        case .contains, .containsAny:
            let values = value.arrayValue ?? [value]
            let path = Self.path(filter.field)
            var tests: [String] = []
            for v in values {
                tests.append("EXISTS (SELECT 1 FROM json_each(data, '\(path)') AS e WHERE e.value = ? AND e.type = '\(Self.jsonType(v))')")
                arguments.append(Self.bindable(v))
            }
            clauses.append(FilterSQL.arrayHolds(tests, all: filter.comparison == .contains,
                                                isArray: "json_type(data, '\(path)') = 'array'", no: "0"))
        }
    }

    static func jsonType(_ value: JSON) -> String {
        switch value {
        case .null: "null"
        case .bool(let b): b ? "true" : "false"
        case .int: "integer"
        case .double: "real"
        case .string: "text"
        case .array: "array"
        case .object: "object"
        }
    }

    /// Keyset pagination: rows strictly after `after` in `sort` order.
    /// SQLite orders NULL (a missing field) before every value, so NULL is the smallest.
    mutating func addPageAfter(_ after: PageAfter, sort: [Sort]) {
        let rule = FilterSQL.pageAfter(after, sort: sort, expression: Self.expression, operand: { _, value in
            let value = Self.bindable(value)
            if case .null = value { return nil }
            arguments.append(value)
            return "?"
        }, no: "0")
        clauses.append(rule)
    }
}
