import FerryCore
import FerrySync
import Foundation

/// What `GET /status` and `GET /metrics` show: each job's state, last run, lag, error and counts.
public final class JobStatus: @unchecked Sendable {
    struct Entry {
        var name: String
        var schedule: String
        var state = "starting"
        var runs = 0
        var failures = 0
        var lastStarted: Date?
        var lastEnded: Date?
        var lastOutcome: String?
        var lastError: String?
        var lastReport: SyncReport?
        /// The start of the last run that succeeded: the target holds the source as of then.
        var lastSuccessStarted: Date?
        var nextRun: Date?
        /// A change seen on the source that no run has started to read yet (follow jobs).
        var changePendingSince: Date?
        var totals: [String: Int] = [:]
        /// The sync-health model from the recorded states, or why there is none yet.
        var model: Result<SyncHealthModel, SyncHealthModel.NotEnoughData>?
        /// The last runs, oldest first (at most ``JobStatus/historyLength``), for the status page's charts.
        var history: [RunPoint] = []
        /// The job's lag at the end of each of the last intervals of the health model, oldest first.
        var lagOverTime: [Double] = []
        /// Records written or deleted in each of the last intervals, oldest first, and the total at the last one.
        var recordsOverTime: [Double] = []
        var recordsSampled = 0
        /// The job's id (what its state database files its conflicts under) and state database.
        var id: String? = nil
        var statePath: String? = nil
        var twoWay = false
        /// The newest lines of the job's dead-letter file, newest first, as of its last run.
        var deadLetters: [JSON] = []
        var deadLetterPath: String?
        /// The job's unsettled two-way conflicts, newest first, as of its last run.
        var conflicts: [StateStore.Conflict] = []
    }

    /// What the service knows of a job before it runs.
    struct Job {
        var name: String
        var schedule: String
        var id: String? = nil
        var statePath: String? = nil
        var twoWay = false
    }

    /// Most dead letters and conflicts a job's entry keeps for the page.
    static let problemsShown = 20

    /// One finished run on the status page's charts.
    struct RunPoint {
        var ended: Date
        /// Records the run wrote or deleted.
        var records: Int
        /// The job's lag when the run ended, in seconds.
        var lag: Double?
        var succeeded: Bool
    }

    static let historyLength = 120

    private let lock = NSLock()
    private var entries: [Entry]
    let started = Date()
    /// The seconds of one interval of the sync-health model.
    let modelInterval: Double
    /// The k of "in sync k intervals ahead" in `/status` and `/metrics`.
    static let modelAhead = 10

    /// The counters and gauges of `GET /metrics`; used under ``lock``.
    private let metrics: JobMetrics

    init(jobs: [Job], modelInterval: Double = 60) {
        entries = jobs.map { Entry(name: $0.name, schedule: $0.schedule, id: $0.id, statePath: $0.statePath, twoWay: $0.twoWay) }
        self.modelInterval = modelInterval
        metrics = JobMetrics(jobs: jobs.map(\.name))
    }

    func update(_ name: String, _ change: (inout Entry) -> Void) {
        lock.withLock {
            if let i = entries.firstIndex(where: { $0.name == name }) { change(&entries[i]) }
        }
    }

    func started(_ name: String) {
        update(name) { entry in
            entry.state = "running"
            entry.lastStarted = Date()
            entry.changePendingSince = nil
        }
    }

    func changeSeen(_ name: String) {
        update(name) { entry in
            if entry.changePendingSince == nil { entry.changePendingSince = Date() }
        }
    }

    func finished(_ name: String, report: SyncReport?, error: String?) {
        update(name) { entry in
            entry.runs += 1
            entry.lastEnded = Date()
            entry.state = "idle"
            entry.lastError = error
            if let report {
                entry.lastReport = report
                entry.lastOutcome = report.succeeded ? (report.stopped ? "stopped early" : "ok") : "failed"
                if report.succeeded { entry.lastSuccessStarted = entry.lastStarted }
                for (key, value) in [("read", report.read), ("created", report.created), ("updated", report.updated),
                                     ("written", report.written), ("deleted", report.deleted), ("rejected", report.failed),
                                     ("retries", report.retries)] {
                    entry.totals[key, default: 0] += value
                }
                if let t = report.twoWay {
                    for (key, value) in [("conflicts_a_won", t.aWon), ("conflicts_b_won", t.bWon), ("conflicts_manual", t.manual),
                                         ("conflicts_resolved", t.resolved), ("changed_during_run", t.changedMeanwhile)] {
                        entry.totals[key, default: 0] += value
                    }
                }
            } else {
                entry.lastOutcome = "error"
            }
            let failed = entry.lastOutcome != "ok" && entry.lastOutcome != "stopped early"
            if failed { entry.failures += 1 }
            // Under the lock, as the scrapes: a scrape sees all of this run's counts or none.
            metrics.add(job: name, report: report, failed: failed)
            let point = RunPoint(ended: entry.lastEnded!, records: report.map { max($0.written, $0.created + $0.updated) + $0.deleted } ?? 0,
                                 lag: JobStatus.lag(entry, now: entry.lastEnded!), succeeded: entry.lastOutcome == "ok" || entry.lastOutcome == "stopped early")
            entry.history = Array((entry.history + [point]).suffix(JobStatus.historyLength))
        }
        refreshProblems(name, deadLetterPath: report?.deadLetterPath)
    }

