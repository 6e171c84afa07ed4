import FerryCore
import FerrySync
import Foundation
import Prometheus

/// The jobs' figures for `GET /metrics`, in a Prometheus registry of their own (as the server's
/// `ServerMetrics`): counters to which each run adds its own counts when it ends, and gauges
/// (running, lag, the health model's figures) set from the jobs' entries when a scrape comes.
///
/// Not locked on its own: ``JobStatus`` calls it under its lock, so that a scrape sees all of a
/// run's counts or none of them.
struct JobMetrics: Sendable {
    /// A metric's name and help text (the registry wants the same help for every series of a name).
    struct Family: Sendable {
        let name: String
        let help: String
    }

    static let records = Family(name: "ferry_job_records_total", help: "Records handled by a job's runs, by what happened to them.")
    static let runs = Family(name: "ferry_job_runs_total", help: "Runs of a job.")
    static let conflicts = Family(name: "ferry_job_conflicts_total",
                                  help: "Records a two-way job found changed on both sides, by outcome (a_won, b_won, manual; resolved: manual decisions applied).")
    static let failures = Family(name: "ferry_job_failures_total", help: "Runs of a job that failed or rejected records.")
    static let retries = Family(name: "ferry_job_retries_total", help: "Requests a job's runs tried again.")
    static let running = Family(name: "ferry_job_running", help: "1 while a run of the job is going on.")
    static let lag = Family(name: "ferry_job_lag_seconds", help: "How far behind its source a job's target may be.")
    static let inSyncShare = Family(name: "ferry_job_health_in_sync_share", help: "The sync-health model's long-run share of intervals a job is in sync.")
    static let recovery = Family(name: "ferry_job_health_recovery_seconds",
                                 help: "The sync-health model's mean time from failing to in sync (absent: never failed or never recovered).")
    static let inSyncAhead = Family(name: "ferry_job_health_in_sync_ahead",
                                    help: "The sync-health model's probability that a job is in sync \(JobStatus.modelAhead) intervals from now.")

    /// The `kind` label of `ferry_job_records_total`.
    static let recordKinds = ["read", "created", "updated", "written", "deleted", "rejected"]
    /// The `outcome` label of `ferry_job_conflicts_total`.
    static let conflictOutcomes = ["a_won", "b_won", "manual", "resolved"]

    let registry = PrometheusCollectorRegistry()

    /// Every job's counters at 0 and its `running` gauge, so that a scrape before the first run
    /// shows the jobs.
    init(jobs: [String]) {
        for job in jobs {
            for kind in Self.recordKinds { _ = counter(Self.records, job, [("kind", kind)]) }
            for family in [Self.runs, Self.failures, Self.retries] { _ = counter(family, job) }
            gauge(Self.running, job).set(to: 0)
        }
    }

    /// Adds one run's counts: its report's (nil when the run ended in an error), and the run
    /// itself, as a failure when `failed`.
    func add(job: String, report: SyncReport?, failed: Bool) {
        counter(Self.runs, job).increment()
        if failed { counter(Self.failures, job).increment() }
        guard let report else { return }
        let counts = [report.read, report.created, report.updated, report.written, report.deleted, report.failed]
        for (kind, count) in zip(Self.recordKinds, counts) { counter(Self.records, job, [("kind", kind)]).increment(by: Int64(count)) }
        counter(Self.retries, job).increment(by: Int64(report.retries))
        if let t = report.twoWay {
            for (outcome, count) in zip(Self.conflictOutcomes, [t.aWon, t.bWon, t.manual, t.resolved]) {
                counter(Self.conflicts, job, [("outcome", outcome)]).increment(by: Int64(count))
            }
        }
    }

    /// The Prometheus text, with the gauges set from the jobs' entries as of `now`.
    func exposition(_ entries: [JobStatus.Entry], now: Date, modelInterval: Double) -> String {
        for entry in entries {
            gauge(Self.running, entry.name).set(to: entry.state == "running" ? 1 : 0)
            // The lag is there from a job's first successful run (follow jobs: or first change seen) on.
            if let lag = JobStatus.lag(entry, now: now) { gauge(Self.lag, entry.name).set(to: (lag * 1000).rounded() / 1000) }
            // So is the model, from the first interval with enough data.
            guard let model = try? entry.model?.get() else { continue }
            gauge(Self.inSyncShare, entry.name).set(to: SyncHealthModel.rounded(model.share(.inSync)))
            let recovery = gauge(Self.recovery, entry.name)
            if case .intervals(let m) = model.meanTimeToRecovery {
                recovery.set(to: SyncHealthModel.rounded(m * modelInterval))
            } else {
                registry.unregisterGauge(recovery)
            }
            gauge(Self.inSyncAhead, entry.name, [("intervals", String(JobStatus.modelAhead))])
                .set(to: SyncHealthModel.rounded(model.inSyncProbability(ahead: JobStatus.modelAhead)))
        }
        return registry.emitToString()
    }

    private func counter(_ family: Family, _ job: String, _ labels: [(String, String)] = []) -> Counter {
        registry.makeCounter(name: family.name, labels: [("job", job)] + labels, help: family.help)
    }

    private func gauge(_ family: Family, _ job: String, _ labels: [(String, String)] = []) -> Gauge {
        registry.makeGauge(name: family.name, labels: [("job", job)] + labels, help: family.help)
    }
}
