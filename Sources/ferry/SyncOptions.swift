import ArgumentParser
import FerryCore
import FerrySync
import Foundation

/// Options `ferry sync` and `ferry verify` share: what identifies records and how they are mapped.
struct RecordOptions: ParsableArguments {
    @Option(name: .long, help: ArgumentHelp("The field holding each record's key.", valueName: "FIELD")) var key: String = "id"
    @Option(name: .customLong("rename"), help: ArgumentHelp("Rename a field: OLD=NEW (repeatable).", valueName: "OLD=NEW")) var renames: [String] = []
    @Option(name: .customLong("drop"), help: ArgumentHelp("Drop a field (repeatable).", valueName: "FIELD")) var drops: [String] = []
    @Option(name: .customLong("set"), help: ArgumentHelp("Set a field to a constant: FIELD=VALUE, VALUE as JSON or text (repeatable).", valueName: "FIELD=VALUE")) var sets: [String] = []
    @Option(name: .customLong("cast"), help: ArgumentHelp("Convert a field: FIELD=int|double|string|bool|json (repeatable).", valueName: "FIELD=TYPE")) var casts: [String] = []
    @Option(name: .customLong("where"), help: ArgumentHelp("Keep only records where FIELD OP VALUE, OP one of = != < <= > >= (repeatable; all must hold).", valueName: "CONDITION")) var conditions: [String] = []
    @Option(name: .long, help: ArgumentHelp("Credentials for a server or API source: USER:PASSWORD, 'Bearer TOKEN', header:NAME=VALUE or query:NAME=VALUE (or FERRY_SOURCE_AUTH).", valueName: "AUTH")) var sourceAuth: String?
    @Option(name: .long, help: ArgumentHelp("Credentials for a server or API target (or FERRY_TARGET_AUTH).", valueName: "AUTH")) var targetAuth: String?
    @Option(name: .customLong("source-rest"), help: ArgumentHelp("A setting of a rest+http(s):// source, e.g. pagination=page, items=/data (repeatable; see docs/rest-apis.md).", valueName: "KEY=VALUE")) var sourceREST: [String] = []
    @Option(name: .customLong("target-rest"), help: ArgumentHelp("A setting of a rest+http(s):// target, e.g. update='PATCH /users/{id}' (repeatable).", valueName: "KEY=VALUE")) var targetREST: [String] = []
    @Option(name: .long, help: ArgumentHelp("Records per batch (default: 1000; 10000 into a PostgreSQL table).", valueName: "N")) var batchSize: Int?
    @Option(name: .long, help: ArgumentHelp("How many times to try again after a connection error, a 429 or a 5xx, with backoff.", valueName: "N")) var retries: Int = 5
    @Flag(name: .long, help: "Read both sides in full for --mode diff and verify, even where a server offers set reconciliation.") var noReconcile = false

    /// What the flags spell; the rules the values obey are ``JobSpec/validate(_:)``'s, which the
    /// commands run on the whole spec.
    func validate() throws {
        _ = try transform()
        _ = try Self.settings(sourceREST, "--source-rest")
        _ = try Self.settings(targetREST, "--target-rest")
    }

    /// A parser's or a rule's message as a ``ValidationError`` (printed with the usage).
    static func flag<T>(_ body: () throws(SyncError) -> T) throws -> T {
        do { return try body() } catch { throw ValidationError(error.message) }
    }

    /// The spec the flags built, checked by ``JobSpec/validate(_:)`` (in the flags' spelling).
    static func validated(_ spec: JobSpec) throws -> JobSpec {
        do { try spec.validate(.flags) } catch { throw ValidationError(error.message) }
        return spec
    }

    /// `KEY=VALUE` flags as a dictionary; a key given twice is an error.
    static func settings(_ pairs: [String], _ flag: String) throws -> [String: String] {
        var out: [String: String] = [:]
        for text in pairs {
            guard let eq = text.firstIndex(of: "="), eq != text.startIndex else {
                throw ValidationError("\(flag) takes KEY=VALUE, not \"\(text)\"")
            }
            let key = String(text[..<eq])
            guard out.updateValue(String(text[text.index(after: eq)...]), forKey: key) == nil else {
                throw ValidationError("\(flag) \(key) is given twice")
            }
        }
        return out
    }

