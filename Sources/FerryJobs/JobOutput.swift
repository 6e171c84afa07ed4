public import FerryCore
public import FerrySync
import Foundation

/// What a ``JobService`` shows of its runs. The printing is the command's (`ferry run`,
/// `ferry listen`, `ferry sync --every`): the service only says when.
public struct JobOutput: Sendable {
    /// Runs one run of a job (a scheduled, webhook or once job), showing what the command shows
    /// of it (progress, report); the run ends after its current batch once `stop` is closed.
    public var run: @Sendable (_ job: SyncJob, _ stop: WakeSignal) async throws -> SyncReport
    /// Called before each such run, with the job's name and what set it off (nil: its schedule).
    public var runStarting: @Sendable (_ name: String, _ after: String?) -> Void
    /// Called with the report of each run of a follow job.
    public var followReport: @Sendable (_ report: SyncReport) -> Void

    public init(run: @escaping @Sendable (_ job: SyncJob, _ stop: WakeSignal) async throws -> SyncReport,
                runStarting: @escaping @Sendable (_ name: String, _ after: String?) -> Void = { _, _ in },
                followReport: @escaping @Sendable (_ report: SyncReport) -> Void = { _ in }) {
        self.run = run
        self.runStarting = runStarting
        self.followReport = followReport
    }

    /// Runs each job with a plain engine and shows nothing (the engine's notes go to stderr).
    public static let silent = JobOutput(run: { job, stop in
        let engine = SyncEngine()
        engine.stop = stop
        engine.onNotice = { FileHandle.standardError.write(Data("ferry: note: \($0)\n".utf8)) }
        return try await engine.run(job)
    })
}

/// A flag set from callbacks.
package final class LockedFlag: @unchecked Sendable {
    private let lock = NSLock()
    private var value = false
    package init() {}
    package func set() { lock.withLock { value = true } }
    package var isSet: Bool { lock.withLock { value } }
}
