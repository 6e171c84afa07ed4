import FerryCore
import Foundation
import PostgresNIO

/// The WHERE clause of a list query over `objects` for PostgreSQL: JSON fields are read from the
/// `doc` (jsonb) column and compared as jsonb, values bound as parameters.
///
/// Fields are validated by ``FieldName/isValid(_:)`` before they get here; each path step is
/// still quoted as a text-array element.
struct PostgresQueryBuilder {
    private(set) var clauses: [String] = []
    private(set) var binds = PostgresBindings()
    private var count = 0

    var whereClause: String { clauses.joined(separator: " AND ") }

    init(key: ResourceKey, filters: [Filter], includeDeleted: Bool, ids: [String]?) {
        clauses.append("parent_id = \(bind(key.parentID)) AND resource_name = \(bind(key.resourceName))")
        if !includeDeleted { clauses.append("NOT deleted") }
        if let ids { clauses.append(ids.isEmpty ? "false" : "id = ANY(\(bind(ids))::text[])") }
        for filter in filters { add(filter) }
    }

    /// Only objects below every timestamp of the kind still held by a write
    /// (``PostgresSession/belowClaims(_:_:)``; the kind is bound first, as `$1` and `$2`).
    mutating func addBelowClaims() {
        clauses.append("last_modified <= coalesce(\(PostgresSession.belowClaims("$1", "$2")), \(Int64.max))")
    }

    /// A parameter placeholder for `value`.
    mutating func bind(_ value: some PostgresNonThrowingEncodable & Sendable) -> String {
        binds.append(value)
        count += 1
        return "$\(count)"
    }

    /// A text parameter: a NUL reads as U+FFFD, as in the `doc` column (PostgreSQL text holds no NUL).
    mutating func bind(_ value: String) -> String {
        binds.append(Self.withoutNUL(value))
        count += 1
        return "$\(count)"
    }

    /// A JSON value as a jsonb parameter (NULs read as U+FFFD, as in `doc`).
    mutating func bindJSON(_ value: JSON) -> String {
        let text = value.serialized()
        return bind(text.contains("\\u0000") ? Self.withoutNUL(value).serialized() : text) + "::jsonb"
    }

    static func withoutNUL(_ text: String) -> String {
        text.utf8.contains(0) ? text.replacingOccurrences(of: "\u{0}", with: "\u{FFFD}") : text
    }

    static func withoutNUL(_ value: JSON) -> JSON {
        switch value {
        case .string(let text): .string(withoutNUL(text))
        case .array(let items): .array(items.map(withoutNUL))
        case .object(let fields): .object(Dictionary(fields.map { (withoutNUL($0.key), withoutNUL($0.value)) }) { first, _ in first })
        default: value
        }
    }

    static func path(_ field: String) -> String {
        "'{" + field.split(separator: ".").map { "\"" + $0.replacingOccurrences(of: "\"", with: "\\\"") + "\"" }.joined(separator: ",") + "}'"
    }

    /// The SQL expression of a field: a column for `id` and `last_modified`, jsonb otherwise.
    static func expression(_ field: String) -> String {
        switch field {
        case "id", "last_modified": return field
        case "deleted": return "(CASE WHEN deleted THEN 'true'::jsonb END)"
        default: return "(doc #> \(path(field)))"
        }
    }

    static func isColumn(_ field: String) -> Bool { field == "id" || field == "last_modified" }

    /// A value for comparing with the field's expression.
    mutating func operand(_ field: String, _ value: JSON) -> String? {
        switch field {
        case "id":
            return bind(value.stringValue ?? value.serialized())
        case "last_modified":
            switch value {
            case .int(let i): return bind(i)
            case .double(let d): return bind(d) + "::float8"
            case .string(let s): return Int64(s).map { bind($0) }
            default: return nil
            }
        default:
            return bindJSON(value)
        }
    }

    mutating func equality(_ field: String, _ value: JSON) -> String {
        if case .null = value { return Self.isColumn(field) ? "false" : "jsonb_typeof(\(Self.expression(field))) = 'null'" }
        guard let operand = operand(field, value) else { return "false" }
        return "\(Self.expression(field)) = \(operand)"
    }

    mutating func add(_ filter: Filter) {
        let expr = Self.expression(filter.field)
        let value = filter.value
        switch filter.comparison {
        case .eq:
            clauses.append(equality(filter.field, value))
        case .not:
            clauses.append("NOT COALESCE(\(equality(filter.field, value)), false)")
        case .lt, .gt, .min, .max:
            let op = [Comparison.lt: "<", .gt: ">", .min: ">=", .max: "<="][filter.comparison]!
            if case .null = value {
                clauses.append("false")
            } else if let operand = operand(filter.field, value) {
                clauses.append("\(expr) \(op) \(operand)")
            } else {
                clauses.append("false")
            }
        case .in, .exclude:
            let tests = (value.arrayValue ?? [value]).map { equality(filter.field, $0) }
            clauses.append(FilterSQL.anyOf(tests, excluding: filter.comparison == .exclude, no: "false"))
        case .like:
            let pattern = FilterSQL.likePattern(value)
            let textExpr = Self.isColumn(filter.field) ? "\(filter.field)::text" : "(doc #>> \(Self.path(filter.field)))"
            clauses.append("\(textExpr) LIKE \(bind(pattern)) ESCAPE '\\'")
        case .has:
            let exists = Self.isColumn(filter.field) ? "true" : "\(expr) IS NOT NULL"
            let wanted = FilterSQL.wantsPresence(value)
            clauses.append(wanted ? exists : "NOT (\(exists))")
        case .contains, .containsAny:
            let tests = (value.arrayValue ?? [value]).map { "\(expr) @> \(bindJSON(.array([$0])))" }
            clauses.append(FilterSQL.arrayHolds(tests, all: filter.comparison == .contains,
                                                isArray: "COALESCE(jsonb_typeof(\(expr)) = 'array', false)", no: "false"))
        }
    }

    /// Keyset pagination: rows strictly after `after` in `sort` order (NULL sorts first, as in SQLite).
    mutating func addPageAfter(_ after: PageAfter, sort: [Sort]) {
        let rule = FilterSQL.pageAfter(after, sort: sort, expression: Self.expression, operand: { operand($0, $1) }, no: "false")
        clauses.append(rule)
    }
}
