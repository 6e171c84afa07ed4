import FerryCore
import Foundation
import Yams

/// The `jobs:` section of a `ferry.yml` (the `server:` section belongs to `ferry serve`).
///
/// ```yaml
/// jobs:
///   users-backup:
///     source: http://127.0.0.1:8888/v1/buckets/main/collections/users
///     target: sqlite:backup.db#users
///     mode: incremental
///     source_auth: ${FERRY_SOURCE_AUTH}
///     transform: { rename: { username: name }, drop: [internal], filter: ["age>=18"] }
///     verify: true
/// ```
/// Unknown keys are errors naming the file and line. `${NAME}` in a value is replaced
/// by the environment variable NAME (an unset one is an error), so secrets stay out of the file.
public enum JobsFile {
    /// The keys a job may have.
    static let jobKeys = Set(JobSpec.Key.allCases.map(\.rawValue)).subtracting(["name"])

    /// One job of a jobs file.
    public struct Entry: Sendable {
        /// The job's settings, checked by ``JobSpec/validate(_:)``.
        public var spec: JobSpec
        /// Its `schedule:` as written (`once` when not given); ``JobSpec/trigger`` is what it says.
        public var schedule: String
        /// The engine's job.
        public var job: SyncJob { spec.job }
    }

    /// Parses a jobs file.
    /// - Returns: the jobs in file order.
    public static func parse(_ text: String, file: String, environment: [String: String]) throws(SyncError) -> [Entry] {
        let root: Node?
        do {
            root = try Yams.compose(yaml: text)
        } catch {
            throw .badInput("\(file): not valid YAML: \(error)")
        }
        guard let mapping = root?.mapping else { throw .badInput("\(file): the top level must be a mapping with a jobs: section") }
        var jobs: [Entry] = []
        var sawJobs = false
        for (keyNode, value) in mapping {
            let at = "\(file):\(line(keyNode))"
            switch keyNode.string {
            case "jobs":
                sawJobs = true
                guard let entries = value.mapping else { throw .badInput("\(at): jobs must map job names to their settings") }
                for (nameNode, body) in entries {
                    guard let name = nameNode.string, !name.isEmpty else { throw .badInput("\(file):\(line(nameNode)): a job name must be text") }
                    jobs.append(try parseJob(name: name, line: line(nameNode), node: body, file: file, environment: environment))
                }
            case "server":
                continue
            default:
                throw .badInput("\(at): unknown section \"\(keyNode.string ?? "?")\" (expected jobs or server)")
            }
        }
        guard sawJobs, !jobs.isEmpty else { throw .badInput("\(file): no jobs: section with at least one job") }
        return jobs
    }

    static func line(_ node: Node) -> Int { node.mark?.line ?? 0 }

    static func scalar(_ node: Node, _ what: String, file: String, environment: [String: String]) throws(SyncError) -> String {
        guard let text = node.scalar?.string else { throw .badInput("\(file):\(line(node)): \(what) must be a single value") }
        return try expand(text, at: "\(file):\(line(node))", environment: environment)
    }

    /// Replaces `${NAME}` with the environment variable.
    static func expand(_ text: String, at: String, environment: [String: String]) throws(SyncError) -> String {
        var out = ""
        var rest = Substring(text)
        while let open = rest.range(of: "${") {
            out += rest[..<open.lowerBound]
            guard let close = rest[open.upperBound...].firstIndex(of: "}") else {
                throw .badInput("\(at): unclosed ${ in \"\(text)\"")
            }
            let name = String(rest[open.upperBound..<close])
            guard let value = environment[name] else { throw .badInput("\(at): environment variable \(name) is not set") }
            out += value
            rest = rest[rest.index(after: close)...]
        }
        return out + rest
    }

    static func bool(_ node: Node, _ what: String, file: String) throws(SyncError) -> Bool {
        switch node.scalar?.string.lowercased() {
        case "true", "yes", "on": return true
        case "false", "no", "off": return false
        default: throw .badInput("\(file):\(line(node)): \(what) must be true or false")
        }
    }

