public import Foundation

/// When to try a failed request again: exponential backoff with jitter, and what the
/// server asked for (`Retry-After`) when that is longer. Pure: the caller sleeps.
///
/// ```swift
/// let policy = RetryPolicy(maxAttempts: 4, baseDelay: 0.5)
/// policy.delay(afterAttempt: 1, retryAfter: nil, random: 1)   // 0.5
/// policy.delay(afterAttempt: 4, retryAfter: nil, random: 1)   // nil: give up
/// ```
public struct RetryPolicy: Sendable, Equatable {
    /// Attempts in all, the first one included.
    public var maxAttempts: Int = 6
    /// Seconds before the first retry (before jitter).
    public var baseDelay: Double = 0.25
    /// Longest wait between attempts, in seconds, whatever the server asks.
    public var maxDelay: Double = 60

    public init(maxAttempts: Int = 6, baseDelay: Double = 0.25, maxDelay: Double = 60) {
        self.maxAttempts = maxAttempts
        self.baseDelay = baseDelay
        self.maxDelay = maxDelay
    }

    /// Seconds to wait after failed attempt number `attempt` (1 for the first), or nil to give up.
    /// - Parameters:
    ///   - retryAfter: what the server asked for, in seconds.
    ///   - random: a number in 0...1; the backoff is scaled into its upper half (jitter).
    public func delay(afterAttempt attempt: Int, retryAfter: Double?, random: Double) -> Double? {
        guard attempt < maxAttempts else { return nil }
        let exponential = baseDelay * pow(2, Double(attempt - 1))
        let jittered = min(exponential, maxDelay) * (0.5 + 0.5 * min(max(random, 0), 1))
        return min(max(jittered, retryAfter ?? 0), maxDelay)
    }

    /// Whether an HTTP status is worth retrying: 408, 425, 429 and 5xx other than 501/505.
    public static func isRetryable(status: Int) -> Bool {
        status == 408 || status == 425 || status == 429 || (status >= 500 && status != 501 && status != 505)
    }

    /// Seconds from a `Retry-After` or `Backoff` header: a number of seconds or an HTTP date.
    public static func seconds(fromHeader value: String?, now: Date = Date()) -> Double? {
        guard let value = value?.trimmingCharacters(in: .whitespaces), !value.isEmpty else { return nil }
        if let seconds = Double(value), seconds.isFinite, seconds >= 0 { return seconds }
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "GMT")
        formatter.dateFormat = "EEE, dd MMM yyyy HH:mm:ss zzz"
        guard let date = formatter.date(from: value) else { return nil }
        return max(0, date.timeIntervalSince(now))
    }
}
