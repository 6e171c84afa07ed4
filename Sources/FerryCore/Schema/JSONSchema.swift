import Foundation

/// A JSON Schema (a practical subset of draft 2020-12 / draft-07), compiled once, used to validate many records.
///
/// ```swift
/// let schema = try JSONSchema(JSON.parse(#"{"type": "object", "required": ["username"]}"#))
/// schema.validate(["age": 36])   // [/username: is required]
/// ```
///
/// Supported: `type`, `enum`, `const`, `multipleOf`, `minimum`, `maximum`, `exclusiveMinimum`,
/// `exclusiveMaximum` (number or draft-04 boolean), `minLength`, `maxLength`, `pattern`,
/// `items` (schema or draft-07 array), `prefixItems`, `additionalItems`, `minItems`, `maxItems`,
/// `uniqueItems`, `contains`, `minContains`, `maxContains`, `required`, `properties`,
/// `patternProperties`, `additionalProperties`, `propertyNames`, `minProperties`,
/// `maxProperties`, `dependentRequired`, `dependentSchemas`, `dependencies`, `allOf`, `anyOf`,
/// `oneOf`, `not`, `if`/`then`/`else`, boolean schemas, and local `$ref` (JSON pointers
/// `#/…` and `$anchor` names `#name`). Annotations (`title`, `format`, `default`, …) and
/// unknown keywords are ignored. `unevaluatedProperties`, `unevaluatedItems`, `$dynamicRef`
/// and `$recursiveRef` are refused rather than silently ignored, since ignoring them would
/// accept records the schema's author meant to reject.
///
/// Schemas and records may be hostile: nesting, pattern length, `$ref` cycles, evaluation
/// depth and the total work of one validation are all bounded (see the `max…` constants).
public struct JSONSchema: Sendable {
    /// The deepest nesting of subschemas a schema may have.
    public static let maxSchemaDepth = 64
    /// The longest `pattern` (or `patternProperties` key), in Unicode code points.
    public static let maxPatternLength = 1_000
    /// The deepest evaluation (subschemas applied inside subschemas) one validation may reach.
    public static let maxEvaluationDepth = 256
    /// The most evaluation steps (a subschema applied to a value, or a value hashed or
    /// compared for `enum`, `const` and `uniqueItems`) one validation may take.
    public static let maxEvaluationSteps = 1_000_000
    /// The most time the `pattern`s and `patternProperties` of one validation may spend
    /// matching. The regular expressions backtrack (ICU), so a pattern like `^(a+)+$` takes
    /// exponential time on some strings (ReDoS); past this budget the match is stopped and the
    /// value is refused as too costly to check, never accepted.
    public static let maxPatternTime: Duration = .milliseconds(250)

    /// The compiled subschemas; the root is the first.
    let nodes: [Node]

    /// Compiles a schema; throws for a schema that is not valid (naming the keyword and where it is, as a JSON pointer into the schema).
    public init(_ schema: JSON) throws(JSONSchemaError) {
        var compiler = Compiler(document: schema)
        nodes = try compiler.compileDocument()
    }

    /// The violations of `instance`, at most `limit`, in document order; empty when valid.
    ///
    /// A `limit` below 1 counts as 1, so an invalid value never comes back with no violation.
    /// When validation has to stop early (recursion too deep, too much work), the result is
    /// that single violation: the value is never taken as valid without being checked.
    public func validate(_ instance: JSON, limit: Int = 10) -> [JSONSchemaViolation] {
        let evaluator = Evaluator(nodes: nodes)
        return evaluator.run(instance, limit: max(limit, 1))
    }
}

/// A schema that cannot be compiled: its message names the keyword and where it is.
///
/// `"minimum" must be a number, not a string (at /properties/age/minimum in the schema)`
public struct JSONSchemaError: Error, Sendable, Equatable, CustomStringConvertible {
    /// What is wrong and where, for a person.
    public let message: String
    public var description: String { message }

    init(_ message: String) { self.message = message }

    /// An error about the keyword at `location` (a JSON pointer into the schema).
    init(keyword: String, _ problem: String, at location: String) {
        self.init("\"\(keyword)\" \(problem) (\(JSONSchemaError.place(location)))")
    }

    /// An error about the subschema at `location`.
    init(_ problem: String, at location: String) {
        self.init("\(problem) (\(JSONSchemaError.place(location)))")
    }

    static func place(_ location: String) -> String {
        location.isEmpty ? "at the root of the schema" : "at \(location) in the schema"
    }
}

/// One way a value fails its schema.
public struct JSONSchemaViolation: Sendable, Equatable, CustomStringConvertible {
    /// Where in the instance, as a JSON pointer ("" for the root, "/address/city", "/tags/2").
    public let path: String
    /// What is wrong, for a person: e.g. "must be an integer, not a string", "is required", "must be at most 150".
    public let message: String

    public init(path: String, message: String) {
        self.path = path
        self.message = message
    }

    /// `/age: must be at most 150`, or `(root): must be an object, not an array`.
    public var description: String { "\(path.isEmpty ? "(root)" : path): \(message)" }
}

// MARK: - Compiled form

extension JSONSchema {
    /// One compiled subschema: its assertions and applicators in evaluation order.
    struct Node: Sendable {
        /// Where the subschema is, as a JSON pointer into the schema document.
        let location: String
        var keywords: [Keyword] = []
        /// The `$ref` text, for messages about reference cycles.
        var reference: String?
    }

    /// One keyword, checked, with its subschemas as indices into ``JSONSchema/nodes``.
    /// (`indirect`: a keyword is one pointer, which keeps the evaluator's frames small.)
    indirect enum Keyword: Sendable {
        /// The `false` schema.
        case never
        case ref(Int)
        case type(TypeSet)
        case enumeration(ValueSet)
        case const(ValueSet)
        case multipleOf(Number)
        case minimum(Number, exclusive: Bool)
        case maximum(Number, exclusive: Bool)
        case minLength(Int)
        case maxLength(Int)
        case pattern(Pattern)
        case minItems(Int)
        case maxItems(Int)
        case uniqueItems
        /// `prefixItems` (or a draft-07 `items` array), then `rest` for the remaining elements.
        case items(prefix: [Int], rest: Int?)
        case contains(Int, min: Int, max: Int?)
        case minProperties(Int)
        case maxProperties(Int)
        case required([String])
        case dependentRequired([Dependency<[String]>])
        case properties(Properties)
        case propertyNames(Int)
        case dependentSchemas([Dependency<Int>])
        case allOf([Int])
        case anyOf([Int])
        case oneOf([Int])
        case not(Int)
        case conditional(if: Int, then: Int?, else: Int?)

        var kind: KeywordKind {
            switch self {
            case .ref: .ref
            case .items: .items
            case .contains: .contains
            case .properties: .properties
            case .propertyNames: .propertyNames
            case .dependentSchemas: .dependentSchemas
            case .allOf: .allOf
            case .anyOf: .anyOf
            case .oneOf: .oneOf
            case .not: .not
            case .conditional: .conditional
            case .never, .type, .enumeration, .const, .multipleOf, .minimum, .maximum, .minLength, .maxLength, .pattern,
                .minItems, .maxItems, .uniqueItems, .minProperties, .maxProperties, .required, .dependentRequired:
                .assertion
            }
        }
    }

    /// The keywords ``Evaluator/evaluate(_:_:depth:collect:)`` tells apart: those with
    /// subschemas, and the assertions. A plain tag: switching on it copies no payload.
    enum KeywordKind: Int, CaseIterable {
        case ref, items, contains, properties, propertyNames, dependentSchemas, allOf, anyOf, oneOf, not, conditional
        case assertion
    }

    /// What applies when the property `name` is present.
    struct Dependency<Value: Sendable>: Sendable {
        let name: String
        let value: Value
    }

