import ArgumentParser
import FerryCore
import FerryJobs
import FerrySync
import Foundation

/// `ferry sync SOURCE TARGET`: make the target hold what the source holds.
struct Sync: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Copy records from a source to a target: full, incremental, diff or both ways (--two-way).",
        discussion: """
            Endpoints: file:PATH.jsonl, file:PATH.csv, sqlite:PATH#TABLE, \
            postgres://USER:PASS@HOST/DB[?sslmode=…]#TABLE (a PostgreSQL table), \
            http(s)://HOST/v1/buckets/B/collections/C (a Ferry or Kinto server), \
            rest+http(s)://HOST/PATH (any JSON REST API, described with --source-rest/--target-rest).

            Modes: full copies everything (--delete also removes what the source lacks); \
            incremental reads what changed after the saved checkpoint (a server's _since \
            timestamp with deletes, or --cursor-field on a table or file); diff compares both \
            sides by record hashes and applies only the differences, deletes included; \
            two-way (--two-way) applies each side's changes since the last run to the other, \
            records changed on both going by --on-conflict (see ferry conflicts).

            Exit status: 0 when everything was applied (and verified), 1 when records were \
            rejected (see the dead-letter file) or verification found differences, 2 on an error.
            """
    )

    @Argument(help: "Where records come from: an endpoint URL (see the list above).") var source: String
    @Argument(help: "Where records go: an endpoint URL.") var target: String
    @Option(name: .long, help: ArgumentHelp("full, incremental, diff or two-way.", valueName: "MODE")) var mode: String = "full"
    @Flag(name: .long, help: "Sync both ways: each run applies the source's changes to the target and the target's to the source (the same as --mode two-way).") var twoWay = false
    @Option(name: .long, help: ArgumentHelp("With --two-way: what to do with a record changed on both sides: a-wins, b-wins, newest-wins or manual (default: manual).", valueName: "POLICY")) var onConflict: String?
    @Option(name: .long, help: ArgumentHelp("With --on-conflict newest-wins: the field that says which side is newer (default: the servers' timestamps).", valueName: "FIELD")) var newestField: String?
    @Flag(name: .long, help: "With --mode full: delete target records the source does not have.") var delete = false
    @Option(name: .long, help: ArgumentHelp("The updated_at-like field for incremental runs from a table, a file or a REST API.", valueName: "FIELD")) var cursorField: String?
    @Option(name: .long, help: ArgumentHelp("Name of the job, which its checkpoint is kept under (default: derived from source, target and options).", valueName: "NAME")) var job: String?
    @Option(name: .long, help: ArgumentHelp("The engine's state database: checkpoints and run history.", valueName: "FILE")) var state: String = ".ferry/state.db"
    @Option(name: .long, help: ArgumentHelp("Where rejected records go (default: .ferry/dead-letter/JOB.jsonl).", valueName: "FILE")) var deadLetter: String?
    @Flag(name: .long, help: "Read and plan, change nothing; with diff, print the plan.") var dryRun = false
    @Flag(name: .long, help: "Compare both sides after the run (count and digest).") var verify = false
    @Flag(name: .long, help: "Stop at the first rejected record.") var strict = false
    @Option(name: .long, help: ArgumentHelp("How full a PostgreSQL table Ferry creates fills its pages, 10 to 100 percent (default: 50, leaving room for updates).", valueName: "PERCENT")) var fillFactor: Int?
    @Flag(name: .long, help: "Forget the job's checkpoint and start from the beginning.") var reset = false
    @Flag(name: .long, help: "Print a JSON report on stdout.") var json = false
    @Option(name: .long, help: ArgumentHelp("Run again at this interval (30s, 5m, 2h), in one long-lived process.", valueName: "INTERVAL")) var every: String?
    @Option(name: .long, help: ArgumentHelp("Run at the times of a cron expression (\"*/5 * * * *\"), in one long-lived process.", valueName: "EXPRESSION")) var cron: String?
    @Option(name: .long, help: ArgumentHelp("With --every or --cron: stop after this many runs.", valueName: "N")) var maxRuns: Int?
    @Flag(name: .long, help: "After catching up, keep the target in sync in real time (a Ferry server's event stream, its long-poll, else polling) until SIGTERM; with --two-way, both sides.") var follow = false
    @Option(name: .long, help: ArgumentHelp("With --follow: how to learn of changes: auto (default), stream, long-poll or poll.", valueName: "WAY")) var followVia: String?
    @Option(name: .long, help: ArgumentHelp("With --follow: how often to look for changes when the source (with --two-way: either side) has no event stream (default: 5s).", valueName: "INTERVAL")) var pollInterval: String?
    @OptionGroup var records: RecordOptions

    func validate() throws {
        let given = try RecordOptions.flag { () throws(SyncError) in try JobRules.mode(parsing: mode, .flags) }
        if twoWay && given != .full && given != .twoWay { throw ValidationError("--two-way is a mode of its own: it does not go with --mode \(mode)") }
        if let job, job.isEmpty || job.count > 200 { throw ValidationError("--job must be 1 to 200 characters") }
        if every != nil && cron != nil { throw ValidationError("--every and --cron cannot go together") }
        if follow, every != nil || cron != nil { throw ValidationError("--follow runs as changes come; it does not go with --every or --cron") }
        if pollInterval != nil && !follow { throw ValidationError("--poll-interval goes with --follow") }
        if let followVia {
            guard follow else { throw ValidationError("--follow-via goes with --follow") }
            guard ["auto", "stream", "long-poll", "poll"].contains(followVia) else {
                throw ValidationError("--follow-via must be auto, stream, long-poll or poll, not \"\(followVia)\"")
            }
        }
        if let maxRuns, every == nil && cron == nil || maxRuns < 1 { throw ValidationError("--max-runs goes with --every or --cron and must be at least 1, not \(maxRuns)") }
        _ = try spec()
    }

    /// The job the flags give, checked as a jobs file's job is (``JobSpec/validate(_:)``).
    func spec() throws -> JobSpec {
        var spec = JobSpec(source: source, target: target)
        spec.name = job
        spec.mode = twoWay ? .twoWay : try RecordOptions.flag { () throws(SyncError) in try JobRules.mode(parsing: mode, .flags) }
        if let onConflict {
            spec.onConflict = try RecordOptions.flag { () throws(SyncError) in try JobRules.onConflict(parsing: onConflict, .flags) }
        }
        spec.newestField = newestField
        spec.delete = delete
        spec.cursorField = cursorField
        spec.deadLetter = deadLetter
        spec.dryRun = dryRun
        spec.verify = verify
        spec.strict = strict
        spec.fillFactor = fillFactor
        if follow {
            spec.trigger = .follow(pollInterval: try pollSeconds())
        } else if let schedule = try schedule() {
            spec.trigger = .schedule(schedule)
        }
        try records.apply(to: &spec, environment: ProcessInfo.processInfo.environment)
        return try RecordOptions.validated(spec)
    }

    /// `--poll-interval` in seconds.
    func pollSeconds() throws -> Double {
        guard let pollInterval else { return 5 }
        do {
            guard case .every(let seconds) = try Schedule(every: pollInterval) else { return 5 }
            return seconds
        } catch {
            throw ValidationError("--poll-interval: " + error.message.replacingOccurrences(of: "every: ", with: ""))
        }
    }

    /// The schedule of `--every`/`--cron`, nil for a single run.
    func schedule() throws -> Schedule? {
        do {
            if let every { return try Schedule(every: every) }
            if let cron { return .cron(try CronExpression(cron)) }
        } catch {
            throw ValidationError(error.message)
        }
        return nil
    }

    func run() async throws {
        let spec: JobSpec
        var job: SyncJob
        do {
            spec = try self.spec()
            job = spec.job
            job.statePath = state
            job.reset = reset
        } catch {
            throw CommandLine.fail(error)
        }
        switch spec.trigger {
        case .follow(let pollInterval):
            let failed = try await Self.follow(job, pollInterval: pollInterval, via: followVia == "auto" ? nil : followVia, json: json)
            if failed { throw ExitCode(1) }
        case .schedule(let schedule):
            let service = JobService(jobs: [(job, .schedule(schedule))], output: .printing(json: json), maxRuns: maxRuns)
            let failed = try await GracefulShutdown.run(stop: { service.stop() }) { await service.run() }
            if failed { throw ExitCode(1) }
        case .once, .webhook:
            let report: SyncReport
            do {
                report = try await Self.execute(job, json: json)
            } catch {
                throw CommandLine.fail(error)
            }
            if !report.succeeded { throw ExitCode(1) }
        }
    }

    /// `--follow` until SIGTERM/SIGINT: one line per run that moved something (or a JSON report
    /// per run with `--json`); failures are reported and retried with backoff.
    /// - Returns: whether any record was rejected.
    static func follow(_ job: SyncJob, pollInterval: Double, via: String?, json: Bool) async throws -> Bool {
        let follower = Follower(job: job, pollInterval: pollInterval)
        follower.via = via
        let name = job.name ?? ConnectorRegistry.standard.redacted(job.source)
        let rejected = LockedFlag()
        follower.onNotice = { FileHandle.standardError.write(Data("ferry: \($0)\n".utf8)) }
        follower.onError = { error in
            let message = (error as? SyncError)?.message ?? "\(error)"
            FileHandle.standardError.write(Data("ferry: error: \(name): \(message) (retrying)\n".utf8))
        }
        follower.onReport = { report in
            if report.failed > 0 { rejected.set() }
            FollowLine.write(report, json: json)
        }
        try await GracefulShutdown.run(stop: { follower.stop() }) {
            let engine = SyncEngine()
            engine.onNotice = { FileHandle.standardError.write(Data("ferry: note: \($0)\n".utf8)) }
            await follower.run(engine: engine)
        }
        return rejected.isSet
    }

    /// Runs a job with progress on a terminal and the report on stdout.
    /// - Parameter stop: closed when the process stops: the run ends after its current batch.
    static func execute(_ job: SyncJob, json: Bool, stop: WakeSignal? = nil) async throws -> SyncReport {
        let engine = SyncEngine()
        engine.stop = stop
        let progress = ProgressLine(label: job.name ?? ConnectorRegistry.standard.redacted(job.source))
        if CommandLine.stderrIsTerminal {
            engine.onProgress = { done, total in progress.update(done: done, total: total) }
        }
        engine.onNotice = { FileHandle.standardError.write(Data("ferry: note: \($0)\n".utf8)) }
        let report = try await engine.run(job)
        progress.clear()
        if json {
            CommandLine.printJSON(report.json)
        } else {
            print(ReportTable.render(report))
        }
        if report.failed > 0 {
            FileHandle.standardError.write(Data("ferry: \(report.failed) record\(report.failed == 1 ? " was" : "s were") rejected; see \(report.deadLetterPath ?? "the dead-letter file")\n".utf8))
        }
        if let verification = report.verification, !verification.equal {
            FileHandle.standardError.write(Data("ferry: verify: source and target differ (\(verification.differingCount) records)\n".utf8))
        }
        return report
    }
}

