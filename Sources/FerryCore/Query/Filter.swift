/// A comparison a list filter applies to a field (Kinto's `COMPARISON`).
public enum Comparison: String, Sendable, CaseIterable {
    case eq, not, lt, gt, min, max, `in`, exclude, like, has, contains, containsAny = "contains_any"

    /// The querystring prefix (`min_`, `contains_any_`), `nil` for plain equality.
    public var prefix: String? { self == .eq ? nil : rawValue + "_" }
}

/// One filter of a list query: `field <comparison> value`.
public struct Filter: Sendable, Hashable {
    public var field: String
    public var comparison: Comparison
    public var value: JSON

    public init(_ field: String, _ comparison: Comparison, _ value: JSON) {
        self.field = field
        self.comparison = comparison
        self.value = value
    }
}

/// One sort key of a list query.
public struct Sort: Sendable, Hashable {
    public var field: String
    public var descending: Bool

    public init(_ field: String, descending: Bool = false) {
        self.field = field
        self.descending = descending
    }
}

/// Where a page of a sorted list resumes: one rule per sort prefix, OR-ed
/// (Kinto's pagination rules): `(a > x) OR (a = x AND b < y) OR …`.
public struct PageAfter: Sendable, Hashable {
    /// The sort-field values of the last object of the previous page (`nil` = missing).
    public var lastValues: [String: JSON]

    public init(lastValues: [String: JSON]) {
        self.lastValues = lastValues
    }
}

/// Validation of field names used in filters, sorts and `_fields`.
public enum FieldName {
    /// A field name is one or more dot-separated segments of letters, digits, `_` and `-`
    /// (a segment does not start with `-`, which `_sort` reads as "descending").
    /// The longest name, in bytes.
    public static let maxLength = 256

    public static func isValid(_ name: String) -> Bool {
        guard !name.isEmpty, name.utf8.count <= maxLength else { return false }
        for segment in name.split(separator: ".", omittingEmptySubsequences: false) {
            guard let first = segment.first, first != "-" else { return false }
            for byte in segment.utf8 {
                switch byte {
                case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
                    UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "_"), UInt8(ascii: "-"):
                    continue
                default:
                    return false
                }
            }
        }
        return true
    }
}
