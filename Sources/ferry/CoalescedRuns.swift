import FerrySync
import Foundation

/// Runs a listener's jobs when deliveries come: one pass over the jobs at a time, so runs of a
/// job never overlap, and however many deliveries come during a pass, exactly one more pass
/// follows it (bursts coalesce; the next pass reads whatever changed in the meantime).
///
/// Each pass runs the jobs one after the other. A run that fails is reported on stderr
/// (`ferry: error: JOB: message`) and the next delivery runs the job again.
final class CoalescedRuns: Sendable {
    let jobs: [SyncJob]
    let json: Bool
    /// Stop after this many passes (every job ran this many times); nil runs until cancelled.
    let maxRuns: Int?
    /// The pending trigger: at most one waits, carrying the newest delivery id.
    private let triggers: AsyncStream<String>
    private let continuation: AsyncStream<String>.Continuation

    init(jobs: [SyncJob], json: Bool, maxRuns: Int?) {
        self.jobs = jobs
        self.json = json
        self.maxRuns = maxRuns
        (triggers, continuation) = AsyncStream.makeStream(of: String.self, bufferingPolicy: .bufferingNewest(1))
    }

    /// Asks for a pass after `delivery`: at once when idle, else after the pass under way.
    func trigger(_ delivery: String) {
        continuation.yield(delivery)
    }

    /// Runs a pass per trigger until cancelled, or until `maxRuns` passes. Call it once.
    /// - Returns: whether any run failed or rejected records.
    func loop() async -> Bool {
        var failed = false
        var passes = 0
        for await delivery in triggers {
            for job in jobs {
                let succeeded = await Sync.executeReported(job, json: json, after: "delivery \(delivery)")
                failed = failed || !succeeded
            }
            fflush(nil)  // a listener's stdout is often a pipe: show each pass's reports now
            passes += 1
            if let maxRuns, passes >= maxRuns { break }
        }
        continuation.finish()
        return failed
    }
}
