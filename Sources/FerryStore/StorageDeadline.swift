import FerryPostgres
import Foundation
import NIOConcurrencyHelpers

/// The time a request's storage work has, and the one decision that makes a timeout honest:
/// either the request's write commits, or the client hears that it timed out, never both.
///
/// The HTTP layer makes one per request and runs the request with it as ``current``; the
/// storage reads ``current`` when a transaction starts. Two parties race for it:
/// - the request's timer calls ``expire()`` at the deadline, and answers 503 only if that
///   succeeds;
/// - the storage calls ``claim()`` just before it commits, and commits only if that succeeds
///   (else it rolls back and throws ``StorageError/timedOut(seconds:)``).
///
/// Whichever comes first wins, so a write answered with a timeout never commits afterwards, and a
/// write that claimed its commit is answered with its real outcome even if that comes a moment
/// after the deadline. In between, the storage stops early at ``isExpired`` checks (SQLite's
/// progress handler, PostgreSQL's `statement_timeout`), so timed-out work does not run on.
public final class StorageDeadline: Sendable {
    private enum State { case open, claimed, expired }
    private let state = NIOLockedValueBox(State.open)
    /// When the time is up (`ProcessInfo.systemUptime` seconds).
    private let end: Double
    /// The timeout, for messages.
    public let seconds: Double

    /// The storage deadline of the request running now (nil: none, the work runs to its end).
    @TaskLocal public static var current: StorageDeadline?

    public init(seconds: Double) {
        self.seconds = seconds
        end = ProcessInfo.processInfo.systemUptime + seconds
    }

    /// Seconds left (0 once the time is up).
    public var remaining: Double {
        max(0, end - ProcessInfo.processInfo.systemUptime)
    }

    /// Whether the work must stop: the time is up and no commit was claimed.
    public var isExpired: Bool {
        state.withLockedValue { state in
            if state == .open, ProcessInfo.processInfo.systemUptime >= end { state = .expired }
            return state == .expired
        }
    }

    /// The timer's side: marks the work as timed out. False when the storage already claimed its
    /// commit (then the request's real answer is coming).
    public func expire() -> Bool {
        state.withLockedValue { state in
            if state == .open { state = .expired }
            return state == .expired
        }
    }

    /// The storage's side, just before it commits: true when it may commit (the time is not up,
    /// and from now on the timer cannot answer a timeout).
    public func claim() -> Bool {
        state.withLockedValue { state in
            if state == .open { state = ProcessInfo.processInfo.systemUptime >= end ? .expired : .claimed }
            return state == .claimed
        }
    }

    /// The error of work stopped at this deadline.
    public var error: StorageError { .timedOut(seconds: seconds) }

    /// `work`'s answer, run with a deadline of `seconds` as ``current``; or, when the deadline
    /// expires first, `timedOut()` at once (the work then stops at its next check and rolls back).
    /// `timedOut` runs on an event loop (``Alarms``) and must not block.
    public static func answer<T: Sendable>(within seconds: Double, _ work: @escaping @Sendable () async -> T,
                                           timedOut: @escaping @Sendable (StorageDeadline) -> T) async -> T {
        let deadline = StorageDeadline(seconds: seconds)
        // Never throws: both sides resume with a value.
        return (try? await withCheckedThrowingContinuation { (continuation: CheckedContinuation<T, any Error>) in
            let answer = OneAnswer(continuation)
            let alarm = Alarms.shared.set(in: seconds) {
                if deadline.expire() { answer.resume(returning: timedOut(deadline)) }
            }
            Task {
                let value = await $current.withValue(deadline) { await work() }
                Alarms.shared.cancel(alarm)
                answer.resume(returning: value)
            }
        })!
    }
}
