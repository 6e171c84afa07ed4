import ArgumentParser
import FerryCore
import FerrySync
import Foundation

/// `ferry status`: the history of sync runs recorded in the state database.
struct StatusCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status",
        abstract: "Show the recent sync runs: when, which job, the outcome and what moved.",
        discussion: """
            Reads the runs table of the state database that `ferry sync` and `ferry run` write. Exit status 2 when there is none.

            --model estimates each job's sync-health Markov chain from the states `ferry run` recorded \
            once per --model-interval: the transition counts and probabilities, the long-run share of \
            time in sync, the mean time to recovery (failing to in sync) and the probability of being \
            in sync --ahead intervals from now. A job with fewer than 10 transitions has not enough data.
            """
    )

    @Option(name: .long, help: ArgumentHelp("The engine's state database: checkpoints and run history.", valueName: "FILE")) var state: String = ".ferry/state.db"
    @Option(name: .long, help: ArgumentHelp("Only this job's runs.", valueName: "NAME")) var job: String?
    @Option(name: .long, help: ArgumentHelp("Most runs to show, newest first.", valueName: "N")) var limit: Int = 20
    @Flag(name: .long, help: "Print the runs as JSON (each with its full report).") var json = false
    @Flag(name: .long, help: "Show each job's sync-health model instead of the runs.") var model = false
    @Option(name: .long, help: ArgumentHelp("With --model: the probability of being in sync this many intervals ahead.", valueName: "K")) var ahead: Int = 10

    func validate() throws {
        guard (1...10_000).contains(limit) else { throw ValidationError("--limit must be between 1 and 10000, not \(limit)") }
        guard (1...100_000).contains(ahead) else { throw ValidationError("--ahead must be between 1 and 100000, not \(ahead)") }
    }

    /// `--model`: one model per job with recorded states (or the one job of --job).
    func showModels(_ store: StateStore) throws {
        let names = try job.map { [$0] } ?? store.jobsWithStates()
        var reports: [JSON] = []
        for name in names {
            let (history, interval) = try store.stateHistory(job: name)
            var report: [String: JSON] = ["job": .string(name)]
            do {
                let model = try SyncHealthModel(history: history)
                report["model"] = model.json(intervalSeconds: interval, ahead: ahead)
                if !json { print(([name + ":"] + model.lines(intervalSeconds: interval, ahead: ahead).map { "  " + $0 }).joined(separator: "\n")) }
            } catch {
                report["error"] = .string(error.description)
                if !json { print("\(name): \(error.description)" + (history.isEmpty ? " (no states recorded: ferry run records them for jobs that are not once)" : "")) }
            }
            reports.append(.object(report))
        }
        if json { CommandLine.printJSON(.array(reports)) }
        if !json && names.isEmpty { print("no job states recorded in \(state): ferry run records them for jobs that are not once") }
    }

    func run() throws {
        // Asking must not create an empty state database where there was none.
        guard FileManager.default.fileExists(atPath: state) else {
            throw CommandLine.fail(SyncError.badInput("no state database at \(state): no sync has run here (or give --state)"))
        }
        let runs: [(job: String, mode: String, startedAt: String, endedAt: String, outcome: String, report: String)]
        do {
            let store = try StateStore(path: state, forWriting: false)
            if model { return try showModels(store) }
            runs = try store.runs(limit: limit, job: job)
        } catch {
            throw CommandLine.fail(error)
        }
        if json {
            CommandLine.printJSON(.array(runs.map { run in
                ["job": .string(run.job), "mode": .string(run.mode), "startedAt": .string(run.startedAt), "endedAt": .string(run.endedAt),
                 "outcome": .string(run.outcome), "report": (try? JSON.parse(run.report)) ?? .null]
            }))
            return
        }
        guard !runs.isEmpty else {
            print(job.map { "no runs of job \($0) recorded in \(state)" } ?? "no runs recorded in \(state)")
            return
        }
        var rows = [["started", "job", "mode", "outcome", "read", "created", "updated", "deleted", "rejected", "conflicts", "seconds"]]
        for run in runs {
            let report = try? JSON.parse(run.report)
            func count(_ name: String) -> String { report?[name]?.intValue.map { ProgressLine.grouped(Int($0)) } ?? "-" }
            let seconds = report?["durationSeconds"].flatMap { value -> String? in
                if case .double(let d) = value { return String(format: "%.2f", d) }
                return value.intValue.map { String($0) }
            } ?? "-"
            // Two-way runs: conflicts found (won by a, by b, left to resolve), else "-".
            let conflicts = report?["twoWay"]?["conflicts"].map { c in
                ["aWon", "bWon", "manual"].map { String(c[$0]?.intValue ?? 0) }.joined(separator: "/")
            } ?? "-"
            rows.append([run.startedAt, run.job, run.mode, run.outcome, count("read"), count("created"), count("updated"),
                         count("deleted"), count("failed"), conflicts, seconds])
        }
        let widths = rows[0].indices.map { column in rows.map { $0[column].count }.max() ?? 0 }
        for row in rows {
            print(zip(row, widths).map { $0.0.padding(toLength: $0.1, withPad: " ", startingAt: 0) }.joined(separator: "  ").trimmingCharacters(in: .whitespaces))
        }
    }
}
