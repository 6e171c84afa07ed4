import Foundation
import Yams

/// Everything `ferry serve` can be told. Sources, weakest first: defaults, the YAML
/// file (`server:` section of `ferry.yml`), `FERRY_*` environment variables, flags.
public struct ServerConfiguration: Sendable, Equatable {
    /// Address to listen on.
    public var host: String = "127.0.0.1"
    /// Port to listen on (0 picks a free one).
    public var port: Int = 8888
    /// Folder of the SQLite database and the server secret.
    public var dataDirectory: String = "./ferry-data"
    /// `trace`, `debug`, `info`, `notice`, `warning`, `error` or `critical`.
    public var logLevel: String = "info"
    /// Most sub-requests in one `/batch`.
    public var batchMaxRequests: Int = 25
    /// Largest accepted request body, in bytes (413 above).
    public var maxBodySize: Int = 1 << 20
    /// Refuse writes.
    public var readonly: Bool = false
    /// Forced page size.
    public var paginateBy: Int? = nil
    /// Most objects in one page.
    public var maxFetchSize: Int = 10_000
    /// Principals allowed to create buckets.
    public var bucketCreatePrincipals: [String] = ["system.Authenticated"]
    /// Secret keying the `basicauth:` user ids; generated into the data folder when not given.
    public var secret: String? = nil
    /// `Backoff` seconds to send with every response (ask clients to slow down).
    public var backoffSeconds: Int? = nil
    /// `Retry-After` seconds sent with 503.
    public var retryAfterSeconds: Int = 30
    /// fsync every commit (survives power loss, not only a crash of the process).
    public var fullSync: Bool = false

    public init() {}

    /// A configuration problem, said in one line: what, where, and what is expected.
    public struct Error: Swift.Error, CustomStringConvertible, Equatable {
        public let description: String
        init(_ description: String) { self.description = description }
    }

    /// One setting: its YAML key, environment variable and how to apply a text value.
    struct Key: Sendable {
        let name: String
        let apply: @Sendable (inout ServerConfiguration, String) throws(Error) -> Void
        var environment: String { "FERRY_" + name.uppercased() }
    }

    static func int(_ text: String, _ what: String, min: Int = 0, max: Int = Int.max) throws(Error) -> Int {
        guard let n = Int(text.trimmingCharacters(in: .whitespaces)), n >= min, n <= max else {
            throw Error("\(what) must be a whole number between \(min) and \(max), not \"\(text)\"")
        }
        return n
    }

    static func bool(_ text: String, _ what: String) throws(Error) -> Bool {
        switch text.lowercased().trimmingCharacters(in: .whitespaces) {
        case "true", "yes", "1", "on": return true
        case "false", "no", "0", "off": return false
        default: throw Error("\(what) must be true or false, not \"\(text)\"")
        }
    }

    static let keys: [Key] = [
        Key(name: "host") { c, v throws(Error) in
            guard !v.isEmpty, !v.contains(" ") else { throw Error("host must be an address such as 127.0.0.1, not \"\(v)\"") }
            c.host = v
        },
        Key(name: "port") { c, v throws(Error) in c.port = try int(v, "port", max: 65535) },
        Key(name: "data") { c, v throws(Error) in
            guard !v.isEmpty else { throw Error("data must be a folder path") }
            c.dataDirectory = v
        },
        Key(name: "log_level") { c, v throws(Error) in
            let levels = ["trace", "debug", "info", "notice", "warning", "error", "critical"]
            guard levels.contains(v.lowercased()) else { throw Error("log_level must be one of \(levels.joined(separator: ", ")), not \"\(v)\"") }
            c.logLevel = v.lowercased()
        },
        Key(name: "batch_max_requests") { c, v throws(Error) in c.batchMaxRequests = try int(v, "batch_max_requests", min: 1, max: 10_000) },
        Key(name: "max_body_size") { c, v throws(Error) in c.maxBodySize = try int(v, "max_body_size", min: 1024, max: 1 << 30) },
        Key(name: "readonly") { c, v throws(Error) in c.readonly = try bool(v, "readonly") },
        Key(name: "paginate_by") { c, v throws(Error) in c.paginateBy = try int(v, "paginate_by", min: 1, max: 1_000_000) },
        Key(name: "max_fetch_size") { c, v throws(Error) in c.maxFetchSize = try int(v, "max_fetch_size", min: 1, max: 10_000_000) },
        Key(name: "bucket_create_principals") { c, v throws(Error) in
            c.bucketCreatePrincipals = v.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        },
        Key(name: "secret") { c, v throws(Error) in
            guard v.utf8.count >= 16 else { throw Error("secret must be at least 16 characters long") }
            c.secret = v
        },
        Key(name: "backoff") { c, v throws(Error) in c.backoffSeconds = try int(v, "backoff", max: 86_400) },
        Key(name: "retry_after") { c, v throws(Error) in c.retryAfterSeconds = try int(v, "retry_after", max: 86_400) },
        Key(name: "full_sync") { c, v throws(Error) in c.fullSync = try bool(v, "full_sync") },
    ]

    /// Sets one key by name.
    public mutating func set(_ name: String, _ value: String, source: String) throws(Error) {
        guard let key = Self.keys.first(where: { $0.name == name }) else {
            throw Error("\(source): unknown setting \"\(name)\" (known: \(Self.keys.map(\.name).joined(separator: ", ")))")
        }
        do {
            try key.apply(&self, value)
        } catch {
            throw Error("\(source): \(error.description)")
        }
    }

    /// Applies `FERRY_*` variables.
    public mutating func applyEnvironment(_ environment: [String: String]) throws(Error) {
        for key in Self.keys {
            if let value = environment[key.environment] {
                try set(key.name, value, source: "environment variable \(key.environment)")
            }
        }
    }

    /// Applies the `server:` section of a YAML file. Unknown keys are errors with their line.
    public mutating func applyYAML(_ text: String, file: String) throws(Error) {
        let node: Node?
        do {
            node = try Yams.compose(yaml: text)
        } catch {
            throw Error("\(file): not valid YAML: \(error)")
        }
        guard let node else { return }
        guard let top = node.mapping else { throw Error("\(file): the top level must be a mapping with a server: section") }
        for (keyNode, value) in top {
            let line = (keyNode.mark?.line).map { ":\($0)" } ?? ""
            switch keyNode.string {
            case "server":
                guard let section = value.mapping else { throw Error("\(file)\(line): server must be a mapping of settings") }
                for (k, v) in section {
                    let kline = (k.mark?.line).map { ":\($0)" } ?? ""
                    guard let name = k.string else { throw Error("\(file)\(kline): setting names must be strings") }
                    let text: String
                    if let scalar = v.scalar {
                        text = scalar.string
                    } else if let sequence = v.sequence {
                        text = sequence.compactMap { $0.string }.joined(separator: ",")
                    } else {
                        throw Error("\(file)\(kline): \(name) must be a value")
                    }
                    try set(name, text, source: "\(file)\(kline)")
                }
            case "jobs":
                continue  // read by `ferry run`
            default:
                throw Error("\(file)\(line): unknown section \"\(keyNode.string ?? "?")\" (expected server or jobs)")
            }
        }
    }

    /// Loads a YAML file.
    public mutating func applyFile(_ path: String) throws(Error) {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw Error("\(path): cannot read the configuration file")
        }
        guard let text = String(data: data, encoding: .utf8) else { throw Error("\(path): not UTF-8 text") }
        try applyYAML(text, file: path)
    }
}
