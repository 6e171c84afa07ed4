public import FerryCore
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
    static let jobKeys: Set<String> = [
        "source", "target", "mode", "delete", "key", "cursor_field", "batch_size", "transform", "verify",
        "strict", "dead_letter", "source_auth", "target_auth", "schedule", "dry_run", "retries", "source_rest", "target_rest",
        "on_conflict", "newest_field", "reconcile",
    ]

    /// Parses a jobs file.
    /// - Returns: the jobs in file order, each with its schedule text (`once` when not given).
    public static func parse(_ text: String, file: String, environment: [String: String]) throws(SyncError) -> [(job: SyncJob, schedule: String)] {
        let root: Node?
        do {
            root = try Yams.compose(yaml: text)
        } catch {
            throw .badInput("\(file): not valid YAML: \(error)")
        }
        guard let mapping = root?.mapping else { throw .badInput("\(file): the top level must be a mapping with a jobs: section") }
        var jobs: [(SyncJob, String)] = []
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

    /// Checks one of ``JobRules``; its message starts with where the value is (`ferry.yml:6:`).
    static func rule(_ node: Node, file: String, _ body: () throws(SyncError) -> Void) throws(SyncError) {
        do { try body() } catch { throw .badInput("\(file):\(line(node)): \(error.message)") }
    }

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

    static func parseJob(name: String, line nameLine: Int, node: Node, file: String, environment: [String: String]) throws(SyncError) -> (SyncJob, String) {
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
        var job = SyncJob(source: try scalar(sourceNode, "source", file: file, environment: environment),
                          target: try scalar(targetNode, "target", file: file, environment: environment))
        job.name = name
        if let n = values["mode"] {
            let text = try scalar(n, "mode", file: file, environment: environment)
            guard let mode = SyncMode(rawValue: text) else { throw .badInput("\(file):\(line(n)): mode must be full, incremental, diff or two-way, not \"\(text)\"") }
            job.mode = mode
        }
        if let n = values["on_conflict"] {
            try rule(n, file: file) { () throws(SyncError) in try JobRules.onConflict(mode: job.mode, .jobsFile) }
            do {
                job.onConflict = try ConflictPolicy(parsing: try scalar(n, "on_conflict", file: file, environment: environment))
            } catch {
                throw .badInput("\(file):\(line(n)): " + error.message.replacingOccurrences(of: "--on-conflict", with: "on_conflict"))
            }
        }
        if let n = values["newest_field"] {
            try rule(n, file: file) { () throws(SyncError) in try JobRules.newestField(policy: job.onConflict, .jobsFile) }
            job.newestField = try scalar(n, "newest_field", file: file, environment: environment)
        }
        if let n = values["delete"] {
            job.deleteMissing = try bool(n, "delete", file: file)
            if job.deleteMissing { try rule(n, file: file) { () throws(SyncError) in try JobRules.delete(mode: job.mode, .jobsFile) } }
        }
        if let n = values["verify"] { job.verify = try bool(n, "verify", file: file) }
        if let n = values["strict"] { job.strict = try bool(n, "strict", file: file) }
        if let n = values["dry_run"] { job.dryRun = try bool(n, "dry_run", file: file) }
        if let n = values["reconcile"] { job.reconcile = try bool(n, "reconcile", file: file) }
        if let n = values["key"] { job.keyField = try scalar(n, "key", file: file, environment: environment) }
        if let n = values["cursor_field"] { job.cursorField = try scalar(n, "cursor_field", file: file, environment: environment) }
        if let n = values["dead_letter"] { job.deadLetterPath = try scalar(n, "dead_letter", file: file, environment: environment) }
        if let n = values["source_auth"] { job.sourceAuth = try scalar(n, "source_auth", file: file, environment: environment) }
        if let n = values["target_auth"] { job.targetAuth = try scalar(n, "target_auth", file: file, environment: environment) }
        if let n = values["batch_size"] {
            let text = try scalar(n, "batch_size", file: file, environment: environment)
            guard let size = Int(text) else { throw .badInput("\(file):\(line(n)): batch_size must be a whole number, not \"\(text)\"") }
            try rule(n, file: file) { () throws(SyncError) in try JobRules.batchSize(size, .jobsFile) }
            job.batchSize = size
        }
        if let n = values["retries"] {
            let text = try scalar(n, "retries", file: file, environment: environment)
            guard let retries = Int(text) else { throw .badInput("\(file):\(line(n)): retries must be a whole number, not \"\(text)\"") }
            try rule(n, file: file) { () throws(SyncError) in try JobRules.retries(retries, .jobsFile) }
            job.retry.maxAttempts = retries + 1
        }
        if let n = values["transform"] { job.transform = try parseTransform(n, file: file) }
        if let n = values["source_rest"] { job.sourceREST = try restSettings(n, "source_rest", file: file, environment: environment) }
        if let n = values["target_rest"] { job.targetREST = try restSettings(n, "target_rest", file: file, environment: environment) }
        var schedule = "once"
        if let n = values["schedule"] {
            schedule = try scalar(n, "schedule", file: file, environment: environment)
        }
        return (job, schedule)
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
