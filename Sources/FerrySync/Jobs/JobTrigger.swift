import Foundation

/// What starts a job's runs in `ferry run` (its `schedule:`).
public enum JobTrigger: Sendable, Equatable, CustomStringConvertible {
    case once
    case schedule(Schedule)
    /// `--follow`: the source's event stream, long-poll or polling every `pollInterval` seconds.
    case follow(pollInterval: Double)
    /// Each delivery of a Ferry server's webhook to the service's listener.
    case webhook

    public var description: String {
        switch self {
        case .once: "once"
        case .schedule(let schedule): schedule.description
        case .follow: "follow"
        case .webhook: "webhook"
        }
    }

    /// A schedule from its text in a jobs file: `once`, `every 30s`, `cron */5 * * * *`,
    /// `follow` (optionally `follow 10s`: the polling interval for sources without a stream), `webhook`.
    public static func parse(_ text: String) throws(SyncError) -> JobTrigger {
        let trimmed = text.trimmingCharacters(in: .whitespaces)
        if trimmed == "once" { return .once }
        if trimmed == "webhook" { return .webhook }
        if trimmed == "follow" { return .follow(pollInterval: 5) }
        if trimmed.hasPrefix("follow ") {
            guard case .every(let seconds) = try Schedule(every: String(trimmed.dropFirst(7))) else { return .follow(pollInterval: 5) }
            return .follow(pollInterval: seconds)
        }
        if trimmed.hasPrefix("every ") { return .schedule(try Schedule(every: String(trimmed.dropFirst(6)))) }
        if trimmed.hasPrefix("cron ") {
            var expression = String(trimmed.dropFirst(5)).trimmingCharacters(in: .whitespaces)
            if expression.count >= 2, expression.first == "\"" || expression.first == "'", expression.last == expression.first {
                expression = String(expression.dropFirst().dropLast())
            }
            return .schedule(.cron(try CronExpression(expression)))
        }
        throw .badInput("schedule \"\(trimmed)\" must be once, every INTERVAL (every 30s), cron EXPRESSION (cron */5 * * * *), follow or webhook")
    }
}
