import FerryCore
import FerrySync
import Foundation

extension Sync {
    /// Runs a job as a long-lived process does: `== JOB at TIME` first (unless `json`), and
    /// a failure reported on stderr (`ferry: error: JOB: message`) rather than thrown.
    /// - Parameter after: what set the run off, said after the time.
    /// - Returns: whether the run succeeded (no error, no rejected record, no difference found).
    static func executeReported(_ job: SyncJob, json: Bool, after: String? = nil) async -> Bool {
        let name = job.name ?? job.id
        if !json { print("== \(name) at \(StateStoreTime.format(Date()))" + (after.map { " (\($0))" } ?? "")) }
        do {
            return try await execute(job, json: json).succeeded
        } catch {
            let message = (error as? SyncError)?.message ?? "\(error)"
            FileHandle.standardError.write(Data("ferry: error: \(name): \(message)\n".utf8))
            return false
        }
    }
}