    static func parseJob(name: String, line nameLine: Int, node: Node, file: String, environment: [String: String]) throws(SyncError) -> Entry {
        guard let settings = node.mapping else { throw .badInput("\(file):\(line(node)): job \(name) must be a mapping of settings") }
        var values: [String: Node] = [:]
        for (k, v) in settings {
            guard let key = k.string, jobKeys.contains(key) else {
                throw .badInput("\(file):\(line(k)): unknown key \"\(k.string ?? "?")\" in job \(name) (expected one of \(jobKeys.sorted().joined(separator: ", ")))")
            }
            values[key] = v
        }
        guard let sourceNode = values["source"], let targetNode = values["target"] else {
            throw .badInput("\(file):\(nameLine): job \(name) needs both source and target")
        }
        func text(_ key: String) throws(SyncError) -> String? {
            try values[key].map { node throws(SyncError) in try scalar(node, key, file: file, environment: environment) }
        }
        func flag(_ key: String) throws(SyncError) -> Bool? {
            try values[key].map { node throws(SyncError) in try bool(node, key, file: file) }
        }
        func number(_ key: String) throws(SyncError) -> Int? {
            guard let text = try text(key) else { return nil }
            guard let n = Int(text) else { throw .badInput("\(file):\(line(values[key]!)): \(key) must be a whole number, not \"\(text)\"") }
            return n
        }
        /// A parser's message, prefixed with the line of the key's value.
        func parsed<T>(_ key: String, _ parse: (String) throws(SyncError) -> T) throws(SyncError) -> T? {
            guard let text = try text(key) else { return nil }
            do { return try parse(text) } catch { throw .badInput("\(file):\(line(values[key]!)): \(error.message)") }
        }
        var spec = JobSpec(source: try scalar(sourceNode, "source", file: file, environment: environment),
                           target: try scalar(targetNode, "target", file: file, environment: environment))
        spec.name = name
        spec.mode = try parsed("mode") { text throws(SyncError) in try JobRules.mode(parsing: text, .jobsFile) } ?? spec.mode
        spec.onConflict = try parsed("on_conflict") { text throws(SyncError) in try JobRules.onConflict(parsing: text, .jobsFile) }
        spec.newestField = try text("newest_field")
        spec.delete = try flag("delete") ?? spec.delete
        spec.verify = try flag("verify") ?? spec.verify
        spec.strict = try flag("strict") ?? spec.strict
        spec.dryRun = try flag("dry_run") ?? spec.dryRun
        spec.reconcile = try flag("reconcile") ?? spec.reconcile
        spec.key = try text("key") ?? spec.key
        spec.cursorField = try text("cursor_field")
        spec.deadLetter = try text("dead_letter")
        spec.sourceAuth = try text("source_auth")
        spec.targetAuth = try text("target_auth")
        spec.batchSize = try number("batch_size")
        spec.retries = try number("retries") ?? spec.retries
        spec.fillFactor = try number("fill_factor")
        if let n = values["transform"] { spec.transform = try parseTransform(n, file: file) }
        if let n = values["source_rest"] { spec.sourceREST = try restSettings(n, "source_rest", file: file, environment: environment) }
        if let n = values["target_rest"] { spec.targetREST = try restSettings(n, "target_rest", file: file, environment: environment) }
        let schedule = try text("schedule") ?? "once"
        do {
            spec.trigger = try JobTrigger.parse(schedule)
        } catch {
            throw .badInput("\(file): job \(name): \(error.message)")
        }
        do {
            try spec.validate(.jobsFile)
        } catch {
            // The line of the setting that broke the rule (the job's name when the default did).
            let at = values[JobSpec.Key(error.setting).rawValue].map(line) ?? nameLine
            throw .badInput("\(file):\(at): \(error.message)")
        }
        return Entry(spec: spec, schedule: schedule)
    }

