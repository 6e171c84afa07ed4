import FerryCore
@testable import FerrySync
import FerryTestSupport
import Foundation
import Testing

/// Schedules are pure: tested with made-up times, no sleeping.
@Suite struct ScheduleTests {
    static let utc = TimeZone(identifier: "UTC")!

    static func date(_ text: String) -> Date {
        let formatter = ISO8601DateFormatter()
        return formatter.date(from: text)!
    }

    @Test func everyKeepsAFixedRateAndSkipsTicksMissedDuringALongRun() throws {
        let schedule = try Schedule(every: "30s")
        let start = Self.date("2026-01-01T00:00:00Z")
        #expect(schedule.firstStart(now: start) == start)
        // A 5 s run: the next tick 30 s after the start.
        #expect(schedule.nextStart(started: start, ended: start + 5) == start + 30)
        // A 70 s run (past two ticks): the next tick after it ended, not three piled-up runs.
        #expect(schedule.nextStart(started: start, ended: start + 70) == start + 90)
        // Ending exactly on a tick: the one after (runs never overlap).
        #expect(schedule.nextStart(started: start, ended: start + 30) == start + 60)
        #expect(try Schedule(every: "5m") == .every(seconds: 300))
        #expect(try Schedule(every: "2h") == .every(seconds: 7200))
        #expect(try Schedule(every: "1d") == .every(seconds: 86_400))
        #expect(try Schedule(every: "45") == .every(seconds: 45))
        for bad in ["", "0s", "500ms", "-5m", "fast", "400d", "1 week"] {
            #expect(throws: SyncError.self, "\(bad)") { try Schedule(every: bad) }
        }
    }

    @Test func cronFindsTheNextMatchingMinute() throws {
        func next(_ expression: String, after: String) throws -> Date? {
            try CronExpression(expression, timeZone: Self.utc).next(after: Self.date(after))
        }
        #expect(try next("*/5 * * * *", after: "2026-01-01T10:02:30Z") == Self.date("2026-01-01T10:05:00Z"))
        #expect(try next("*/5 * * * *", after: "2026-01-01T10:05:00Z") == Self.date("2026-01-01T10:10:00Z"))
        #expect(try next("0 3 * * *", after: "2026-01-01T03:00:00Z") == Self.date("2026-01-02T03:00:00Z"))
        // Weekdays by name; 2026-01-03 is a Saturday.
        #expect(try next("30 9 * * MON-FRI", after: "2026-01-03T00:00:00Z") == Self.date("2026-01-05T09:30:00Z"))
        // Sunday as 7 and as 0.
        #expect(try next("0 0 * * 7", after: "2026-01-01T00:00:00Z") == Self.date("2026-01-04T00:00:00Z"))
        #expect(try next("0 0 * * 0", after: "2026-01-01T00:00:00Z") == Self.date("2026-01-04T00:00:00Z"))
        // Both day fields restricted: either matches (the 13th, or a Friday).
        #expect(try next("0 12 13 * FRI", after: "2026-01-01T00:00:00Z") == Self.date("2026-01-02T12:00:00Z"))
        // Lists, ranges with steps, months by name, end of month.
        #expect(try next("15,45 8-18/5 * * *", after: "2026-01-01T08:50:00Z") == Self.date("2026-01-01T13:15:00Z"))
        #expect(try next("0 0 29 FEB *", after: "2026-03-01T00:00:00Z") == Self.date("2028-02-29T00:00:00Z"))
        #expect(try next("0 0 31 * *", after: "2026-04-01T00:00:00Z") == Self.date("2026-05-31T00:00:00Z"))
        // 30 February never comes.
        #expect(try next("0 0 30 2 *", after: "2026-01-01T00:00:00Z") == nil)
        let cron = Schedule.cron(try CronExpression("0 * * * *", timeZone: Self.utc))
        // A run that overran the next hour waits for the hour after it ended.
        #expect(cron.nextStart(started: Self.date("2026-01-01T10:00:00Z"), ended: Self.date("2026-01-01T11:20:00Z")) == Self.date("2026-01-01T12:00:00Z"))
    }