    /// `properties`, `patternProperties` and `additionalProperties` together, since the last
    /// applies to the members that the first two do not match.
    struct Properties: Sendable {
        var named: [String: Int] = [:]
        var patterns: [(pattern: Pattern, schema: Int)] = []
        var additional: Int?

        /// The subschemas for the member `key`: its `properties` entry and every matching
        /// `patternProperties` entry, or else `additionalProperties`.
        func schemas(for key: String, matching: (Pattern, String) throws -> Bool) rethrows -> [Int] {
            var schemas: [Int] = []
            if let schema = named[key] { schemas.append(schema) }
            for entry in patterns where try matching(entry.pattern, key) { schemas.append(entry.schema) }
            if schemas.isEmpty, let additional { schemas.append(additional) }
            return schemas
        }
    }

    /// The JSON Schema type names.
    enum TypeName: String, Sendable, CaseIterable {
        case null, boolean, object, array, number, string, integer

        func accepts(_ value: JSON) -> Bool {
            switch (self, value) {
            case (.null, .null), (.boolean, .bool), (.object, .object), (.array, .array), (.string, .string): true
            case (.number, .int), (.number, .double), (.integer, .int): true
            case (.integer, .double(let d)): d.rounded(.towardZero) == d
            default: false
            }
        }

        /// The name with its article: "an integer", "a string", "null".
        var phrase: String {
            switch self {
            case .null: "null"
            case .integer, .object, .array: "an \(rawValue)"
            case .boolean, .number, .string: "a \(rawValue)"
            }
        }
    }

    /// The value of `type`: one name or several.
    struct TypeSet: Sendable {
        let names: [TypeName]

        func accepts(_ value: JSON) -> Bool { names.contains { $0.accepts(value) } }

        /// "a string", "a string or null", "a string, a number or null".
        var phrase: String {
            let phrases = names.map(\.phrase)
            guard phrases.count > 1 else { return phrases[0] }
            return phrases.dropLast().joined(separator: ", ") + " or " + phrases[phrases.count - 1]
        }
    }

    /// The values of `enum` or `const`, with their hashes so a lookup compares few values.
    struct ValueSet: Sendable {
        let values: [JSON]
        let hashes: [Int]

        init(_ values: [JSON]) {
            self.values = values
            hashes = values.map { Values.hash($0).hash }
        }
    }

    /// A number from a schema, integer or not, compared exactly with instance numbers.
    enum Number: Sendable, CustomStringConvertible {
        case int(Int64)
        case double(Double)

        init?(_ value: JSON) {
            switch value {
            case .int(let i): self = .int(i)
            case .double(let d): self = .double(d)
            default: return nil
            }
        }

        var description: String {
            switch self {
            case .int(let i): String(i)
            case .double(let d): JSON.format(d)
            }
        }

        var doubleValue: Double {
            switch self {
            case .int(let i): Double(i)
            case .double(let d): d
            }
        }

        /// -1, 0 or 1 as `a` is less than, equal to or greater than `b`, exactly (no rounding of
        /// large integers to doubles).
        static func compare(_ a: Number, _ b: Number) -> Int {
            switch (a, b) {
            case (.int(let x), .int(let y)): return x < y ? -1 : (x == y ? 0 : 1)
            case (.double(let x), .double(let y)): return x < y ? -1 : (x == y ? 0 : 1)
            case (.int(let x), .double(let y)): return compare(x, y)
            case (.double(let x), .int(let y)): return -compare(y, x)
            }
        }

        private static func compare(_ x: Int64, _ y: Double) -> Int {
            if y >= 9_223_372_036_854_775_808.0 { return -1 }
            if y < -9_223_372_036_854_775_808.0 { return 1 }
            let whole = y.rounded(.down)
            let w = Int64(whole)
            if x != w { return x < w ? -1 : 1 }
            return y > whole ? -1 : 0
        }

        /// Whether `self` is a whole multiple of `divisor` (which is greater than 0).
        func isMultiple(of divisor: Number) -> Bool {
            if case .int(let x) = self, case .int(let m) = divisor { return x % m == 0 }
            let quotient = doubleValue / divisor.doubleValue
            guard quotient.isFinite else { return false }
            // Decimal divisors (0.1, 0.01) are inexact in binary: allow for the rounding.
            return abs(quotient - quotient.rounded()) < 1e-9
        }
    }

    /// A compiled `pattern`: an ECMAScript regular expression, searched for (not anchored).
    struct Pattern: @unchecked Sendable {
        /// The pattern as written in the schema, for messages.
        let source: String
        /// Immutable once made; documented as safe to use from any thread.
        let regex: NSRegularExpression

        /// Whether the pattern is found in `string`; nil when the search ran past `deadline`
        /// (ICU reports progress about every millisecond, and is stopped there).
        func matches(_ string: String, until deadline: ContinuousClock.Instant) -> Bool? {
            var found = false
            var late = false
            regex.enumerateMatches(in: string, options: [.reportProgress], range: NSRange(location: 0, length: string.utf16.count)) { match, _, stop in
                if match != nil {
                    found = true
                    stop.pointee = true
                } else if ContinuousClock.now >= deadline {
                    late = true
                    stop.pointee = true
                }
            }
            return found ? true : late ? nil : false
        }

        /// Compiles `source`, or returns why it cannot be.
        static func compile(_ source: String) -> Result<Pattern, PatternProblem> {
            guard source.unicodeScalars.count <= JSONSchema.maxPatternLength else { return .failure(.tooLong) }
            guard let regex = try? NSRegularExpression(pattern: icuPattern(fromECMAScript: source)) else {
                return .failure(.invalid)
            }
            return .success(Pattern(source: source, regex: regex))
        }

        enum PatternProblem: Error { case tooLong, invalid }

        /// Rewrites the places where ECMAScript (which JSON Schema patterns follow) and ICU
        /// (which NSRegularExpression runs) read the same pattern differently:
        /// - `$` is the very end of the text in ECMAScript, but ICU also matches it before a
        ///   final line break, so `^[a-z]+$` would accept `"ada\n"`: it becomes `\z`;
        /// - `\d` and `\w` are ASCII in ECMAScript, any script's digits and letters in ICU;
        /// - `[` and `&` inside a class are literal in ECMAScript, set operators in ICU;
        /// - `[]` (matches nothing) and `[^]` (matches anything) are errors in ICU.
        static func icuPattern(fromECMAScript source: String) -> String {
            let scalars = Array(source.unicodeScalars)
            var out = String.UnicodeScalarView()
            func emit(_ text: String) { out.append(contentsOf: text.unicodeScalars) }
            var inClass = false
            var i = 0
            while i < scalars.count {
                let c = scalars[i]
                if c == "\\", i + 1 < scalars.count {
                    let next = scalars[i + 1]
                    switch (next, inClass) {
                    case ("d", false): emit("[0-9]")
                    case ("d", true): emit("0-9")
                    case ("D", false): emit("[^0-9]")
                    case ("w", false): emit("[a-zA-Z0-9_]")
                    case ("w", true): emit("a-zA-Z0-9_")
                    case ("W", false): emit("[^a-zA-Z0-9_]")
                    default: out.append(c); out.append(next)
                    }
                    i += 2
                    continue
                }
                if inClass {
                    switch c {
                    case "]": inClass = false; out.append(c)
                    case "[", "&": out.append("\\"); out.append(c)
                    default: out.append(c)
                    }
                } else if c == "[" {
                    let rest = scalars[(i + 1)...]
                    if rest.starts(with: ["]"]) {
                        emit("(?!)")
                        i += 2
                        continue
                    }
                    if rest.starts(with: ["^", "]"]) {
                        emit("[\\s\\S]")
                        i += 3
                        continue
                    }
                    inClass = true
                    out.append(c)
                    if rest.first == "^" {
                        out.append("^")
                        i += 1
                    }
                } else if c == "$" {
                    emit("\\z")
                } else {
                    out.append(c)
                }
                i += 1
            }
            return String(out)
        }
    }
}

