import FerryCore
import Testing

/// Every expected figure here was worked out by hand from the counts (the working is in the comments).
/// Rows and columns: in sync, catching up, failing, stopped.
@Suite struct SyncHealthModelTests {
    func close(_ a: Double, _ b: Double) -> Bool { abs(a - b) < 1e-9 }

    @Test func twoStateChainGivesItsStationaryShareAndRecoveryTime() throws {
        // P(in sync → in sync) = 8/10, → failing 2/10; P(failing → in sync) = 1/2, → failing 1/2.
        // π: 0.2 π_sync = 0.5 π_fail → π = (5/7, 2/7). Recovery: m = 1 + m/2 → 2 intervals.
        let model = try SyncHealthModel(counts: [[8, 0, 2, 0], [0, 0, 0, 0], [1, 0, 1, 0], [0, 0, 0, 0]], current: .inSync)
        #expect(model.transitions == 12)
        #expect(model.irreducible)
        #expect(close(model.share(.inSync), 5.0 / 7))
        #expect(close(model.share(.failing), 2.0 / 7))
        #expect(model.share(.catchingUp) == 0 && model.share(.stopped) == 0)
        #expect(model.meanTimeToRecovery == .intervals(2))
        #expect(close(model.inSyncProbability(ahead: 0), 1))
        #expect(close(model.inSyncProbability(ahead: 1), 0.8))
        #expect(close(model.inSyncProbability(ahead: 2), 0.8 * 0.8 + 0.2 * 0.5))  // 0.74
        #expect(model.observed == [.inSync, .failing])
    }

    @Test func recoveryThroughCatchingUp() throws {
        // in sync: (3/4, 0, 1/4); catching up: (1/2, 1/2, 0); failing: (1/2, 1/4, 1/4).
        // m_catch = 1 + m_catch/2 = 2; m_fail = 1 + m_catch/4 + m_fail/4 → m_fail = 2.
        // π_fail = π_sync/3, π_catch = π_fail/2 → π = (2/3, 1/9, 2/9).
        let model = try SyncHealthModel(counts: [[6, 0, 2, 0], [1, 1, 0, 0], [2, 1, 1, 0], [0, 0, 0, 0]], current: .failing)
        #expect(model.meanTimeToRecovery == .intervals(2))
        #expect(close(model.share(.inSync), 2.0 / 3))
        #expect(close(model.share(.catchingUp), 1.0 / 9))
        #expect(close(model.share(.failing), 2.0 / 9))
        #expect(close(model.inSyncProbability(ahead: 1), 0.5))
        // The chain forgets where it started: far ahead, the share of time in sync.
        #expect(abs(model.inSyncProbability(ahead: 500) - 2.0 / 3) < 1e-6)
    }

    @Test func anAbsorbingFailingStateNeverRecoversAndTakesAllTheLongRun() throws {
        // failing → failing 4 of 4: absorbing. in sync and catching up both lead to it with
        // probability 1, so the long run is all failing, from any state.
        let counts = [[5, 3, 0, 0], [2, 0, 1, 0], [0, 0, 4, 0], [0, 0, 0, 0]]
        let fromFailing = try SyncHealthModel(counts: counts, current: .failing)
        #expect(fromFailing.meanTimeToRecovery == .never)
        #expect(!fromFailing.irreducible)
        #expect(fromFailing.longRun == [0, 0, 1, 0])
        #expect(fromFailing.inSyncProbability(ahead: 3) == 0)
        let fromInSync = try SyncHealthModel(counts: counts, current: .inSync)
        #expect(close(fromInSync.share(.failing), 1))
        // One step from in sync: 5/8 stay.
        #expect(close(fromInSync.inSyncProbability(ahead: 1), 5.0 / 8))
    }

    @Test func aStateNeverLeftStaysPutAndIsReportedUnobserved() throws {
        // 6 in sync, 1 catching up, 4 in sync, 1 failing (the last interval, never left):
        // in sync → in sync 5 + 3, → catching up 1, → failing 1; catching up → in sync 1.
        let model = try SyncHealthModel(history: [(.inSync, 6), (.catchingUp, 1), (.inSync, 4), (.failing, 1)])
        #expect(model.counts == [[8, 1, 1, 0], [1, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]])
        #expect(model.transitions == 11)
        #expect(model.current == .failing)
        #expect(model.observed == [.inSync, .catchingUp])
        #expect(model.probabilities[2] == [0, 0, 1, 0])  // no way out is invented
        #expect(model.meanTimeToRecovery == .never)
        #expect(model.longRun == [0, 0, 1, 0])
        #expect(!model.irreducible)
    }

    @Test func twoClosedClassesShareTheLongRunByTheOddsOfReachingEach() throws {
        // catching up → in sync 1, → stopped 1; in sync and stopped never leave: from catching up,
        // half the runs end in each.
        let model = try SyncHealthModel(counts: [[5, 0, 0, 0], [1, 0, 0, 1], [0, 0, 0, 0], [0, 0, 0, 3]], current: .catchingUp)
        #expect(model.longRun == [0.5, 0, 0, 0.5])
        #expect(model.meanTimeToRecovery == .neverFailed)
        #expect(model.inSyncProbability(ahead: 1) == 0.5)
        #expect(!model.irreducible)
    }

    @Test func tooLittleHistoryIsRefusedWithTheCounts() {
        // 5 in sync then 2 failing: 4 + 1 + 1 = 6 transitions.
        #expect(throws: SyncHealthModel.NotEnoughData(transitions: 6, needed: 10)) {
            try SyncHealthModel(history: [(.inSync, 5), (.failing, 2)])
        }
        #expect(throws: SyncHealthModel.NotEnoughData(transitions: 0, needed: 10)) { try SyncHealthModel(history: []) }
        #expect(throws: SyncHealthModel.NotEnoughData(transitions: 0, needed: 1)) {
            try SyncHealthModel(history: [(.inSync, 1)], minimumTransitions: 0)
        }
        #expect(SyncHealthModel.NotEnoughData(transitions: 1, needed: 10).description
            == "not enough data: 1 transition recorded, the model needs at least 10")
        // Exactly the minimum is enough.
        #expect((try? SyncHealthModel(history: [(.inSync, 11)])) != nil)
    }

    @Test func historyRunsOfOneStateCountSelfTransitions() throws {
        // Two runs of the same state in a row are one longer run.
        let split = try SyncHealthModel(history: [(.inSync, 4), (.inSync, 3), (.failing, 0), (.catchingUp, 5)])
        #expect(split.counts(from: .inSync) == [6, 1, 0, 0])
        #expect(split.counts(from: .catchingUp) == [0, 4, 0, 0])
        #expect(split.current == .catchingUp)
    }

    @Test func observedStateFollowsTheLastRun() {
        #expect(SyncHealthState.observe(running: false, lastRun: .succeeded, changePending: false) == .inSync)
        #expect(SyncHealthState.observe(running: true, lastRun: .succeeded, changePending: false) == .catchingUp)
        #expect(SyncHealthState.observe(running: false, lastRun: .succeeded, changePending: true) == .catchingUp)
        #expect(SyncHealthState.observe(running: false, lastRun: nil, changePending: false) == .catchingUp)
        #expect(SyncHealthState.observe(running: false, lastRun: .stoppedEarly, changePending: false) == .catchingUp)
        // A retry under way is still failing until a run succeeds.
        #expect(SyncHealthState.observe(running: true, lastRun: .failed, changePending: false) == .failing)
    }
}
