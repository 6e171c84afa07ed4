import ArgumentParser
import FerryCore
import FerrySync
import Foundation

/// `ferry conflicts list|show|resolve`: the records a two-way job with `--on-conflict manual`
/// left for a person to settle.
struct ConflictsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "conflicts",
        abstract: "List, show and resolve the conflicts of two-way jobs (--on-conflict manual).",
        discussion: "A resolution is recorded in the state database; the job's next run writes it to both sides.",
        subcommands: [List.self, Show.self, Resolve.self]
    )

    struct StateOption: ParsableArguments {
        @Option(name: .long, help: ArgumentHelp("The engine's state database: checkpoints and run history.", valueName: "FILE")) var state: String = ".ferry/state.db"

        /// The state database; asking must not create an empty one where there was none.
        func open() throws -> StateStore {
            guard FileManager.default.fileExists(atPath: state) else {
                throw CommandLine.fail(SyncError.badInput("no state database at \(state): no sync has run here (or give --state)"))
            }
            do {
                return try StateStore(path: state)
            } catch {
                throw CommandLine.fail(error)
            }
        }

        func conflict(_ store: StateStore, id: Int64) throws -> StateStore.Conflict {
            guard let conflict = try store.conflict(id: id) else {
                throw CommandLine.fail(SyncError.badInput("no conflict \(id) in \(state) (see ferry conflicts list)"))
            }
            return conflict
        }
    }

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List the conflicts waiting for a decision (or, with --all, every one).")
        @OptionGroup var options: StateOption
        @Option(name: .long, help: ArgumentHelp("Only this job's conflicts.", valueName: "NAME")) var job: String?
        @Flag(name: .long, help: "Also list settled conflicts.") var all = false
        @Flag(name: .long, help: "Print the conflicts as JSON.") var json = false

        func run() throws {
            let store = try options.open()
            let conflicts = try store.conflicts(job: job, all: all)
            if json {
                CommandLine.printJSON(.array(conflicts.map(\.json)))
                return
            }
            guard !conflicts.isEmpty else {
                print(all ? "no conflicts recorded in \(options.state)" : "no conflicts to resolve in \(options.state)")
                return
            }
            var rows = [["id", "job", "record", "status", "source (a)", "target (b)", "detected"]]
            for c in conflicts {
                rows.append([String(c.id), c.job, c.key, c.status + (c.taken.map { " (take \($0))" } ?? ""),
                             c.a == nil ? "deleted" : "changed", c.b == nil ? "deleted" : "changed", c.detectedAt])
            }
            let widths = rows[0].indices.map { column in rows.map { $0[column].count }.max() ?? 0 }
            for row in rows {
                print(zip(row, widths).map { $0.0.padding(toLength: $0.1, withPad: " ", startingAt: 0) }.joined(separator: "  ").trimmingCharacters(in: .whitespaces))
            }
        }
    }

    struct Show: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show both sides of one conflict.")
        @OptionGroup var options: StateOption
        @Argument(help: "The conflict's id (see ferry conflicts list).") var id: Int64
        @Flag(name: .long, help: "Print the conflict as JSON.") var json = false

        func run() throws {
            let store = try options.open()
            let c = try options.conflict(store, id: id)
            if json {
                CommandLine.printJSON(c.json)
                return
            }
            print("conflict \(c.id): job \(c.job), record \(c.key), \(c.status), found \(c.detectedAt)")
            print("a (source): " + (c.a?.serialized() ?? "deleted"))
            print("b (target): " + (c.b?.serialized() ?? "deleted"))
            if let taken = c.taken { print("decision: take \(taken): " + (c.resolution?.serialized() ?? "delete on both sides")) }
        }
    }

    struct Resolve: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Decide a conflict: take a (the source's side), b (the target's) or the record in a JSON file.",
            discussion: "The decision is applied to both sides by the job's next run (if neither side changed again meanwhile).")
        @OptionGroup var options: StateOption
        @Argument(help: "The conflict's id (see ferry conflicts list).") var id: Int64
        @Option(name: .long, help: ArgumentHelp("a, b, or a file holding the record as a JSON object.", valueName: "a|b|FILE")) var take: String

        func run() throws {
            let store = try options.open()
            let c = try options.conflict(store, id: id)
            guard c.status != "settled" else {
                throw CommandLine.fail(SyncError.badInput("conflict \(id) is already settled; nothing to resolve"))
            }
            let resolution: [String: JSON]?
            do {
                resolution = try Self.record(take: take, conflict: c)
            } catch {
                throw CommandLine.fail(error)
            }
            let hash = resolution.map { RecordHash(fields: $0, keyField: c.keyField, keyText: c.key).description }
            try store.resolveConflict(id: id, resolution: resolution.map(JSON.object), resolutionHash: hash, taken: take)
            let what = resolution == nil ? "the record is deleted on both sides" : "both sides get the chosen record"
            print("conflict \(id) (job \(c.job), record \(c.key)) resolved with \(take): \(what) at the job's next run")
        }

        /// The record `--take` names: a side's (nil: that side deleted it) or a file's.
        static func record(take: String, conflict c: StateStore.Conflict) throws(SyncError) -> [String: JSON]? {
            switch take {
            case "a": return c.a?.objectValue
            case "b": return c.b?.objectValue
            default: break
            }
            guard FileManager.default.fileExists(atPath: take) else {
                throw .badInput("--take must be a, b or a JSON file holding the record, not \"\(take)\" (no such file)")
            }
            guard let data = FileManager.default.contents(atPath: take) else { throw SyncError(.io, "cannot read \(take)") }
            let parsed: JSON
            do {
                parsed = try JSON.parse(bytes: Array(data))
            } catch {
                throw .badInput("\(take) is not valid JSON: \(error)")
            }
            guard var fields = parsed.objectValue else { throw .badInput("\(take) must hold one record, a JSON object") }
            if let value = fields[c.keyField] {
                guard RecordKey(value)?.text == c.key else {
                    throw .badInput("\(take) is the record \(value.serialized()) (field \(c.keyField)), not \(c.key) of conflict \(c.id)")
                }
            } else {
                fields[c.keyField] = c.a?[c.keyField] ?? c.b?[c.keyField] ?? .string(c.key)
            }
            return fields
        }
    }
}
