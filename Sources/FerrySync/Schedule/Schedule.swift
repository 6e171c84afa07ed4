public import Foundation
import FerryCore

/// When a job runs again: every fixed interval, or at the times of a cron expression.
///
/// Pure: it computes times, the caller sleeps. Runs never overlap: the next start is
/// always after the previous run ended, and ticks that fell during a run are skipped.
public enum Schedule: Sendable, Equatable, CustomStringConvertible {
    case every(seconds: Double)
    case cron(CronExpression)

    /// `30s`, `5m`, `2h`, `1d` or plain seconds; at least 1 s.
    public init(every text: String) throws(SyncError) {
        guard let seconds = DurationText.seconds(text), seconds >= 1, seconds <= 366 * 86_400 else {
            throw .badInput("every: \"\(text)\" is not an interval of 1 s to 366 d, like 30s, 5m, 2h or 1d")
        }
        self = .every(seconds: seconds)
    }

    /// When to start the next run, after one that started at `started` and ended at `ended`.
    /// - `every`: the first tick of `started + k × interval` after `ended` (a fixed rate; ticks
    ///   missed while a long run went on are skipped, not piled up).
    /// - `cron`: the first matching minute after `ended`.
    public func nextStart(started: Date, ended: Date) -> Date {
        switch self {
        case .every(let seconds):
            let elapsed = ended.timeIntervalSince(started)
            let ticks = max(1, (elapsed / seconds).rounded(.down) + 1)
            return started.addingTimeInterval(ticks * seconds)
        case .cron(let expression):
            return expression.next(after: ended) ?? .distantFuture
        }
    }

    /// The first start, from `now`: at once for `every`, at the next matching minute for `cron`.
    public func firstStart(now: Date) -> Date {
        switch self {
        case .every: now
        case .cron(let expression): expression.next(after: now) ?? .distantFuture
        }
    }

    public var description: String {
        switch self {
        case .every(let seconds): "every \(seconds.rounded() == seconds ? String(Int(seconds)) : String(seconds)) s"
        case .cron(let expression): "cron \"\(expression.text)\""
        }
    }
}

/// A five-field cron expression: minute hour day-of-month month day-of-week, each `*`, a
/// number, a range `a-b`, a step `*/n` or `a-b/n`, or a list of those; months and weekdays
/// also by name (`JAN`, `MON`), Sunday as 0 or 7. As in cron, when both day fields are
/// restricted a day matching either one matches.
public struct CronExpression: Sendable, Equatable {
    public let text: String
    let minutes: Set<Int>, hours: Set<Int>, days: Set<Int>, months: Set<Int>, weekdays: Set<Int>
    let anyDay: Bool, anyWeekday: Bool
    let timeZone: TimeZone

    public init(_ text: String, timeZone: TimeZone = .current) throws(SyncError) {
        let fields = text.split(separator: " ", omittingEmptySubsequences: true).map(String.init)
        guard fields.count == 5 else {
            throw .badInput("cron: \"\(text)\" must have 5 fields: minute hour day-of-month month day-of-week, like \"*/5 * * * *\"")
        }
        let monthNames = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
        let dayNames = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"]
        self.text = text
        minutes = try Self.field(fields[0], "minute", 0...59, names: [], base: 0)
        hours = try Self.field(fields[1], "hour", 0...23, names: [], base: 0)
        days = try Self.field(fields[2], "day of month", 1...31, names: [], base: 1)
        months = try Self.field(fields[3], "month", 1...12, names: monthNames, base: 1)
        weekdays = Set(try Self.field(fields[4], "day of week", 0...7, names: dayNames, base: 0).map { $0 % 7 })
        anyDay = fields[2] == "*"
        anyWeekday = fields[4] == "*"
        self.timeZone = timeZone
    }

    static func field(_ text: String, _ name: String, _ range: ClosedRange<Int>, names: [String], base: Int) throws(SyncError) -> Set<Int> {
        func number(_ s: Substring) -> Int? {
            if let n = Int(s) { return n }
            return names.firstIndex(of: s.lowercased()).map { $0 + base }
        }
        var out: Set<Int> = []
        for part in text.split(separator: ",", omittingEmptySubsequences: false) {
            let pieces = part.split(separator: "/", omittingEmptySubsequences: false)
            guard pieces.count <= 2 else { throw .badInput("cron: \(name) \"\(text)\" has more than one /") }
            var step = 1
            if pieces.count == 2 {
                guard let s = Int(pieces[1]), s >= 1, s <= range.upperBound + 1 else { throw .badInput("cron: \(name) step in \"\(text)\" must be a number from 1") }
                step = s
            }
            let span = pieces[0]
            var low = range.lowerBound, high = range.upperBound
            if span != "*" {
                let ends = span.split(separator: "-", omittingEmptySubsequences: false)
                guard ends.count <= 2, let a = number(ends[0]), let b = ends.count == 2 ? number(ends[1]) : (pieces.count == 2 ? range.upperBound : number(ends[0])) else {
                    throw .badInput("cron: \(name) \"\(text)\" is not a number, range or step")
                }
                low = a
                high = b
            }
            guard range.contains(low), range.contains(high), low <= high else {
                throw .badInput("cron: \(name) \"\(text)\" is outside \(range.lowerBound)-\(range.upperBound)")
            }
            out.formUnion(stride(from: low, through: high, by: step))
        }
        return out
    }

    /// The first matching minute strictly after `date`, within the next 5 years (nil for a
    /// date that never comes, like 30 February).
    public func next(after date: Date) -> Date? {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = timeZone
        guard var day = calendar.date(from: calendar.dateComponents([.year, .month, .day], from: date)) else { return nil }
        for _ in 0..<(366 * 5) {
            let c = calendar.dateComponents([.month, .day, .weekday], from: day)
            let dayMatches: Bool
            let byDay = days.contains(c.day!), byWeekday = weekdays.contains(c.weekday! - 1)
            if anyDay || anyWeekday { dayMatches = byDay && byWeekday } else { dayMatches = byDay || byWeekday }
            if months.contains(c.month!) && dayMatches {
                for hour in hours.sorted() {
                    for minute in minutes.sorted() {
                        guard let candidate = calendar.date(bySettingHour: hour, minute: minute, second: 0, of: day) else { continue }
                        if candidate > date { return candidate }
                    }
                }
            }
            guard let following = calendar.date(byAdding: .day, value: 1, to: day) else { return nil }
            day = following
        }
        return nil
    }
}