// MARK: - Compiling

extension JSONSchema {
    /// Turns a schema document into ``Node``s: checks every keyword, compiles patterns,
    /// resolves `$ref`s and refuses reference cycles that would never end.
    struct Compiler {
        let document: JSON
        var nodes: [Node] = []
        /// The node compiled from each location (JSON pointer) in the document.
        var byLocation: [String: Int] = [:]
        var anchors: [String: Int] = [:]
        var pendingReferences: [PendingReference] = []
        /// The root `$id` without its fragment: `$ref`s that start with it are local.
        let baseID: String?

        /// A `$ref` seen while compiling, resolved once the whole document is compiled.
        struct PendingReference {
            let node: Int
            let keyword: Int
            let reference: String
            /// Where the `$ref` keyword is.
            let location: String
        }

        init(document: JSON) {
            self.document = document
            if case .string(let id)? = document["$id"], !id.hasPrefix("#") {
                baseID = String(id.prefix { $0 != "#" })
            } else {
                baseID = nil
            }
        }

        mutating func compileDocument() throws(JSONSchemaError) -> [Node] {
            _ = try compile(document, at: [], depth: 0)
            // Resolving can compile more (a `$ref` into a part of the document no keyword
            // made a schema), which can add references: loop until none is left.
            var next = 0
            while next < pendingReferences.count {
                let pending = pendingReferences[next]
                next += 1
                let target = try resolve(pending)
                nodes[pending.node].keywords[pending.keyword] = .ref(target)
            }
            try refuseEndlessCycles()
            return nodes
        }

        // MARK: Subschemas

        /// Compiles the subschema `value` found at `tokens`, `depth` subschemas below the root.
        mutating func compile(_ value: JSON, at tokens: [String], depth: Int) throws(JSONSchemaError) -> Int {
            let location = Pointer.string(tokens)
            if let existing = byLocation[location] { return existing }
            guard depth <= JSONSchema.maxSchemaDepth else {
                throw JSONSchemaError("the schema nests subschemas more than \(JSONSchema.maxSchemaDepth) levels deep", at: location)
            }
            let index = nodes.count
            nodes.append(Node(location: location))
            byLocation[location] = index
            switch value {
            case .bool(true):
                break
            case .bool(false):
                nodes[index].keywords = [.never]
            case .object(let members):
                var object = ObjectCompiler(members: members, tokens: tokens, depth: depth, index: index)
                try object.compile(into: &self)
                nodes[index].keywords = object.keywords
            default:
                throw JSONSchemaError("a schema must be an object or a boolean, not \(Values.phrase(value))", at: location)
            }
            return index
        }

        // MARK: References

        mutating func resolve(_ pending: PendingReference) throws(JSONSchemaError) -> Int {
            var reference = pending.reference
            if let base = baseID, !base.isEmpty, reference.hasPrefix(base) {
                reference.removeFirst(base.count)
                if reference.isEmpty { return 0 }
            }
            guard reference.hasPrefix("#") else {
                throw JSONSchemaError(
                    keyword: "$ref",
                    "must be a local reference starting with \"#\"; \"\(pending.reference)\" is remote, and remote references are not supported",
                    at: pending.location)
            }
            guard let fragment = String(reference.dropFirst()).removingPercentEncoding else {
                throw JSONSchemaError(keyword: "$ref", "\"\(pending.reference)\" has invalid percent-encoding", at: pending.location)
            }
            if fragment.isEmpty { return 0 }
            guard fragment.hasPrefix("/") else {
                guard let anchor = anchors[fragment] else {
                    throw JSONSchemaError(keyword: "$ref", "\"\(pending.reference)\" names no $anchor in the schema", at: pending.location)
                }
                return anchor
            }
            let tokens = Pointer.tokens(fragment)
            if let known = byLocation[Pointer.string(tokens)] { return known }
            guard let target = Pointer.value(in: document, at: tokens) else {
                throw JSONSchemaError(keyword: "$ref", "\"\(pending.reference)\" points to nothing in the schema", at: pending.location)
            }
            switch target {
            case .object, .bool: return try compile(target, at: tokens, depth: 0)
            default:
                throw JSONSchemaError(
                    keyword: "$ref", "\"\(pending.reference)\" points to \(Values.phrase(target)), not a schema", at: pending.location)
            }
        }

        /// The subschemas applied to the same value as `node` (not to a part of it).
        func inPlaceChildren(of node: Int) -> [Int] {
            var children: [Int] = []
            for keyword in nodes[node].keywords {
                switch keyword {
                case .ref(let target), .not(let target): children.append(target)
                case .allOf(let schemas), .anyOf(let schemas), .oneOf(let schemas): children += schemas
                case .dependentSchemas(let dependencies): children += dependencies.map(\.value)
                case .conditional(let condition, let then, let otherwise):
                    children.append(condition)
                    if let then { children.append(then) }
                    if let otherwise { children.append(otherwise) }
                default: break
                }
            }
            return children
        }

        /// Refuses a `$ref` that leads back to its own schema without stepping into a property
        /// or an item: validating with it would go round for ever (`{"$ref": "#"}`).
        func refuseEndlessCycles() throws(JSONSchemaError) {
            enum Mark { case unvisited, onPath, done }
            var marks = [Mark](repeating: .unvisited, count: nodes.count)
            for start in nodes.indices where marks[start] == .unvisited {
                // Depth-first, with an explicit stack: reference chains can be long.
                var stack: [(node: Int, children: [Int], next: Int)] = [(start, inPlaceChildren(of: start), 0)]
                marks[start] = .onPath
                while !stack.isEmpty {
                    let top = stack.count - 1
                    guard stack[top].next < stack[top].children.count else {
                        marks[stack[top].node] = .done
                        stack.removeLast()
                        continue
                    }
                    let child = stack[top].children[stack[top].next]
                    stack[top].next += 1
                    switch marks[child] {
                    case .done: continue
                    case .unvisited:
                        marks[child] = .onPath
                        stack.append((child, inPlaceChildren(of: child), 0))
                    case .onPath:
                        // The cycle is the stack from `child` up: name the reference that closes a step of it.
                        let cycle = stack.drop(while: { $0.node != child }).map(\.node)
                        let ring = cycle + [child]
                        let referrer = cycle.indices.first { k in
                            nodes[ring[k]].keywords.contains { if case .ref(ring[k + 1]) = $0 { true } else { false } }
                        }.map { ring[$0] } ?? stack[top].node
                        let node = nodes[referrer]
                        throw JSONSchemaError(
                            keyword: "$ref",
                            "\"\(node.reference ?? "")\" leads back to the same schema without stepping into a property or an item, "
                                + "so validation would never end",
                            at: node.location + "/$ref")
                    }
                }
            }
        }
    }

    /// Compiles the keywords of one object schema, in the order they are evaluated.
    struct ObjectCompiler {
        let members: [String: JSON]
        let tokens: [String]
        let depth: Int
        let index: Int
        var keywords: [Keyword] = []

        func location(_ keyword: String, _ more: String...) -> String {
            Pointer.string(tokens + [keyword] + more)
        }

        func error(_ keyword: String, _ problem: String, _ more: String...) -> JSONSchemaError {
            JSONSchemaError(keyword: keyword, problem, at: Pointer.string(tokens + [keyword] + more))
        }

        mutating func compile(into compiler: inout Compiler) throws(JSONSchemaError) {
            for unsupported in ["unevaluatedProperties", "unevaluatedItems", "$dynamicRef", "$recursiveRef"]
            where members[unsupported] != nil {
                throw error(unsupported, "is not supported")
            }
            try compileReference(&compiler)
            try compileDefinitions(&compiler)
            try compileType()
            try compileValues()
            try compileNumbers()
            try compileStrings()
            try compileArrays(&compiler)
            try compileObjects(&compiler)
            try compileApplicators(&compiler)
        }

