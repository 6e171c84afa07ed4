import FerryCore
import FerrySync
import Foundation

/// Jobs under `--every`/`--cron` (or `schedule:` in a jobs file), in one long-lived process.
///
/// One run at a time, so runs never overlap; ticks that fall during a run are skipped. A run
/// that fails is reported on stderr and the job runs again at its next tick.
enum ScheduledRuns {
    /// Runs until interrupted, or until every job ran `maxRuns` times.
    /// - Returns: whether any run failed or rejected records.
    static func loop(_ jobs: [(job: SyncJob, schedule: Schedule)], json: Bool, maxRuns: Int?) async -> Bool {
        var next = jobs.map { $0.schedule.firstStart(now: Date()) }
        var runs = Array(repeating: 0, count: jobs.count)
        var failed = false
        while true {
            let pending = jobs.indices.filter { maxRuns == nil || runs[$0] < maxRuns! }
            guard let i = pending.min(by: { next[$0] < next[$1] }) else { return failed }
            let wait = next[i].timeIntervalSinceNow
            if wait > 0 { try? await Task.sleep(nanoseconds: UInt64(wait * 1e9)) }
            let (job, schedule) = jobs[i]
            let name = job.name ?? job.id
            let started = Date()
            if !json { print("== \(name) at \(StateStoreTime.format(started))") }
            do {
                let report = try await Sync.execute(job, json: json)
                failed = failed || !report.succeeded
            } catch {
                failed = true
                let message = (error as? SyncError)?.message ?? "\(error)"
                FileHandle.standardError.write(Data("ferry: error: \(name): \(message)\n".utf8))
            }
            runs[i] += 1
            next[i] = schedule.nextStart(started: started, ended: Date())
            if maxRuns == nil || runs[i] < maxRuns! {
                FileHandle.standardError.write(Data("ferry: next run of \(name) at \(StateStoreTime.format(next[i])) (\(schedule))\n".utf8))
            }
        }
    }

    /// A schedule from its text in a jobs file: `once`, `every 30s`, `cron */5 * * * *`.
    /// - Returns: nil for `once`.
    static func parse(_ text: String) throws(SyncError) -> Schedule? {
        let trimmed = text.trimmingCharacters(in: .whitespaces)
        if trimmed == "once" { return nil }
        if trimmed.hasPrefix("every ") { return try Schedule(every: String(trimmed.dropFirst(6))) }
        if trimmed.hasPrefix("cron ") {
            var expression = String(trimmed.dropFirst(5)).trimmingCharacters(in: .whitespaces)
            if expression.count >= 2, expression.first == "\"" || expression.first == "'", expression.last == expression.first {
                expression = String(expression.dropFirst().dropLast())
            }
            return .cron(try CronExpression(expression))
        }
        if trimmed == "follow" || trimmed.hasPrefix("webhook") {
            throw .badInput("schedule \"\(trimmed)\" is not supported by this version (once, every INTERVAL or cron EXPRESSION)")
        }
        throw .badInput("schedule \"\(trimmed)\" must be once, every INTERVAL (every 30s) or cron EXPRESSION (cron */5 * * * *)")
    }
}

/// Times as the run history writes them.
enum StateStoreTime {
    static func format(_ date: Date) -> String {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime]
        return formatter.string(from: date)
    }
}