    @Test func badCronExpressionsSayWhatIsWrong() {
        let cases: [(String, String)] = [
            ("* * * *", "must have 5 fields"),
            ("60 * * * *", "minute \"60\" is outside 0-59"),
            ("* 24 * * *", "hour"),
            ("* * 0 * *", "day of month"),
            ("* * * 13 *", "month"),
            ("* * * * 8", "day of week"),
            ("*/0 * * * *", "step"),
            ("5-1 * * * *", "outside"),
            ("a * * * *", "not a number"),
            ("* * * FOO *", "not a number"),
            ("1/2/3 * * * *", "more than one /"),
        ]
        for (expression, message) in cases {
            do {
                _ = try CronExpression(expression)
                Issue.record("\(expression) was accepted")
            } catch {
                #expect(error.message.contains(message), "\(expression): \(error.message)")
            }
        }
    }
}

/// `--every`/`--cron` and `schedule:` through the command line.
@Suite struct ScheduledCommandTests {
    @Test func everyRunsAgainUntilMaxRunsAndPicksUpNewRecords() async throws {
        let dir = try TempDir()
        try writeUsersTable(dir.file("src.db"), count: 30)
        let result = try await Ferry.run(["sync", "sqlite:src.db#users", "sqlite:dst.db#users", "--mode", "incremental",
                                    "--cursor-field", "updated_at", "--every", "1s", "--max-runs", "2", "--json"], in: dir.path)
        #expect(result.status == 0, "\(result.stderr)")
        let reports = result.stdout.split(separator: "\n").compactMap { try? JSON.parse(String($0)) }
        #expect(reports.count == 2 && reports[0]["read"] == 30 && reports[1]["read"] == 0, "\(result.stdout)")
        #expect(result.stderr.contains("next run of"), "\(result.stderr)")
        let status = try await Ferry.run(["status", "--json"], in: dir.path)
        #expect((try? JSON.parse(status.stdout))?.arrayValue?.count == 2)
    }

    @Test func badScheduleFlagsAndJobSchedulesAreRefused() async throws {
        let dir = try TempDir()
        try writeUsersTable(dir.file("src.db"), count: 3)
        for (flags, message) in [
            (["--every", "0s"], "every: \"0s\" is not an interval"),
            (["--cron", "* * *"], "cron: \"* * *\" must have 5 fields"),
            (["--every", "1m", "--cron", "* * * * *"], "--every and --cron cannot go together"),
            (["--max-runs", "2"], "--max-runs goes with --every or --cron"),
        ] {
            let result = try await Ferry.run(["sync", "sqlite:src.db#users", "sqlite:dst.db#users"] + flags, in: dir.path)
            #expect(result.status != 0 && result.stderr.contains(message), "\(flags): \(result.stderr)")
            #expect(!FileManager.default.fileExists(atPath: dir.file("dst.db")))
        }
        try "jobs:\n  a:\n    source: sqlite:src.db#users\n    target: sqlite:dst.db#users\n    schedule: every never\n".write(toFile: dir.file("j.yml"), atomically: true, encoding: .utf8)
        var result = try await Ferry.run(["run", "j.yml"], in: dir.path)
        #expect(result.status == 2 && result.stderr.contains("j.yml: job a: every: \"never\""), "\(result.stderr)")
        try "jobs:\n  a:\n    source: sqlite:src.db#users\n    target: sqlite:dst.db#users\n    schedule: sometimes\n".write(toFile: dir.file("j.yml"), atomically: true, encoding: .utf8)
        result = try await Ferry.run(["run", "j.yml"], in: dir.path)
        #expect(result.status == 2 && result.stderr.contains("j.yml: job a: schedule \"sometimes\" must be once, every"), "\(result.stderr)")
        #expect(!FileManager.default.fileExists(atPath: dir.file("dst.db")))
        // A scheduled job in a file runs under the loop too.
        try "jobs:\n  a:\n    source: sqlite:src.db#users\n    target: sqlite:dst.db#users\n    schedule: every 1s\n".write(toFile: dir.file("j.yml"), atomically: true, encoding: .utf8)
        result = try await Ferry.run(["run", "j.yml", "--max-runs", "1"], in: dir.path)
        let rows = try countRows(dir.file("dst.db"))
        #expect(result.status == 0 && rows == 3, "\(result.stderr)")
    }
}
