public import FerryCore

/// Where a source's change stream stands after the changes a target has committed.
///
/// - `since`: a Kinto/Ferry collection timestamp (`_since`).
/// - `compound`: the last (cursor field, key) pair of a table or file, so records with
///   equal timestamps are neither lost nor repeated across batches. The key may also be
///   an object of key → record hash: every record already read with that exact value (a
///   REST API's checkpoint, which must still take a record that gets the same value later).
public enum Cursor: Sendable, Equatable, CustomStringConvertible {
    case since(Int64)
    case compound(value: JSON, key: JSON)

    /// The stored form (canonical JSON text).
    public var json: JSON {
        switch self {
        case .since(let t): ["since": .int(t)]
        case .compound(let value, let key): ["field": value, "key": key]
        }
    }

    /// The form reports show: a long key list becomes its length (`{"field": …, "keys": 12000}`).
    public var summary: JSON {
        if case .compound(let value, .object(let keys)) = self, keys.count > 20 {
            return ["field": value, "keys": .int(Int64(keys.count))]
        }
        return json
    }

    public init?(json: JSON) {
        if let t = json["since"]?.intValue {
            self = .since(t)
        } else if let value = json["field"], let key = json["key"] {
            self = .compound(value: value, key: key)
        } else {
            return nil
        }
    }

    public var description: String {
        switch self {
        case .since(let t): "since \(t)"
        case .compound(let value, .object(let keys)): "\(value.serialized()) / \(keys.count) record\(keys.count == 1 ? "" : "s")"
        case .compound(let value, let key): "\(value.serialized()) / \(key.serialized())"
        }
    }
}

extension JSON {
    /// A total order for cursor values: null < booleans < numbers < strings < arrays < objects,
    /// numbers by value, strings by their UTF-8 bytes (ISO-8601 dates sort by time).
    static func cursorOrder(_ a: JSON, _ b: JSON) -> Int {
        func rank(_ v: JSON) -> Int {
            switch v {
            case .null: 0
            case .bool: 1
            case .int, .double: 2
            case .string: 3
            case .array: 4
            case .object: 5
            }
        }
        let (ra, rb) = (rank(a), rank(b))
        if ra != rb { return ra < rb ? -1 : 1 }
        switch (a, b) {
        case (.bool(let x), .bool(let y)): return x == y ? 0 : (!x ? -1 : 1)
        case (.int(let x), .int(let y)): return x == y ? 0 : (x < y ? -1 : 1)
        case (.string(let x), .string(let y)):
            return x == y ? 0 : (Array(x.utf8).lexicographicallyPrecedes(y.utf8) ? -1 : 1)
        default:
            if let x = a.numberValue, let y = b.numberValue { return x == y ? 0 : (x < y ? -1 : 1) }
            let (x, y) = (a.serialized(), b.serialized())
            return x == y ? 0 : (x < y ? -1 : 1)
        }
    }

    var numberValue: Double? {
        switch self {
        case .int(let i): Double(i)
        case .double(let d): d
        default: nil
        }
    }
}

extension Cursor {
    /// Whether a (field value, key) pair comes after this compound cursor.
    static func isAfter(value: JSON, key: RecordKey, cursor: Cursor?) -> Bool {
        guard case .compound(let cv, let ck)? = cursor else { return true }
        let c = JSON.cursorOrder(value, cv)
        if c != 0 { return c > 0 }
        if case .object(let keys) = ck { return keys[key.text] == nil }
        let cursorKey = RecordKey(ck)?.text ?? ""
        return cursorKey.utf8.lexicographicallyPrecedes(key.text.utf8)
    }
}
