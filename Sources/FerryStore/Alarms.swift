import NIOConcurrencyHelpers
import NIOCore
import NIOPosix

/// One-shot alarms for the server's per-request timeouts, all kept by one event-loop timer.
///
/// A request's timeout used to be a task sleeping beside it (`Task.sleep`, then cancelled): a task
/// to start, a dispatch timer, and a task switch to wake the sleeper and end it, for every write,
/// even though nearly every request ends in time. An alarm is an entry in a table instead, and one
/// timer is scheduled on an event loop for the earliest entry: an alarm cancelled in time costs an
/// insert and a removal under a lock. The timeouts of a server are few and long (seconds), so the
/// timer seldom fires for nothing; when it does, it looks at the entries left and sets itself for
/// the earliest of them.
public final class Alarms: Sendable {
    /// An alarm that was set, to cancel it.
    public struct Alarm: Sendable {
        fileprivate let id: UInt64
    }

    private struct Entry {
        let due: NIODeadline
        let fire: @Sendable () -> Void
    }

    private struct State {
        var entries: [UInt64: Entry] = [:]
        var lastID: UInt64 = 0
        /// When the earliest timer scheduled is due (nil: none is).
        var timer: NIODeadline?
    }

    private let state = NIOLockedValueBox(State())
    private let eventLoop: any EventLoop

    /// The process's alarms, on one of NIO's shared event loops.
    public static let shared = Alarms()

    init(on eventLoop: any EventLoop) {
        self.eventLoop = eventLoop
    }

    /// Alarms of their own (tests), on one of NIO's shared event loops.
    package convenience init() {
        self.init(on: MultiThreadedEventLoopGroup.singleton.next())
    }

    /// Calls `fire` on the event loop once `seconds` have passed, unless the alarm is cancelled first.
    /// `fire` must not block (it runs on an event loop).
    public func set(in seconds: Double, _ fire: @escaping @Sendable () -> Void) -> Alarm {
        let due = NIODeadline.now() + .nanoseconds(Int64(min(max(seconds, 0), 1e9) * 1e9))
        let (alarm, schedule) = state.withLockedValue { state -> (Alarm, Bool) in
            state.lastID += 1
            state.entries[state.lastID] = Entry(due: due, fire: fire)
            if let timer = state.timer, timer <= due { return (Alarm(id: state.lastID), false) }
            state.timer = due
            return (Alarm(id: state.lastID), true)
        }
        if schedule { eventLoop.scheduleTask(deadline: due) { self.ring() } }
        return alarm
    }

    /// Takes `alarm` off: true when it had not fired (then it never will).
    @discardableResult
    public func cancel(_ alarm: Alarm) -> Bool {
        state.withLockedValue { $0.entries.removeValue(forKey: alarm.id) != nil }
    }

    /// The timer: fires the alarms that are due and sets itself for the earliest of the rest.
    private func ring() {
        let now = NIODeadline.now()
        let (due, next) = state.withLockedValue { state -> ([@Sendable () -> Void], NIODeadline?) in
            var due: [UInt64] = []
            var earliest: NIODeadline?
            for (id, entry) in state.entries {
                if entry.due <= now {
                    due.append(id)
                } else if earliest.map({ entry.due < $0 }) ?? true {
                    earliest = entry.due
                }
            }
            let fired = due.compactMap { state.entries.removeValue(forKey: $0)?.fire }
            if let timer = state.timer, timer > now, let earliest, timer <= earliest {
                return (fired, nil)  // a timer already set comes first
            }
            state.timer = earliest
            return (fired, earliest)
        }
        if let next { eventLoop.scheduleTask(deadline: next) { self.ring() } }
        for fire in due { fire() }
    }
}