    /// Reads the newest dead letters (the end of the job's dead-letter file) and the unsettled
    /// conflicts (its state database) into the job's entry; outside the lock, once per run.
    func refreshProblems(_ name: String, deadLetterPath: String?) {
        guard let entry = snapshot.first(where: { $0.name == name }) else { return }
        let path = deadLetterPath ?? entry.deadLetterPath
        let letters = path.map { Self.lastLines(of: $0, count: Self.problemsShown).compactMap { try? JSON.parse($0) } } ?? []
        var conflicts = entry.conflicts
        if entry.twoWay, let statePath = entry.statePath, let store = try? StateStore(path: statePath) {
            conflicts = (try? store.conflicts(job: entry.id ?? name, limit: Self.problemsShown)) ?? conflicts
        }
        update(name) { entry in
            entry.deadLetterPath = path
            entry.deadLetters = letters.reversed()
            entry.conflicts = conflicts
        }
    }

    /// The last `count` lines of a file, reading at most its last 256 KiB (none when it is missing).
    static func lastLines(of path: String, count: Int) -> [String] {
        guard let handle = FileHandle(forReadingAtPath: path) else { return [] }
        defer { try? handle.close() }
        let size = (try? handle.seekToEnd()) ?? 0
        let start = size > 262_144 ? size - 262_144 : 0
        try? handle.seek(toOffset: start)
        let data = (try? handle.readToEnd()) ?? Data()
        var lines = String(decoding: data, as: UTF8.self).split(separator: "\n").map(String.init)
        if start > 0, !lines.isEmpty { lines.removeFirst() }  // cut in the middle
        return Array(lines.suffix(count))
    }

    /// Every job's entry as it is now.
    var snapshot: [Entry] { lock.withLock { entries } }

    /// The state a job is in now, for the sync-health model.
    func healthState(_ name: String) -> SyncHealthState {
        lock.withLock {
            guard let entry = entries.first(where: { $0.name == name }) else { return .stopped }
            let lastRun: SyncHealthState.LastRun? = switch entry.lastOutcome {
            case nil: nil
            case "ok"?: .succeeded
            case "stopped early"?: .stoppedEarly
            default: .failed
            }
            return SyncHealthState.observe(running: entry.state == "running", lastRun: lastRun, changePending: entry.changePendingSince != nil)
        }
    }

    /// Seconds the target may be behind: for a follow job, since the oldest change not yet
    /// being read (0 when caught up); for the others, since the start of the last successful run.
    static func lag(_ entry: Entry, now: Date) -> Double? {
        if entry.schedule == "follow" {
            guard entry.lastSuccessStarted != nil || entry.changePendingSince != nil else { return nil }
            return entry.changePendingSince.map { now.timeIntervalSince($0) } ?? 0
        }
        return entry.lastSuccessStarted.map { now.timeIntervalSince($0) }
    }

    var json: JSON {
        let now = Date()
        let list: [JSON] = lock.withLock { entries }.map { entry in
            var job: [String: JSON] = [
                "name": .string(entry.name), "schedule": .string(entry.schedule), "state": .string(entry.state),
                "runs": .int(Int64(entry.runs)), "failures": .int(Int64(entry.failures)),
                "lag_seconds": JobStatus.lag(entry, now: now).map { .double(($0 * 1000).rounded() / 1000) } ?? .null,
                "last_error": entry.lastError.map(JSON.string) ?? .null,
                "next_run": entry.nextRun.map { .string(StateStoreTime.format($0)) } ?? .null,
                "totals": .object(entry.totals.mapValues { .int(Int64($0)) }),
            ]
            switch entry.model {
            case .success(let model): job["health"] = model.json(intervalSeconds: modelInterval, ahead: Self.modelAhead)
            case .failure(let notEnough): job["health"] = ["error": .string(notEnough.description)]
            case nil: break
            }
            if let started = entry.lastStarted {
                var last: [String: JSON] = ["started": .string(StateStoreTime.format(started)), "outcome": entry.lastOutcome.map(JSON.string) ?? .null]
                if let ended = entry.lastEnded, ended >= started { last["ended"] = .string(StateStoreTime.format(ended)) }
                if let report = entry.lastReport, let ended = entry.lastEnded, ended >= started { last["report"] = report.json }
                job["last_run"] = .object(last)
            }
            return .object(job)
        }
        return ["started": .string(StateStoreTime.format(started)), "jobs": .array(list)]
    }

    /// The Prometheus text format: each run's counts added up since the service started, and the
    /// gauges as of now.
    var prometheus: String {
        lock.withLock { metrics.exposition(entries, now: Date(), modelInterval: modelInterval) }
    }
}