        // MARK: Value readers

        func number(_ keyword: String) throws(JSONSchemaError) -> Number? {
            guard let value = members[keyword] else { return nil }
            guard let number = Number(value) else {
                throw error(keyword, "must be a number, not \(Values.phrase(value))")
            }
            return number
        }

        func count(_ keyword: String) throws(JSONSchemaError) -> Int? {
            guard let value = members[keyword] else { return nil }
            let shown = Number(value) == nil ? Values.phrase(value) : Values.preview(value)
            let problem = "must be a non-negative integer, not \(shown)"
            switch value {
            case .int(let i):
                guard i >= 0 else { throw error(keyword, problem) }
                return Int(i)
            case .double(let d) where d.rounded() == d:
                guard d >= 0 else { throw error(keyword, problem) }
                return d >= 9.2e18 ? Int.max : Int(d)
            default:
                throw error(keyword, problem)
            }
        }

        func flag(_ keyword: String) throws(JSONSchemaError) -> Bool? {
            guard let value = members[keyword] else { return nil }
            guard case .bool(let flag) = value else {
                throw error(keyword, "must be a boolean, not \(Values.phrase(value))")
            }
            return flag
        }

        func strings(_ keyword: String, _ value: JSON, _ more: String...) throws(JSONSchemaError) -> [String] {
            let location = Pointer.string(tokens + [keyword] + more)
            guard case .array(let elements) = value else {
                throw JSONSchemaError(keyword: keyword, "must be an array of strings, not \(Values.phrase(value))", at: location)
            }
            var result: [String] = []
            for (i, element) in elements.enumerated() {
                guard case .string(let string) = element else {
                    throw JSONSchemaError(
                        keyword: keyword, "must be an array of strings, but item \(i) is \(Values.phrase(element))", at: location + "/\(i)")
                }
                result.append(string)
            }
            return result
        }

        func pattern(_ keyword: String, _ source: String, _ more: String...) throws(JSONSchemaError) -> Pattern {
            let location = Pointer.string(tokens + [keyword] + more)
            switch Pattern.compile(source) {
            case .success(let pattern): return pattern
            case .failure(.tooLong):
                throw JSONSchemaError(keyword: keyword, "has a pattern longer than \(JSONSchema.maxPatternLength) characters", at: location)
            case .failure(.invalid):
                throw JSONSchemaError(keyword: keyword, "has an invalid regular expression: \(Values.preview(.string(source)))", at: location)
            }
        }

        func subschema(_ keyword: String, _ compiler: inout Compiler) throws(JSONSchemaError) -> Int? {
            guard let value = members[keyword] else { return nil }
            switch value {
            case .object, .bool: return try compiler.compile(value, at: tokens + [keyword], depth: depth + 1)
            default:
                throw error(keyword, "must be a schema (an object or a boolean), not \(Values.phrase(value))")
            }
        }

        func subschemaList(_ keyword: String, _ compiler: inout Compiler) throws(JSONSchemaError) -> [Int]? {
            guard let value = members[keyword] else { return nil }
            guard case .array(let elements) = value else {
                throw error(keyword, "must be a non-empty array of schemas, not \(Values.phrase(value))")
            }
            guard !elements.isEmpty else { throw error(keyword, "must be a non-empty array of schemas, not an empty one") }
            var result: [Int] = []
            for (i, element) in elements.enumerated() {
                switch element {
                case .object, .bool: result.append(try compiler.compile(element, at: tokens + [keyword, String(i)], depth: depth + 1))
                default:
                    throw error(keyword, "must be an array of schemas (objects or booleans), but item \(i) is \(Values.phrase(element))", String(i))
                }
            }
            return result
        }

        /// An object whose members are schemas, in key order.
        func subschemaMap(_ keyword: String, _ compiler: inout Compiler) throws(JSONSchemaError) -> [(String, Int)]? {
            guard let value = members[keyword] else { return nil }
            guard case .object(let map) = value else {
                throw error(keyword, "must be an object whose values are schemas, not \(Values.phrase(value))")
            }
            var result: [(String, Int)] = []
            for name in JSON.sortedKeys(map) {
                let element = map[name]!
                switch element {
                case .object, .bool: result.append((name, try compiler.compile(element, at: tokens + [keyword, name], depth: depth + 1)))
                default:
                    throw error(
                        keyword, "must be an object whose values are schemas (objects or booleans), but \"\(name)\" is \(Values.phrase(element))",
                        name)
                }
            }
            return result
        }

        // MARK: Keywords

        mutating func compileReference(_ compiler: inout Compiler) throws(JSONSchemaError) {
            if let anchor = members["$anchor"] {
                guard case .string(let name) = anchor else { throw error("$anchor", "must be a string, not \(Values.phrase(anchor))") }
                compiler.anchors[name] = index
            }
            if case .string(let id)? = members["$id"], id.hasPrefix("#"), id.count > 1 {
                compiler.anchors[String(id.dropFirst())] = index  // draft-07's plain-name fragment
            }
            guard let value = members["$ref"] else { return }
            guard case .string(let reference) = value else { throw error("$ref", "must be a string, not \(Values.phrase(value))") }
            compiler.pendingReferences.append(
                .init(node: index, keyword: keywords.count, reference: reference, location: location("$ref")))
            compiler.nodes[index].reference = reference
            keywords.append(.ref(-1))  // set once the whole document is compiled
        }

        func compileDefinitions(_ compiler: inout Compiler) throws(JSONSchemaError) {
            // Compiled up front so a broken definition is an error even if nothing uses it yet.
            _ = try subschemaMap("$defs", &compiler)
            _ = try subschemaMap("definitions", &compiler)
        }

        mutating func compileType() throws(JSONSchemaError) {
            guard let value = members["type"] else { return }
            let known = TypeName.allCases.map(\.rawValue).joined(separator: ", ")
            var names: [TypeName] = []
            switch value {
            case .string(let name):
                guard let type = TypeName(rawValue: name) else { throw error("type", "names an unknown type \"\(name)\"; the types are \(known)") }
                names = [type]
            case .array(let elements) where !elements.isEmpty:
                for (i, element) in elements.enumerated() {
                    guard case .string(let name) = element else {
                        throw error("type", "must be a type name or an array of them, not \(Values.phrase(element))", String(i))
                    }
                    guard let type = TypeName(rawValue: name) else {
                        throw error("type", "names an unknown type \"\(name)\"; the types are \(known)", String(i))
                    }
                    guard !names.contains(type) else { throw error("type", "names \"\(name)\" twice", String(i)) }
                    names.append(type)
                }
            case .array:
                throw error("type", "must be a type name or a non-empty array of them, not an empty array")
            default:
                throw error("type", "must be a type name or a non-empty array of them, not \(Values.phrase(value))")
            }
            keywords.append(.type(TypeSet(names: names)))
        }

        mutating func compileValues() throws(JSONSchemaError) {
            if let value = members["enum"] {
                guard case .array(let elements) = value else { throw error("enum", "must be an array, not \(Values.phrase(value))") }
                keywords.append(.enumeration(ValueSet(elements)))
            }
            if let value = members["const"] {
                keywords.append(.const(ValueSet([value])))
            }
        }

