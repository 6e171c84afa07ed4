import ArgumentParser
import FerryCore
import FerrySync
import Foundation

/// `ferry verify SOURCE TARGET`: are both sides equal?
struct VerifyCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "verify",
        abstract: "Compare a source and a target: counts, digests of canonical records, and the keys that differ.",
        discussion: "Exit status: 0 when both sides hold the same records, 1 when they differ, 2 on an error."
    )

    @Argument(help: "One side: an endpoint URL, as for ferry sync.") var source: String
    @Argument(help: "The other side.") var target: String
    @Option(name: .long, help: ArgumentHelp("Most differing keys to list per kind.", valueName: "N")) var limit: Int = 20
    @Flag(name: .long, help: "Print a JSON report on stdout.") var json = false
    @OptionGroup var records: RecordOptions

    func validate() throws {
        guard limit >= 0 && limit <= 1_000_000 else { throw ValidationError("--limit must be between 0 and 1000000") }
        _ = try spec()
    }

    /// Both sides and how records are read, checked as ``JobSpec/validate(_:)`` checks a sync's.
    func spec() throws -> JobSpec {
        var spec = JobSpec(source: source, target: target)
        try records.apply(to: &spec, environment: ProcessInfo.processInfo.environment)
        return try RecordOptions.validated(spec)
    }

    func run() async throws {
        let result: Verification
        do {
            var job = try spec().job
            job.verifyLimit = limit
            result = try await SyncEngine().verify(job)
        } catch {
            throw CommandLine.fail(error)
        }
        if json {
            CommandLine.printJSON(result.json)
        } else {
            let rows = Self.rows(result)
            let width = rows.map(\.0.count).max() ?? 0
            print(rows.map { $0.0.padding(toLength: width, withPad: " ", startingAt: 0) + "  " + $0.1 }.joined(separator: "\n"))
        }
        if !result.equal { throw ExitCode(1) }
    }

    static func rows(_ v: Verification) -> [(String, String)] {
        var rows: [(String, String)] = [
            ("verify", v.equal ? "equal" : "DIFFERENT"),
            ("source", "\(ProgressLine.grouped(v.sourceCount)) records, digest \(v.sourceDigest)"),
            ("target", "\(ProgressLine.grouped(v.targetCount)) records, digest \(v.targetDigest)"),
        ]
        if !v.equal {
            rows.append(("differing", ProgressLine.grouped(v.differingCount)))
            if !v.missingInTarget.isEmpty { rows.append(("missing in target", v.missingInTarget.joined(separator: ", "))) }
            if !v.extraInTarget.isEmpty { rows.append(("only in target", v.extraInTarget.joined(separator: ", "))) }
            if !v.different.isEmpty { rows.append(("different", v.different.joined(separator: ", "))) }
        }
        return rows
    }
}