/// One line per run under `--follow`.
enum FollowLine {
    /// Prints a follow run's line (if ``shows(_:)``), or its JSON report with `--json`; written at
    /// once, not buffered: whoever reads a pipe sees each run as it ends.
    static func write(_ report: SyncReport, json: Bool) {
        if json {
            FileHandle.standardOutput.write(Data((report.json.serialized() + "\n").utf8))
        } else if shows(report) {
            FileHandle.standardOutput.write(Data((render(report) + "\n").utf8))
        }
    }

    /// Whether a follow run is worth a line: it read something (one-way), or moved or met
    /// something (two-way, whose table sides are read whole at each poll).
    static func shows(_ report: SyncReport) -> Bool {
        if let t = report.twoWay {
            return t.writtenToA + t.deletedInA + t.writtenToB + t.deletedInB + t.conflicts + t.resolved + t.changedMeanwhile + report.failed > 0
        }
        return report.read > 0 || report.failed > 0
    }

    static func render(_ report: SyncReport) -> String {
        var parts = ["read \(report.read)"]
        for (name, n) in [("created", report.created), ("updated", report.updated), ("written", report.written), ("deleted", report.deleted),
                          ("rejected", report.failed)] where n > 0 {
            parts.append("\(name) \(n)")
        }
        if let t = report.twoWay {
            parts.append("to target \(t.writtenToB) written \(t.deletedInB) deleted, to source \(t.writtenToA) written \(t.deletedInA) deleted")
            if t.conflicts > 0 { parts.append("conflicts \(t.conflicts) (source won \(t.aWon), target won \(t.bWon), manual \(t.manual))") }
            if t.changedMeanwhile > 0 { parts.append("changed during the run \(t.changedMeanwhile)") }
        }
        let time = String(format: "%.1f ms", report.durationSeconds * 1000)
        return "\(StateStoreTime.format(Date()))  \(report.job): " + parts.joined(separator: ", ") + " in \(time)" + (report.cursorAfter.map { ", cursor \($0)" } ?? "")
    }
}