        mutating func compileNumbers() throws(JSONSchemaError) {
            if let divisor = try number("multipleOf") {
                guard divisor.doubleValue > 0 else { throw error("multipleOf", "must be greater than 0, not \(divisor)") }
                keywords.append(.multipleOf(divisor))
            }
            // Draft-04 wrote `"minimum": 5, "exclusiveMinimum": true`; draft-06 on, `"exclusiveMinimum": 5`.
            for (inclusiveName, exclusiveName) in [("minimum", "exclusiveMinimum"), ("maximum", "exclusiveMaximum")] {
                func bound(_ value: Number, exclusive: Bool) -> Keyword {
                    inclusiveName == "minimum" ? .minimum(value, exclusive: exclusive) : .maximum(value, exclusive: exclusive)
                }
                let inclusive = try number(inclusiveName)
                var draft04Exclusive = false
                if case .bool(let flag)? = members[exclusiveName] {
                    draft04Exclusive = flag
                } else if let exclusive = try number(exclusiveName) {
                    keywords.append(bound(exclusive, exclusive: true))
                }
                if let inclusive { keywords.append(bound(inclusive, exclusive: draft04Exclusive)) }
            }
        }

        mutating func compileStrings() throws(JSONSchemaError) {
            if let n = try count("minLength") { keywords.append(.minLength(n)) }
            if let n = try count("maxLength") { keywords.append(.maxLength(n)) }
            if let value = members["pattern"] {
                guard case .string(let source) = value else { throw error("pattern", "must be a string, not \(Values.phrase(value))") }
                keywords.append(.pattern(try pattern("pattern", source)))
            }
        }

        // The compiling of subschemas recurses: the functions on that path are kept small, so
        // that the deepest schema allowed compiles on a 512 KB thread stack in a debug build.

        mutating func compileArrays(_ compiler: inout Compiler) throws(JSONSchemaError) {
            if let n = try count("minItems") { keywords.append(.minItems(n)) }
            if let n = try count("maxItems") { keywords.append(.maxItems(n)) }
            if try flag("uniqueItems") == true { keywords.append(.uniqueItems) }
            try compileItems(&compiler)
            try compileContains(&compiler)
        }

        mutating func compileItems(_ compiler: inout Compiler) throws(JSONSchemaError) {
            var prefix = try subschemaList("prefixItems", &compiler)
            var rest: Int?
            if case .array = members["items"] {
                guard prefix == nil else { throw error("items", "must be a schema when \"prefixItems\" is present, not an array") }
                prefix = try subschemaList("items", &compiler)  // draft-07's tuple form
            } else {
                rest = try subschema("items", &compiler)
            }
            let additional = try subschema("additionalItems", &compiler)
            if rest == nil, prefix != nil { rest = additional }  // ignored without a tuple, as the drafts say
            if prefix != nil || rest != nil { keywords.append(.items(prefix: prefix ?? [], rest: rest)) }
        }

        mutating func compileContains(_ compiler: inout Compiler) throws(JSONSchemaError) {
            let minContains = try count("minContains")
            let maxContains = try count("maxContains")
            if let contains = try subschema("contains", &compiler) {
                keywords.append(.contains(contains, min: minContains ?? 1, max: maxContains))
            }
        }

        mutating func compileObjects(_ compiler: inout Compiler) throws(JSONSchemaError) {
            if let n = try count("minProperties") { keywords.append(.minProperties(n)) }
            if let n = try count("maxProperties") { keywords.append(.maxProperties(n)) }
            if let value = members["required"] { keywords.append(.required(try strings("required", value))) }
            var requiredWith = try dependentRequired()
            var schemasWith = try subschemaMap("dependentSchemas", &compiler)?.map { Dependency(name: $0.0, value: $0.1) } ?? []
            try compileDependencies(&compiler, requiredWith: &requiredWith, schemasWith: &schemasWith)
            if !requiredWith.isEmpty { keywords.append(.dependentRequired(requiredWith)) }
            try compileProperties(&compiler)
            if let names = try subschema("propertyNames", &compiler) { keywords.append(.propertyNames(names)) }
            if !schemasWith.isEmpty { keywords.append(.dependentSchemas(schemasWith)) }
        }

        func dependentRequired() throws(JSONSchemaError) -> [Dependency<[String]>] {
            guard let value = members["dependentRequired"] else { return [] }
            guard case .object(let map) = value else {
                throw error("dependentRequired", "must be an object whose values are arrays of strings, not \(Values.phrase(value))")
            }
            var result: [Dependency<[String]>] = []
            for name in JSON.sortedKeys(map) {
                result.append(.init(name: name, value: try strings("dependentRequired", map[name]!, name)))
            }
            return result
        }

        /// Draft-07's `dependencies`: for each property, an array of names or a schema.
        func compileDependencies(
            _ compiler: inout Compiler, requiredWith: inout [Dependency<[String]>], schemasWith: inout [Dependency<Int>]
        ) throws(JSONSchemaError) {
            guard let value = members["dependencies"] else { return }
            guard case .object(let map) = value else {
                throw error("dependencies", "must be an object whose values are arrays of strings or schemas, not \(Values.phrase(value))")
            }
            for name in JSON.sortedKeys(map) {
                switch map[name]! {
                case .array:
                    requiredWith.append(.init(name: name, value: try strings("dependencies", map[name]!, name)))
                case .object, .bool:
                    let schema = try compiler.compile(map[name]!, at: tokens + ["dependencies", name], depth: depth + 1)
                    schemasWith.append(.init(name: name, value: schema))
                default:
                    let problem = "must be an object whose values are arrays of strings or schemas, but \"\(name)\" is \(Values.phrase(map[name]!))"
                    throw error("dependencies", problem, name)
                }
            }
        }

        mutating func compileProperties(_ compiler: inout Compiler) throws(JSONSchemaError) {
            var properties = Properties()
            for (name, schema) in try subschemaMap("properties", &compiler) ?? [] {
                properties.named[name] = schema
            }
            for (source, schema) in try subschemaMap("patternProperties", &compiler) ?? [] {
                properties.patterns.append((try pattern("patternProperties", source, source), schema))
            }
            properties.additional = try subschema("additionalProperties", &compiler)
            if !properties.named.isEmpty || !properties.patterns.isEmpty || properties.additional != nil {
                keywords.append(.properties(properties))
            }
        }

        mutating func compileApplicators(_ compiler: inout Compiler) throws(JSONSchemaError) {
            if let schemas = try subschemaList("allOf", &compiler) { keywords.append(.allOf(schemas)) }
            if let schemas = try subschemaList("anyOf", &compiler) { keywords.append(.anyOf(schemas)) }
            if let schemas = try subschemaList("oneOf", &compiler) { keywords.append(.oneOf(schemas)) }
            if let schema = try subschema("not", &compiler) { keywords.append(.not(schema)) }
            let condition = try subschema("if", &compiler)
            let then = try subschema("then", &compiler)
            let otherwise = try subschema("else", &compiler)
            // Without "if", "then" and "else" do nothing (but must still be valid schemas).
            if let condition, then != nil || otherwise != nil {
                keywords.append(.conditional(if: condition, then: then, else: otherwise))
            }
        }
    }
}

// MARK: - Evaluating

extension JSONSchema {
    /// One step of a path into the instance.
    enum PathToken: Sendable {
        case key(String)
        case index(Int)

        /// Document order: array elements by index, object members by key (as serialized).
        static func precedes(_ a: [PathToken], _ b: [PathToken]) -> Bool {
            for (x, y) in zip(a, b) {
                switch (x, y) {
                case (.index(let i), .index(let j)): if i != j { return i < j }
                case (.key(let k), .key(let l)): if k != l { return k.utf16.lexicographicallyPrecedes(l.utf16) }
                case (.index, .key): return true
                case (.key, .index): return false
                }
            }
            return a.count < b.count
        }

        static func pointer(_ tokens: [PathToken]) -> String {
            Pointer.string(tokens.map {
                switch $0 {
                case .key(let key): key
                case .index(let index): String(index)
                }
            })
        }
    }

    /// Why a validation stopped before its end. A class, so that throwing it through the
    /// recursion moves one pointer.
    final class Stop: Error {
        let path: [PathToken]
        let message: String

        init(path: [PathToken], message: String) {
            self.path = path
            self.message = message
        }
    }

