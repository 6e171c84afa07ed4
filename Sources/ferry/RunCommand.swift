import ArgumentParser
import FerryCore
import FerrySync
import Foundation

/// `ferry run ferry.yml`: the jobs of a file.
struct RunCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Run the jobs of a YAML file (its jobs: section), one after the other.",
        discussion: """
            Each job takes source, target, mode, delete, key, cursor_field, batch_size,
            transform (rename, drop, set, cast, filter), verify, strict, dead_letter,
            source_auth, target_auth (use ${ENV_VAR} for secrets), retries, dry_run and schedule.
            schedule: once (the default) runs the job once; every INTERVAL (every 30s) and
            cron EXPRESSION (cron */5 * * * *) keep the process running and run each job at its
            times, one run at a time. follow and webhook schedules are refused with an error
            rather than run once by surprise.
            """
    )

    @Argument(help: "The jobs file.") var file: String
    @Option(name: .customLong("job"), help: "Run only this job (repeatable).") var only: [String] = []
    @Option(name: .long, help: "The engine's state database (default .ferry/state.db).") var state: String = ".ferry/state.db"
    @Flag(name: .long, help: "Print one JSON report per job on stdout.") var json = false
    @Option(name: .long, help: "Stop after each scheduled job ran this many times.") var maxRuns: Int?

    func validate() throws {
        if let maxRuns, maxRuns < 1 { throw ValidationError("--max-runs must be at least 1, not \(maxRuns)") }
    }

    func run() async throws {
        var failed = false
        do {
            guard let data = FileManager.default.contents(atPath: file), let text = String(data: data, encoding: .utf8) else {
                throw SyncError(.io, "\(file): cannot read the jobs file")
            }
            var jobs = try JobsFile.parse(text, file: file, environment: ProcessInfo.processInfo.environment)
            let names = Set(jobs.compactMap(\.job.name))
            for name in only where !names.contains(name) {
                throw SyncError.badInput("\(file): no job named \(name) (jobs: \(jobs.compactMap(\.job.name).joined(separator: ", ")))")
            }
            if !only.isEmpty { jobs = jobs.filter { only.contains($0.job.name ?? "") } }
            var scheduled: [(job: SyncJob, schedule: Schedule)] = []
            var once: [SyncJob] = []
            for (var job, text) in jobs {
                job.statePath = state
                do {
                    if let schedule = try ScheduledRuns.parse(text) { scheduled.append((job, schedule)) } else { once.append(job) }
                } catch {
                    throw SyncError.badInput("\(file): job \(job.name ?? job.id): \(error.message)")
                }
            }
            for job in once {
                if !json { print("== \(job.name ?? job.id)") }
                let report = try await Sync.execute(job, json: json)
                failed = failed || !report.succeeded
            }
            if !scheduled.isEmpty {
                failed = await ScheduledRuns.loop(scheduled, json: json, maxRuns: maxRuns) || failed
            }
        } catch {
            throw CommandLine.fail(error)
        }
        if failed { throw ExitCode(1) }
    }
}