    /// A `source_rest:`/`target_rest:` mapping; a list value (managed_fields) joins with commas.
    static func restSettings(_ node: Node, _ what: String, file: String, environment: [String: String]) throws(SyncError) -> [String: String] {
        guard let pairs = node.mapping else { throw .badInput("\(file):\(line(node)): \(what) maps REST settings to values, e.g. pagination: page") }
        var out: [String: String] = [:]
        for (k, v) in pairs {
            guard let key = k.string, RESTConfiguration.keys.contains(key) else {
                throw .badInput("\(file):\(line(k)): unknown \(what) setting \"\(k.string ?? "?")\" (expected one of \(RESTConfiguration.keys.joined(separator: ", ")))")
            }
            if let list = v.sequence {
                var items: [String] = []
                for item in list { items.append(try scalar(item, "\(what).\(key)", file: file, environment: environment)) }
                out[key] = items.joined(separator: ",")
            } else {
                out[key] = try scalar(v, "\(what).\(key)", file: file, environment: environment)
            }
        }
        return out
    }

    static func parseTransform(_ node: Node, file: String) throws(SyncError) -> Transform {
        guard let steps = node.mapping else { throw .badInput("\(file):\(line(node)): transform must be a mapping (rename, drop, set, cast, filter)") }
        var transform = Transform()
        for (k, v) in steps {
            let at = "\(file):\(line(k))"
            switch k.string {
            case "rename":
                guard let pairs = v.mapping else { throw .badInput("\(at): rename maps old names to new ones") }
                for (old, new) in pairs {
                    guard let o = old.string, let n = new.string, !o.isEmpty, !n.isEmpty else { throw .badInput("\(file):\(line(old)): rename entries are old: new") }
                    transform.rename[o] = n
                }
            case "drop":
                guard let names = v.sequence?.compactMap({ $0.string }), names.count == v.sequence?.count else {
                    throw .badInput("\(at): drop is a list of field names")
                }
                transform.drop = names
            case "set":
                guard let pairs = v.mapping else { throw .badInput("\(at): set maps fields to values") }
                for (field, value) in pairs {
                    guard let f = field.string else { throw .badInput("\(file):\(line(field)): set needs field names") }
                    transform.set[f] = try json(value, file: file)
                }
            case "cast":
                guard let pairs = v.mapping else { throw .badInput("\(at): cast maps fields to int, double, string, bool or json") }
                for (field, type) in pairs {
                    guard let f = field.string, let t = type.string.flatMap(Transform.CastType.init(name:)) else {
                        throw .badInput("\(file):\(line(field)): cast types are int, double, string, bool or json")
                    }
                    transform.cast[f] = t
                }
            case "filter":
                let texts: [String]
                if let list = v.sequence {
                    texts = list.compactMap { $0.string }
                    guard texts.count == list.count else { throw .badInput("\(at): filter is a list of conditions like \"age>=18\"") }
                } else if let one = v.string {
                    texts = [one]
                } else {
                    throw .badInput("\(at): filter is a list of conditions like \"age>=18\"")
                }
                for text in texts {
                    do {
                        transform.filter.append(try Transform.Condition(parsing: text))
                    } catch {
                        throw .badInput("\(at): \(error.message)")
                    }
                }
            default:
                throw .badInput("\(at): unknown transform step \"\(k.string ?? "?")\" (expected rename, drop, set, cast or filter)")
            }
        }
        return transform
    }

    /// A YAML value as JSON: plain scalars by YAML's core types, quoted ones as strings.
    static func json(_ node: Node, file: String) throws(SyncError) -> JSON {
        switch node {
        case .scalar(let scalar):
            if scalar.style != .plain { return .string(scalar.string) }
            let text = scalar.string
            if text == "null" || text == "~" || text.isEmpty { return .null }
            if text == "true" { return .bool(true) }
            if text == "false" { return .bool(false) }
            if let i = Int64(text) { return .int(i) }
            if let d = Double(text), d.isFinite { return .double(d) }
            return .string(text)
        case .sequence(let list):
            var out: [JSON] = []
            for item in list { out.append(try json(item, file: file)) }
            return .array(out)
        case .mapping(let map):
            var out: [String: JSON] = [:]
            for (k, v) in map {
                guard let key = k.string else { throw .badInput("\(file):\(line(k)): object keys must be text") }
                out[key] = try json(v, file: file)
            }
            return .object(out)
        case .alias:
            throw .badInput("\(file):\(line(node)): YAML aliases are not supported here")
        }
    }
}