    /// Applies compiled nodes to one instance. One per validation: it keeps the path being
    /// visited, the violations found and the work done so far.
    final class Evaluator {
        let nodes: [Node]
        var path: [PathToken] = []
        var found: [(path: [PathToken], message: String)] = []
        var steps = 0

        init(nodes: [Node]) { self.nodes = nodes }

        func run(_ instance: JSON, limit: Int) -> [JSONSchemaViolation] {
            do {
                _ = try evaluate(0, instance, depth: 0, collect: true)
            } catch let stop as Stop {
                return [JSONSchemaViolation(path: PathToken.pointer(stop.path), message: stop.message)]
            } catch {
                preconditionFailure("validation throws only Stop, not \(error)")
            }
            // allOf branches can report the same thing twice: keep it once, then order.
            var seen = Set<String>()
            var unique: [(offset: Int, path: [PathToken], pointer: String, message: String)] = []
            for (offset, violation) in found.enumerated() {
                let pointer = PathToken.pointer(violation.path)
                if seen.insert(pointer + "\u{0}" + violation.message).inserted {
                    unique.append((offset, violation.path, pointer, violation.message))
                }
            }
            unique.sort { a, b in
                if PathToken.precedes(a.path, b.path) { return true }
                if PathToken.precedes(b.path, a.path) { return false }
                return a.offset < b.offset
            }
            return unique.prefix(limit).map { JSONSchemaViolation(path: $0.pointer, message: $0.message) }
        }

        /// When this validation's pattern matching must stop (set at its first match).
        var patternDeadline: ContinuousClock.Instant?

        /// Whether `pattern` is found in `string`, within ``JSONSchema/maxPatternTime`` for the
        /// whole validation; stops the validation past it.
        func matches(_ pattern: Pattern, _ string: String) throws -> Bool {
            let deadline = patternDeadline ?? ContinuousClock.now + JSONSchema.maxPatternTime
            patternDeadline = deadline
            guard let found = pattern.matches(string, until: deadline) else {
                throw Stop(path: path, message: "is too costly to validate against this schema (its patterns took more than \(JSONSchema.maxPatternTime))")
            }
            return found
        }

        /// Counts `amount` steps of work, stopping the validation past the budget.
        func spend(_ amount: Int = 1) throws {
            steps += amount
            guard steps <= JSONSchema.maxEvaluationSteps else {
                throw Stop(path: [], message: "is too costly to validate against this schema (more than \(JSONSchema.maxEvaluationSteps) steps)")
            }
        }

        /// Records a violation at the current path (plus `extra`) when collecting.
        func fail(_ message: @autoclosure () -> String, at extra: PathToken? = nil, collect: Bool) -> Bool {
            if collect {
                var location = path
                if let extra { location.append(extra) }
                found.append((location, message()))
            }
            return false
        }

        /// Whether `instance` is valid against node `index`. With `collect`, every violation is
        /// recorded; without, it answers as soon as it knows (for anyOf, oneOf, not, if, contains).
        ///
        /// Throws only ``Stop``. The recursion runs through here and the `apply…` functions, which
        /// keep their stack frames small (one call site here, messages built elsewhere), so the
        /// deepest evaluation allowed fits a 512 KB thread stack even in a debug build.
        func evaluate(_ index: Int, _ instance: JSON, depth: Int, collect: Bool) throws -> Bool {
            try spend()
            guard depth <= JSONSchema.maxEvaluationDepth else { throw tooDeep() }
            let keywords = nodes[index].keywords
            var valid = true
            for i in keywords.indices {
                let keyword = keywords[i]
                if try !Evaluator.appliers[keyword.kind.rawValue](self, keyword, instance, depth, collect) {
                    valid = false
                    if !collect { return false }
                }
            }
            return valid
        }

        typealias Applier = @Sendable (Evaluator, Keyword, JSON, _ depth: Int, _ collect: Bool) throws -> Bool

        /// How to apply each ``KeywordKind``, indexed by its raw value. One call through this
        /// table, rather than a switch with a call per kind, keeps `evaluate`'s frame small.
        static let appliers: [Applier] = KeywordKind.allCases.map { kind -> Applier in
            switch kind {
            case .ref: { try $0.applyRef($1, $2, depth: $3, collect: $4) }
            case .items: { try $0.applyItems($1, $2, depth: $3, collect: $4) }
            case .contains: { try $0.applyContains($1, $2, depth: $3, collect: $4) }
            case .properties: { try $0.applyProperties($1, $2, depth: $3, collect: $4) }
            case .propertyNames: { try $0.applyPropertyNames($1, $2, depth: $3, collect: $4) }
            case .dependentSchemas: { try $0.applyDependentSchemas($1, $2, depth: $3, collect: $4) }
            case .allOf: { try $0.applyAllOf($1, $2, depth: $3, collect: $4) }
            case .anyOf: { try $0.applyAnyOf($1, $2, depth: $3, collect: $4) }
            case .oneOf: { try $0.applyOneOf($1, $2, depth: $3, collect: $4) }
            case .not: { try $0.applyNot($1, $2, depth: $3, collect: $4) }
            case .conditional: { try $0.applyConditional($1, $2, depth: $3, collect: $4) }
            case .assertion: { try $0.check($1, $2, collect: $4) }
            }
        }

        @inline(never) func tooDeep() -> Stop {
            Stop(path: path, message: "the schema recurses too deeply (more than \(JSONSchema.maxEvaluationDepth) levels)")
        }

        // MARK: Subschemas

        func applyRef(_ keyword: Keyword, _ instance: JSON, depth: Int, collect: Bool) throws -> Bool {
            guard case .ref(let target) = keyword else { return true }
            return try evaluate(target, instance, depth: depth + 1, collect: collect)
        }

        func applyItems(_ keyword: Keyword, _ instance: JSON, depth: Int, collect: Bool) throws -> Bool {
            guard case .items(let prefix, let rest) = keyword, case .array(let elements) = instance else { return true }
            var valid = true
            for i in elements.indices {
                guard let schema = i < prefix.count ? prefix[i] : rest else { break }
                path.append(.index(i))
                let ok = try evaluate(schema, elements[i], depth: depth + 1, collect: collect)
                path.removeLast()
                if !ok {
                    valid = false
                    if !collect { return false }
                }
            }
            return valid
        }

        func applyContains(_ keyword: Keyword, _ instance: JSON, depth: Int, collect: Bool) throws -> Bool {
            guard case .contains(let schema, let min, let max) = keyword, case .array(let elements) = instance, min > 0 || max != nil else {
                return true
            }
            var matches = 0
            for i in elements.indices {
                path.append(.index(i))
                let ok = try evaluate(schema, elements[i], depth: depth + 1, collect: false)
                path.removeLast()
                if ok {
                    matches += 1
                    if matches >= min, max == nil { return true }
                    if let max, matches > max { break }
                }
            }
            if matches < min { return fail(.containsTooFew(min: min, found: matches), collect: collect) }
            if let max, matches > max { return fail(.containsTooMany(max: max), collect: collect) }
            return true
        }

        func applyProperties(_ keyword: Keyword, _ instance: JSON, depth: Int, collect: Bool) throws -> Bool {
            guard case .properties(let properties) = keyword, case .object(let members) = instance else { return true }
            var valid = true
            for key in JSON.sortedKeys(members) {
                let schemas = try properties.schemas(for: key, matching: matches)
                guard !schemas.isEmpty else { continue }
                path.append(.key(key))
                defer { path.removeLast() }
                for schema in schemas where try !evaluate(schema, members[key]!, depth: depth + 1, collect: collect) {
                    valid = false
                    if !collect { return false }
                }
            }
            return valid
        }