/// The human summary of a run.
enum ReportTable {
    static func render(_ report: SyncReport) -> String {
        var rows: [(String, String)] = [
            ("job", report.job), ("mode", report.mode.rawValue + (report.dryRun ? " (dry run: nothing changed)" : "")),
            ("source", report.source), ("target", report.target), ("read", ProgressLine.grouped(report.read)),
        ]
        let counts: [(String, Int)] = [
            ("created", report.created), ("updated", report.updated), ("written", report.written), ("deleted", report.deleted),
            ("already gone", report.alreadyGone), ("unchanged", report.unchanged), ("filtered out", report.filtered),
            ("rejected", report.failed), ("retries", report.retries),
        ]
        for (name, n) in counts where n > 0 || name == "rejected" { rows.append((name, ProgressLine.grouped(n))) }
        let rate = report.durationSeconds > 0 ? Int(Double(report.read) / report.durationSeconds) : 0
        rows.append(("duration", String(format: "%.2f s (%@ records/s)", report.durationSeconds, ProgressLine.grouped(rate))))
        if let cursor = report.cursorAfter { rows.append(("cursor", cursor.description)) }
        if report.failed > 0, let path = report.deadLetterPath { rows.append(("dead letters", path)) }
        if let plan = report.plan, report.dryRun {
            rows.append(("plan: create", Self.keys(plan.creates, report.created)))
            rows.append(("plan: update", Self.keys(plan.updates, report.updated)))
            rows.append(("plan: delete", Self.keys(plan.deletes, report.deleted)))
        }
        if let v = report.verification { rows.append(contentsOf: VerifyCommand.rows(v)) }
        if let t = report.twoWay {
            rows.append(("to target", "\(ProgressLine.grouped(t.writtenToB)) written, \(ProgressLine.grouped(t.deletedInB)) deleted"))
            rows.append(("to source", "\(ProgressLine.grouped(t.writtenToA)) written, \(ProgressLine.grouped(t.deletedInA)) deleted"))
            rows.append(("conflicts", "\(t.conflicts): \(t.aWon) source won, \(t.bWon) target won, \(t.manual) left to resolve (ferry conflicts list)" + (t.resolved > 0 ? "; \(t.resolved) resolutions applied" : "")))
            if t.changedMeanwhile > 0 { rows.append(("changed during run", "\(t.changedMeanwhile) (the next run picks them up)")) }
        }
        let width = rows.map(\.0.count).max() ?? 0
        return rows.map { $0.0.padding(toLength: width, withPad: " ", startingAt: 0) + "  " + $0.1 }.joined(separator: "\n")
    }

    static func keys(_ keys: [String], _ total: Int) -> String {
        guard total > 0 else { return "none" }
        let shown = keys.prefix(20).joined(separator: ", ")
        return "\(total): " + shown + (total > min(keys.count, 20) ? ", …" : "")
    }
}
