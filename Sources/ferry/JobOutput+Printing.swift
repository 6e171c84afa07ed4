import FerryJobs
import FerrySync
import Foundation

extension JobOutput {
    /// What `ferry run`, `ferry listen` and `ferry sync --every/--cron` print: a heading and
    /// `ferry sync`'s progress and report for each run (a JSON report per run with `--json`),
    /// and a line per follow run that moved something.
    static func printing(json: Bool) -> JobOutput {
        JobOutput(
            run: { job, stop in
                let report = try await Sync.execute(job, json: json, stop: stop)
                fflush(nil)  // stdout is often a pipe: show each run now
                return report
            },
            runStarting: { name, after in
                guard !json else { return }
                print("== \(name) at \(StateStoreTime.format(Date()))" + (after.map { " (\($0))" } ?? ""))
                fflush(nil)  // a run that takes long is seen to have started
            },
            followReport: { FollowLine.write($0, json: json) }
        )
    }
}