        func applyPropertyNames(_ keyword: Keyword, _ instance: JSON, depth: Int, collect: Bool) throws -> Bool {
            guard case .propertyNames(let schema) = keyword, case .object(let members) = instance else { return true }
            var valid = true
            for key in JSON.sortedKeys(members) {
                path.append(.key(key))
                let start = found.count
                let ok = try evaluate(schema, .string(key), depth: depth + 1, collect: collect)
                path.removeLast()
                if !ok {
                    valid = false
                    if !collect { return false }
                    markAsPropertyNames(from: start)
                }
            }
            return valid
        }

        /// "property name must be …": the violations found on a key, not on its value.
        @inline(never) func markAsPropertyNames(from start: Int) {
            for i in start..<found.count { found[i].message = "property name " + found[i].message }
        }

        func applyDependentSchemas(_ keyword: Keyword, _ instance: JSON, depth: Int, collect: Bool) throws -> Bool {
            guard case .dependentSchemas(let dependencies) = keyword, case .object(let members) = instance else { return true }
            var valid = true
            for dependency in dependencies where members[dependency.name] != nil {
                if try !evaluate(dependency.value, instance, depth: depth + 1, collect: collect) {
                    valid = false
                    if !collect { return false }
                }
            }
            return valid
        }

        func applyAllOf(_ keyword: Keyword, _ instance: JSON, depth: Int, collect: Bool) throws -> Bool {
            guard case .allOf(let schemas) = keyword else { return true }
            var valid = true
            for schema in schemas where try !evaluate(schema, instance, depth: depth + 1, collect: collect) {
                valid = false
                if !collect { return false }
            }
            return valid
        }

        func applyAnyOf(_ keyword: Keyword, _ instance: JSON, depth: Int, collect: Bool) throws -> Bool {
            guard case .anyOf(let schemas) = keyword else { return true }
            for schema in schemas where try evaluate(schema, instance, depth: depth + 1, collect: false) {
                return true
            }
            return fail(.anyOfFailed, collect: collect)
        }

        func applyOneOf(_ keyword: Keyword, _ instance: JSON, depth: Int, collect: Bool) throws -> Bool {
            guard case .oneOf(let schemas) = keyword else { return true }
            var first: Int?
            for i in schemas.indices where try evaluate(schemas[i], instance, depth: depth + 1, collect: false) {
                guard let first else {
                    first = i
                    continue
                }
                return fail(.oneOfMatchesTwo(first, i), collect: collect)
            }
            return first != nil || fail(.oneOfMatchesNone, collect: collect)
        }

        func applyNot(_ keyword: Keyword, _ instance: JSON, depth: Int, collect: Bool) throws -> Bool {
            guard case .not(let schema) = keyword, try evaluate(schema, instance, depth: depth + 1, collect: false) else { return true }
            return fail(.notFailed, collect: collect)
        }

        func applyConditional(_ keyword: Keyword, _ instance: JSON, depth: Int, collect: Bool) throws -> Bool {
            guard case .conditional(let condition, let then, let otherwise) = keyword else { return true }
            let branch = try evaluate(condition, instance, depth: depth + 1, collect: false) ? then : otherwise
            guard let branch else { return true }
            return try evaluate(branch, instance, depth: depth + 1, collect: collect)
        }

        // MARK: Messages of the applicators

        /// The failures of the applicators, kept out of the recursive functions' frames.
        enum Failure {
            case notFailed, anyOfFailed, oneOfMatchesNone
            case oneOfMatchesTwo(Int, Int)
            case containsTooFew(min: Int, found: Int)
            case containsTooMany(max: Int)

            var message: String {
                switch self {
                case .notFailed: #"must not match the schema in "not""#
                case .anyOfFailed: #"must match at least one of the schemas in "anyOf""#
                case .oneOfMatchesNone: #"must match exactly one of the schemas in "oneOf" (it matches none)"#
                case .oneOfMatchesTwo(let a, let b): #"must match exactly one of the schemas in "oneOf" (it matches schemas \#(a) and \#(b))"#
                case .containsTooFew(1, _): #"must contain an item matching the "contains" schema"#
                case .containsTooFew(let min, let found): #"must contain at least \#(min) items matching the "contains" schema (it has \#(found))"#
                case .containsTooMany(let max): #"must contain at most \#(Values.counted(max, "item")) matching the "contains" schema"#
                }
            }
        }

        @inline(never) func fail(_ failure: Failure, collect: Bool) -> Bool {
            fail(failure.message, collect: collect)
        }

        // MARK: Assertions (no subschemas)

        func check(_ keyword: Keyword, _ instance: JSON, collect: Bool) throws -> Bool {
            switch (keyword, instance) {
            case (.never, _):
                return fail("is not allowed", collect: collect)
            case (.type(let types), _):
                guard !types.accepts(instance) else { return true }
                if types.names.contains(.integer), !types.names.contains(.number), case .double = instance {
                    return fail("must be \(types.phrase), not \(Values.preview(instance))", collect: collect)
                }
                return fail("must be \(types.phrase), not \(Values.phrase(instance))", collect: collect)
            case (.enumeration(let set), _):
                guard try !contains(set, instance) else { return true }
                if set.values.isEmpty { return fail("is not allowed (the enum is empty)", collect: collect) }
                let shown = set.values.prefix(10).map { Values.preview($0) }.joined(separator: ", ")
                return fail("must be one of \(shown)\(set.values.count > 10 ? ", …" : "")", collect: collect)
            case (.const(let set), _):
                guard try !contains(set, instance) else { return true }
                return fail("must be \(Values.preview(set.values[0]))", collect: collect)
            case (.multipleOf(let divisor), .int), (.multipleOf(let divisor), .double):
                guard !Number(instance)!.isMultiple(of: divisor) else { return true }
                return fail("must be a multiple of \(divisor)", collect: collect)
            case (.minimum(let bound, let exclusive), .int), (.minimum(let bound, let exclusive), .double):
                let order = Number.compare(Number(instance)!, bound)
                if exclusive ? order > 0 : order >= 0 { return true }
                return fail(exclusive ? "must be greater than \(bound)" : "must be at least \(bound)", collect: collect)
            case (.maximum(let bound, let exclusive), .int), (.maximum(let bound, let exclusive), .double):
                let order = Number.compare(Number(instance)!, bound)
                if exclusive ? order < 0 : order <= 0 { return true }
                return fail(exclusive ? "must be less than \(bound)" : "must be at most \(bound)", collect: collect)
            case (.minLength(let n), .string(let s)):
                guard !hasAtLeast(n, s.unicodeScalars) else { return true }
                return fail("must be at least \(Values.counted(n, "character")) long", collect: collect)
            case (.maxLength(let n), .string(let s)):
                guard n < .max, hasAtLeast(n + 1, s.unicodeScalars) else { return true }
                return fail("must be at most \(Values.counted(n, "character")) long", collect: collect)
            case (.pattern(let pattern), .string(let s)):
                guard try !matches(pattern, s) else { return true }
                return fail("must match the pattern \(pattern.source)", collect: collect)
            case (.minItems(let n), .array(let elements)):
                guard elements.count < n else { return true }
                return fail("must have at least \(Values.counted(n, "item"))", collect: collect)
            case (.maxItems(let n), .array(let elements)):
                guard elements.count > n else { return true }
                return fail("must have at most \(Values.counted(n, "item"))", collect: collect)
            case (.uniqueItems, .array(let elements)):
                guard let (first, second) = try duplicate(in: elements) else { return true }
                return fail("must not contain duplicates (items \(first) and \(second) are equal)", collect: collect)
            case (.minProperties(let n), .object(let members)):
                guard members.count < n else { return true }
                return fail("must have at least \(Values.counted(n, "property", "properties"))", collect: collect)
            case (.maxProperties(let n), .object(let members)):
                guard members.count > n else { return true }
                return fail("must have at most \(Values.counted(n, "property", "properties"))", collect: collect)
            case (.required(let names), .object(let members)):
                var valid = true
                for name in names where members[name] == nil {
                    valid = fail("is required", at: .key(name), collect: collect)
                    if !collect { return false }
                }
                return valid
            case (.dependentRequired(let dependencies), .object(let members)):
                var valid = true
                for dependency in dependencies where members[dependency.name] != nil {
                    for name in dependency.value where members[name] == nil {
                        valid = fail("is required when \"\(dependency.name)\" is present", at: .key(name), collect: collect)
                        if !collect { return false }
                    }
                }
                return valid
            default:
                return true  // the keyword does not apply to this kind of value
            }
        }

