import FerryCore
public import FerrySync
import Foundation

/// The jobs of `ferry run` (or one `ferry sync --every/--cron`) as one long-lived service.
///
/// Each job has a task of its own, so a job's runs never overlap while different jobs run side
/// by side: scheduled jobs at their ticks (ticks missed during a long run are skipped), follow
/// jobs as their source changes, webhook jobs when a delivery arrives (deliveries during a run
/// cause one more run, not one each). A failed run is reported and the job runs again at its
/// next trigger. ``stop()`` (SIGTERM, SIGINT) ends waits at once and running runs after their
/// current batch, with the checkpoint saved.
public final class JobService: @unchecked Sendable {
    let jobs: [(job: SyncJob, trigger: JobTrigger)]
    /// What the runs show: the command's printing.
    let output: JobOutput
    /// Stop a scheduled or webhook job after this many runs.
    let maxRuns: Int?
    /// Every this many seconds, each scheduled, follow and webhook job's health state is recorded
    /// in its state database (the sync-health model's intervals).
    let modelInterval: Double
    public let status: JobStatus
    /// Closed by ``stop()``; engines check it between batches.
    let stopping = WakeSignal()
    /// One wake-up per job (a tick, a delivery, a stop).
    private let wakes: [String: WakeSignal]
    private var followers: [Follower] = []
    private let lock = NSLock()

    public init(jobs: [(job: SyncJob, trigger: JobTrigger)], output: JobOutput = .silent, maxRuns: Int?, modelInterval: Double = 60) {
        self.jobs = jobs
        self.output = output
        self.maxRuns = maxRuns
        self.modelInterval = modelInterval
        status = JobStatus(jobs: jobs.map { .init(name: $0.job.name ?? $0.job.id, schedule: $0.trigger.description, id: $0.job.id,
                                                  statePath: $0.job.statePath, twoWay: $0.job.mode == .twoWay) }, modelInterval: modelInterval)
        wakes = Dictionary(jobs.map { ($0.job.name ?? $0.job.id, WakeSignal()) }) { first, _ in first }
    }

    /// Ends every wait now and every run after its current batch.
    public func stop() {
        stopping.close()
        for wake in wakes.values { wake.close() }
        for follower in lock.withLock({ followers }) { follower.stop() }
    }

    /// A webhook delivery came: wakes the webhook jobs that read the delivery's collection
    /// (jobs whose source is not a server collection take every delivery).
    public func delivered(bucket: String?, collection: String?) {
        for (job, trigger) in jobs where trigger == .webhook {
            if let bucket, let collection, job.source.contains("/buckets/"),
               !job.source.hasSuffix("/buckets/\(bucket)/collections/\(collection)") { continue }
            wakes[job.name ?? job.id]?.raise()
        }
    }

    /// Runs the `once` jobs one after the other, in file order, then the others side by side
    /// until ``stop()`` (or, with `maxRuns`, until the scheduled and webhook jobs ran that often).
    /// - Returns: whether any run failed or rejected records.
    public func run() async -> Bool {
        var failed = false
        for (job, trigger) in jobs where trigger == .once {
            if stopping.isClosed { break }
            failed = await !runReported(job, name: job.name ?? job.id, after: nil) || failed
        }
        let jobsEnded = WakeSignal()
        let sampler = Task { await self.sampleHealth(until: jobsEnded) }
        failed = await withTaskGroup(of: Bool.self) { group in
            for (job, trigger) in jobs where trigger != .once {
                group.addTask { await self.drive(job, trigger) }
            }
            for await jobFailed in group { failed = failed || jobFailed }
            return failed
        }
        jobsEnded.close()
        await sampler.value
        return failed
    }