    static func pair(_ text: String, _ flag: String) throws -> (String, String) {
        guard let eq = text.firstIndex(of: "="), eq != text.startIndex, text.index(after: eq) != text.endIndex else {
            throw ValidationError("\(flag) takes NAME=VALUE, not \"\(text)\"")
        }
        return (String(text[..<eq]), String(text[text.index(after: eq)...]))
    }

    func transform() throws -> Transform {
        var transform = Transform()
        for text in renames {
            let (old, new) = try Self.pair(text, "--rename")
            transform.rename[old] = new
        }
        for name in drops {
            guard !name.isEmpty else { throw ValidationError("--drop needs a field name") }
            transform.drop.append(name)
        }
        for text in sets {
            let (field, value) = try Self.pair(text, "--set")
            transform.set[field] = (try? JSON.parse(value)) ?? .string(value)
        }
        for text in casts {
            let (field, type) = try Self.pair(text, "--cast")
            guard let cast = Transform.CastType(name: type) else {
                throw ValidationError("--cast \(text): the type must be int, double, string, bool or json")
            }
            transform.cast[field] = cast
        }
        for text in conditions {
            do {
                transform.filter.append(try Transform.Condition(parsing: text))
            } catch {
                throw ValidationError("--where: \(error.message)")
            }
        }
        return transform
    }

    func apply(to spec: inout JobSpec, environment: [String: String]) throws {
        spec.key = key
        spec.transform = try transform()
        spec.sourceAuth = sourceAuth ?? environment["FERRY_SOURCE_AUTH"]
        spec.targetAuth = targetAuth ?? environment["FERRY_TARGET_AUTH"]
        spec.sourceREST = try Self.settings(sourceREST, "--source-rest")
        spec.targetREST = try Self.settings(targetREST, "--target-rest")
        spec.batchSize = batchSize
        spec.retries = retries
        spec.reconcile = !noReconcile
    }
}

/// Prints errors as one line and picks the exit code: 2 for an error, 1 for a run that
/// finished with rejected records or differences.
enum CommandLine {
    static func fail(_ error: any Error) -> ExitCode {
        let message: String
        if let error = error as? SyncError {
            message = error.message
        } else {
            message = "\(error)"
        }
        FileHandle.standardError.write(Data("ferry: error: \(message)\n".utf8))
        return ExitCode(2)
    }

    static var stderrIsTerminal: Bool { isatty(STDERR_FILENO) != 0 }

    static func printJSON(_ value: JSON) {
        print(value.serialized())
    }
}

/// A progress line on a terminal: records done, rate, and ETA when the total is known.
final class ProgressLine {
    private let started = Date()
    private var lastDraw = Date.distantPast
    private let label: String
    private var drew = false

    init(label: String) { self.label = label }

    func update(done: Int, total: Int?) {
        let now = Date()
        guard now.timeIntervalSince(lastDraw) >= 0.2 else { return }
        lastDraw = now
        let elapsed = max(now.timeIntervalSince(started), 0.001)
        let rate = Double(done) / elapsed
        var line = "\(label): \(Self.grouped(done))"
        if let total, total > 0 {
            line += "/\(Self.grouped(total)) records"
            if rate > 0, done < total {
                let eta = Int(Double(total - done) / rate)
                line += String(format: "  ETA %d:%02d", eta / 60, eta % 60)
            }
        } else {
            line += " records"
        }
        line += "  \(Self.grouped(Int(rate))) rec/s"
        FileHandle.standardError.write(Data("\r\u{1B}[K\(line)".utf8))
        drew = true
    }

    func clear() {
        if drew { FileHandle.standardError.write(Data("\r\u{1B}[K".utf8)) }
    }

    static func grouped(_ n: Int) -> String {
        let text = String(n)
        var out = ""
        for (i, c) in text.reversed().enumerated() {
            if i > 0 && i % 3 == 0 && c != "-" { out.append(",") }
            out.append(c)
        }
        return String(out.reversed())
    }
}
