public import FerryCore

/// Field mapping and filtering, applied to every record between source and target.
///
/// Steps run in a fixed order: `filter` (on the source's field names), then `rename`,
/// `drop`, `set` and `cast`. A record the filter refuses is skipped by full and diff
/// runs; in an incremental run it becomes a delete, so a record that stops matching
/// also leaves the target.
public struct Transform: Sendable, Equatable {
    /// Conditions every kept record meets (all of them).
    public var filter: [Condition] = []
    /// Old name → new name.
    public var rename: [String: String] = [:]
    /// Fields removed.
    public var drop: [String] = []
    /// Fields set to a constant.
    public var set: [String: JSON] = [:]
    /// Fields converted to a type.
    public var cast: [String: CastType] = [:]

    public init() {}

    public var isIdentity: Bool { filter.isEmpty && rename.isEmpty && drop.isEmpty && set.isEmpty && cast.isEmpty }

    /// What became of one record.
    public enum Outcome: Equatable, Sendable {
        case keep([String: JSON])
        case filteredOut
        case failed(String)
    }

    public func apply(_ input: [String: JSON]) -> Outcome {
        if isIdentity { return .keep(input) }
        let object = JSON.object(input)
        for condition in filter where !condition.matches(object) { return .filteredOut }
        var fields = input
        if !rename.isEmpty {
            // All renames read the original names, so `a→b, b→a` swaps.
            var moved: [String: JSON] = [:]
            for (old, new) in rename {
                if let value = fields.removeValue(forKey: old) { moved[new] = value }
            }
            fields.merge(moved) { _, new in new }
        }
        for name in drop { fields.removeValue(forKey: name) }
        for (name, value) in set { fields[name] = value }
        for (name, type) in cast {
            guard let value = fields[name], value != .null else { continue }
            guard let converted = type.convert(value) else {
                return .failed("cannot cast field \"\(name)\" value \(value.serialized()) to \(type.rawValue)")
            }
            fields[name] = converted
        }
        return .keep(fields)
    }

    /// A type `cast` converts to.
    public enum CastType: String, Sendable, CaseIterable {
        case int, double, string, bool, json

        public init?(name: String) {
            switch name.lowercased() {
            case "int", "integer": self = .int
            case "double", "float", "number", "real": self = .double
            case "string", "text": self = .string
            case "bool", "boolean": self = .bool
            case "json": self = .json
            default: return nil
            }
        }

        func convert(_ value: JSON) -> JSON? {
            switch (self, value) {
            case (.int, .int): return value
            case (.int, .double(let d)): return d.rounded() == d && abs(d) < 9.2e18 ? .int(Int64(d)) : nil
            case (.int, .string(let s)): return Int64(s.trimmingWhitespace()).map(JSON.int)
            case (.int, .bool(let b)): return .int(b ? 1 : 0)
            case (.double, .int(let i)): return .double(Double(i))
            case (.double, .double): return value
            case (.double, .string(let s)): return Double(s.trimmingWhitespace()).flatMap { $0.isFinite ? JSON.double($0) : nil }
            case (.string, .string): return value
            case (.string, .int), (.string, .double), (.string, .bool): return .string(value.serialized())
            case (.string, _): return .string(value.serialized())
            case (.bool, .bool): return value
            case (.bool, .int(let i)) where i == 0 || i == 1: return .bool(i == 1)
            case (.bool, .string(let s)):
                switch s.lowercased() {
                case "true", "yes", "1": return .bool(true)
                case "false", "no", "0": return .bool(false)
                default: return nil
                }
            case (.json, .string(let s)): return try? JSON.parse(s)
            case (.json, _): return value
            default: return nil
            }
        }
    }

    /// `field OP value`, OP one of `=`, `!=`, `<`, `<=`, `>`, `>=`.
    public struct Condition: Sendable, Equatable, CustomStringConvertible {
        public enum Operator: String, Sendable, CaseIterable {
            case equal = "=", notEqual = "!=", less = "<", lessOrEqual = "<=", greater = ">", greaterOrEqual = ">="
        }
        public var field: String
        public var op: Operator
        public var value: JSON

        /// Parses `age>=18`, `status=active`, `name!="x"`. The value is JSON when it parses
        /// as JSON (`18`, `true`, `null`, `"18"`), text otherwise.
        public init(parsing text: String) throws(SyncError) {
            let chars = Array(text)
            guard let start = chars.firstIndex(where: { "=!<>".contains($0) }), start > 0 else {
                throw .badInput("filter \"\(text)\" must look like field=value, field!=value, field<value, field<=value, field>value or field>=value")
            }
            var end = start + 1
            if end < chars.count, chars[end] == "=" { end += 1 }
            let opText = String(chars[start..<end])
            guard let op = Operator(rawValue: opText) else {
                throw .badInput("filter \"\(text)\": unknown operator \"\(opText)\"")
            }
            field = String(chars[..<start]).trimmingWhitespace()
            let valueText = String(chars[end...]).trimmingWhitespace()
            value = (try? JSON.parse(valueText)) ?? .string(valueText)
            self.op = op
            guard !field.isEmpty else { throw .badInput("filter \"\(text)\" names no field") }
        }

        public func matches(_ record: JSON) -> Bool {
            let actual = record.value(atPath: field) ?? .null
            switch op {
            case .equal: return actual == value
            case .notEqual: return actual != value
            default:
                // Ordering only between values of one kind: a string is not "less" than 3.
                guard actual.typeName == value.typeName, actual != .null else { return false }
                let c = JSON.cursorOrder(actual, value)
                switch op {
                case .less: return c < 0
                case .lessOrEqual: return c <= 0
                case .greater: return c > 0
                default: return c >= 0
                }
            }
        }

        public var description: String { field + op.rawValue + value.serialized() }
    }
}

extension String {
    func trimmingWhitespace() -> String {
        var s = Substring(self)
        while let f = s.first, f.isWhitespace { s.removeFirst() }
        while let l = s.last, l.isWhitespace { s.removeLast() }
        return String(s)
    }
}