    /// Records the health state of each job that is not `once` at the end of every interval,
    /// and `stopped` when the service ends; after each, the model estimated from the whole
    /// history goes into the status. A state database that cannot be written is noted once.
    private func sampleHealth(until jobsEnded: WakeSignal) async {
        let sampled = jobs.filter { $0.trigger != .once }.map { (name: $0.job.name ?? $0.job.id, path: $0.job.statePath) }
        guard !sampled.isEmpty else { return }
        var stores: [String: StateStore] = [:]
        var noted = Set<String>()
        func record(ended: Bool) {
            for (name, path) in sampled {
                do {
                    if stores[path] == nil { stores[path] = try StateStore(path: path) }
                    let store = stores[path]!
                    let state = ended ? .stopped : status.healthState(name)
                    try store.recordState(job: name, state: state, intervalSeconds: modelInterval)
                    let (history, _) = try store.stateHistory(job: name)
                    let model = Result { () throws(SyncHealthModel.NotEnoughData) in try SyncHealthModel(history: history) }
                    let now = Date()
                    status.update(name) { entry in
                        entry.model = model
                        if !ended {
                            entry.lagOverTime = Array((entry.lagOverTime + [JobStatus.lag(entry, now: now) ?? 0]).suffix(JobStatus.historyLength))
                            // As a run's point counts them (RunPoint.records), over all runs so far.
                            let moved = max(entry.totals["written"] ?? 0, (entry.totals["created"] ?? 0) + (entry.totals["updated"] ?? 0)) + (entry.totals["deleted"] ?? 0)
                            entry.recordsOverTime = Array((entry.recordsOverTime + [Double(moved - entry.recordsSampled)]).suffix(JobStatus.historyLength))
                            entry.recordsSampled = moved
                        }
                    }
                } catch {
                    if noted.insert(path).inserted {
                        FileHandle.standardError.write(Data("ferry: note: cannot record the health of \(name) in \(path): \((error as? SyncError)?.message ?? "\(error)")\n".utf8))
                    }
                }
            }
        }
        while !stopping.isClosed && !jobsEnded.isClosed {
            _ = await jobsEnded.wait(timeout: .milliseconds(Int64(modelInterval * 1000)))
            if stopping.isClosed || jobsEnded.isClosed { break }
            record(ended: false)
        }
        record(ended: true)
    }

    private func drive(_ job: SyncJob, _ trigger: JobTrigger) async -> Bool {
        let name = job.name ?? job.id
        let wake = wakes[name]!
        switch trigger {
        case .once:
            return await runReported(job, name: name, after: nil)
        case .follow(let pollInterval):
            return await follow(job, name: name, pollInterval: pollInterval)
        case .schedule(let schedule):
            var failed = false
            var runs = 0
            var next = schedule.firstStart(now: Date())
            while !stopping.isClosed {
                status.update(name) { $0.nextRun = next; $0.state = "waiting" }
                let wait = next.timeIntervalSinceNow
                if wait > 0 { _ = await wake.wait(timeout: .milliseconds(Int64(wait * 1000))) }
                if stopping.isClosed { break }
                let started = Date()
                failed = await runReported(job, name: name, after: nil) == false || failed
                runs += 1
                if let maxRuns, runs >= maxRuns { break }
                next = schedule.nextStart(started: started, ended: Date())
                FileHandle.standardError.write(Data("ferry: next run of \(name) at \(StateStoreTime.format(next)) (\(schedule))\n".utf8))
            }
            status.update(name) { $0.state = "stopped"; $0.nextRun = nil }
            return failed
        case .webhook:
            var failed = false
            var runs = 0
            while !stopping.isClosed {
                status.update(name) { $0.state = "waiting for a delivery" }
                guard await wake.wait(timeout: .seconds(3600)) else { continue }
                if stopping.isClosed { break }
                failed = await runReported(job, name: name, after: "webhook delivery") == false || failed
                runs += 1
                if let maxRuns, runs >= maxRuns { break }
            }
            status.update(name) { $0.state = "stopped" }
            return failed
        }
    }

    /// One run, its report printed and its outcome in the status; a failure is reported, not thrown.
    /// - Returns: whether it succeeded.
    func runReported(_ job: SyncJob, name: String, after: String?) async -> Bool {
        output.runStarting(name, after)
        status.started(name)
        do {
            let report = try await output.run(job, stopping)
            status.finished(name, report: report, error: nil)
            return report.succeeded
        } catch {
            let message = (error as? SyncError)?.message ?? "\(error)"
            FileHandle.standardError.write(Data("ferry: error: \(name): \(message)\n".utf8))
            status.finished(name, report: nil, error: message)
            return false
        }
    }

    private func follow(_ job: SyncJob, name: String, pollInterval: Double) async -> Bool {
        let follower = Follower(job: job, pollInterval: pollInterval)
        let closed = lock.withLock {
            followers.append(follower)
            return stopping.isClosed
        }
        if closed { return false }
        let rejected = LockedFlag()
        let status = self.status
        let output = self.output
        follower.onNotice = { FileHandle.standardError.write(Data("ferry: \(name): \($0)\n".utf8)) }
        follower.onRunStarted = { status.started(name) }
        follower.onError = { error in
            let message = (error as? SyncError)?.message ?? "\(error)"
            FileHandle.standardError.write(Data("ferry: error: \(name): \(message) (retrying)\n".utf8))
            status.finished(name, report: nil, error: message)
        }
        follower.onReport = { report in
            status.finished(name, report: report, error: nil)
            if report.failed > 0 { rejected.set() }
            output.followReport(report)
        }
        follower.onChange = { status.changeSeen(name) }
        let engine = SyncEngine()
        engine.onNotice = { FileHandle.standardError.write(Data("ferry: note: \($0)\n".utf8)) }
        await follower.run(engine: engine)
        status.update(name) { $0.state = "stopped" }
        return rejected.isSet
    }
}