        /// Whether `scalars` has at least `n` elements, without counting a long string to its end.
        func hasAtLeast(_ n: Int, _ scalars: String.UnicodeScalarView) -> Bool {
            if n <= 0 { return true }
            return scalars.index(scalars.startIndex, offsetBy: n - 1, limitedBy: scalars.endIndex).map { $0 < scalars.endIndex } ?? false
        }

        func contains(_ set: ValueSet, _ instance: JSON) throws -> Bool {
            let (hash, size) = Values.hash(instance)
            try spend(size)
            for (value, valueHash) in zip(set.values, set.hashes) where valueHash == hash {
                if Values.equal(value, instance) { return true }
            }
            return false
        }

        /// The indices of the first two equal elements, comparing as JSON does (1 equals 1.0).
        func duplicate(in elements: [JSON]) throws -> (Int, Int)? {
            var byHash: [Int: [Int]] = [:]
            for (i, element) in elements.enumerated() {
                let (hash, size) = Values.hash(element)
                try spend(size)
                for j in byHash[hash, default: []] where Values.equal(elements[j], element) {
                    return (j, i)
                }
                byHash[hash, default: []].append(i)
            }
            return nil
        }
    }
}

// MARK: - JSON helpers

extension JSONSchema {
    /// RFC 6901 JSON pointers, as the schema compiler and the violation paths write them.
    enum Pointer {
        static func string(_ tokens: [String]) -> String {
            var out = ""
            for token in tokens {
                out.append("/")
                for character in token {
                    switch character {
                    case "~": out.append("~0")
                    case "/": out.append("~1")
                    default: out.append(character)
                    }
                }
            }
            return out
        }

        /// The tokens of a pointer that starts with "/".
        static func tokens(_ pointer: String) -> [String] {
            pointer.dropFirst().split(separator: "/", omittingEmptySubsequences: false).map {
                $0.replacingOccurrences(of: "~1", with: "/").replacingOccurrences(of: "~0", with: "~")
            }
        }

        static func value(in document: JSON, at tokens: [String]) -> JSON? {
            var current = document
            for token in tokens {
                switch current {
                case .object(let members):
                    guard let next = members[token] else { return nil }
                    current = next
                case .array(let elements):
                    guard let i = Int(token), i >= 0, String(i) == token, i < elements.count else { return nil }
                    current = elements[i]
                default:
                    return nil
                }
            }
            return current
        }
    }

    /// Equality, hashing and short descriptions of JSON values that never recurse, so that a
    /// hostile 100,000-deep value cannot overflow the stack.
    enum Values {
        /// A value's kind with its article, for messages: "a string", "an array", "null".
        static func phrase(_ value: JSON) -> String {
            switch value {
            case .null: "null"
            case .bool: "a boolean"
            case .int, .double: "a number"
            case .string: "a string"
            case .array: "an array"
            case .object: "an object"
            }
        }

        /// "1 item", "3 items".
        static func counted(_ n: Int, _ singular: String, _ plural: String? = nil) -> String {
            "\(n) \(n == 1 ? singular : plural ?? singular + "s")"
        }

        /// The JSON text of `value`, cut short past `limit` characters and 8 levels.
        static func preview(_ value: JSON, limit: Int = 60) -> String {
            var out: [UInt8] = []
            append(value, depth: 0, limit: limit * 4, to: &out)
            let text = String(decoding: out, as: UTF8.self)
            return text.count > limit ? String(text.prefix(limit)) + "…" : text
        }

        private static func append(_ value: JSON, depth: Int, limit: Int, to out: inout [UInt8]) {
            guard out.count <= limit else { return }
            switch value {
            case .array(let elements):
                guard depth < 8 else { out.append(contentsOf: "[…]".utf8); return }
                out.append(UInt8(ascii: "["))
                for (i, element) in elements.enumerated() {
                    if i > 0 { out.append(UInt8(ascii: ",")) }
                    append(element, depth: depth + 1, limit: limit, to: &out)
                    if out.count > limit { return }
                }
                out.append(UInt8(ascii: "]"))
            case .object(let members):
                guard depth < 8 else { out.append(contentsOf: "{…}".utf8); return }
                out.append(UInt8(ascii: "{"))
                for (i, key) in JSON.sortedKeys(members).enumerated() {
                    if i > 0 { out.append(UInt8(ascii: ",")) }
                    JSON.writeString(key, to: &out)
                    out.append(UInt8(ascii: ":"))
                    append(members[key]!, depth: depth + 1, limit: limit, to: &out)
                    if out.count > limit { return }
                }
                out.append(UInt8(ascii: "}"))
            default:
                value.write(to: &out)
            }
        }

        /// Equality as JSON Schema means it: numbers by value (1 equals 1.0, exactly, even past
        /// 2^53), objects by members, arrays in order.
        static func equal(_ a: JSON, _ b: JSON) -> Bool {
            var pending: [(JSON, JSON)] = [(a, b)]
            while let (x, y) = pending.popLast() {
                switch (x, y) {
                case (.null, .null): continue
                case (.bool(let p), .bool(let q)): if p != q { return false }
                case (.string(let p), .string(let q)): if p != q { return false }
                case (.int, _), (.double, _):
                    guard let p = Number(x), let q = Number(y), Number.compare(p, q) == 0 else { return false }
                case (.array(let p), .array(let q)):
                    guard p.count == q.count else { return false }
                    pending.append(contentsOf: zip(p, q))
                case (.object(let p), .object(let q)):
                    guard p.count == q.count else { return false }
                    for (key, value) in p {
                        guard let other = q[key] else { return false }
                        pending.append((value, other))
                    }
                default:
                    return false
                }
            }
            return true
        }

        /// A hash consistent with ``equal(_:_:)``, and how many values it visited.
        static func hash(_ value: JSON) -> (hash: Int, size: Int) {
            enum Item { case value(JSON), key(String) }
            var hasher = Hasher()
            var pending: [Item] = [.value(value)]
            var size = 0
            while let item = pending.popLast() {
                size += 1
                switch item {
                case .key(let key):
                    hasher.combine(7)
                    hasher.combine(key)
                case .value(.null): hasher.combine(0)
                case .value(.bool(let b)): hasher.combine(1); hasher.combine(b)
                case .value(.string(let s)): hasher.combine(2); hasher.combine(s)
                case .value(.int(let i)): hasher.combine(3); hasher.combine(i)
                case .value(.double(let d)):
                    // Whole doubles hash as the integer they equal.
                    if d.rounded(.towardZero) == d, d >= -9_223_372_036_854_775_808.0, d < 9_223_372_036_854_775_808.0 {
                        hasher.combine(3)
                        hasher.combine(Int64(d))
                    } else {
                        hasher.combine(4)
                        hasher.combine(d.bitPattern)
                    }
                case .value(.array(let elements)):
                    hasher.combine(5)
                    hasher.combine(elements.count)
                    pending.append(contentsOf: elements.reversed().map { .value($0) })
                case .value(.object(let members)):
                    hasher.combine(6)
                    hasher.combine(members.count)
                    for key in JSON.sortedKeys(members).reversed() {
                        pending.append(.value(members[key]!))
                        pending.append(.key(key))
                    }
                }
            }
            return (hasher.finalize(), size)
        }
    }
}
