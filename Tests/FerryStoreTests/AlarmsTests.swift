import FerryStore
import FerryTestSupport
import Foundation
import NIOConcurrencyHelpers
import Testing

/// The alarms that time requests out (``Alarms``): each fires once, at or after its time, unless
/// cancelled first, whatever order they are set and cancelled in.
@Suite struct AlarmsTests {
    @Test func anAlarmFiresOnceAtItsTimeAndACancelledOneNever() async throws {
        let alarms = Alarms()
        let fired = NIOLockedValueBox<[String: Date]>([:])
        let start = Date()
        let kept = alarms.set(in: 0.2) { fired.withLockedValue { $0["kept", default: Date()] = Date() } }
        let cancelled = alarms.set(in: 0.1) { fired.withLockedValue { $0["cancelled"] = Date() } }
        #expect(alarms.cancel(cancelled))
        #expect(await eventually { fired.withLockedValue { $0["kept"] } != nil })
        let at = try #require(fired.withLockedValue { $0["kept"] })
        #expect(at.timeIntervalSince(start) >= 0.19, "fired early: after \(at.timeIntervalSince(start)) s")
        // Cancelling after it fired says so; the cancelled one stays silent past its time.
        #expect(!alarms.cancel(kept))
        try await Task.sleep(for: .milliseconds(300))
        #expect(fired.withLockedValue { $0["cancelled"] } == nil)
    }

    /// Alarms set in random order with random times, half of them cancelled: each one left fires
    /// exactly once, none before its time, and an alarm earlier than every one pending is not held
    /// back by the timer already set for a later one.
    @Test(arguments: [1, 2, 3])
    func randomAlarmsFireExactlyOnceAndNeverEarly(seed: UInt64) async throws {
        var random = SplitMix(seed: seed)
        let alarms = Alarms()
        let counts = NIOLockedValueBox<[Int: Int]>([:])
        let early = NIOLockedValueBox<[Int]>([])
        var kept: Set<Int> = []
        let start = Date()
        // A long one first: the timer is set for it, and every shorter one must still fire on time.
        let long = alarms.set(in: 3600) { counts.withLockedValue { $0[-1, default: 0] += 1 } }
        var set: [(Int, Alarms.Alarm)] = []
        for index in 0..<200 {
            let seconds = Double(random.next() % 400) / 1000
            let due = start.addingTimeInterval(seconds)
            let alarm = alarms.set(in: seconds) {
                if Date() < due.addingTimeInterval(-0.001) { early.withLockedValue { $0.append(index) } }
                counts.withLockedValue { $0[index, default: 0] += 1 }
            }
            set.append((index, alarm))
        }
        for (index, alarm) in set {
            if random.next() % 2 == 0, alarms.cancel(alarm) { continue }
            kept.insert(index)
        }
        #expect(await eventually(within: 60) { counts.withLockedValue { $0.count } >= kept.count })
        try await Task.sleep(for: .milliseconds(200))
        let final = counts.withLockedValue { $0 }
        #expect(Set(final.keys) == kept, "fired: \(final.keys.sorted()) kept: \(kept.sorted())")
        #expect(final.values.allSatisfy { $0 == 1 })
        #expect(early.withLockedValue { $0 }.isEmpty)
        #expect(alarms.cancel(long))
    }
}
