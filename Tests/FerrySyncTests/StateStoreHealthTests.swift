import FerryCore
import FerrySync
import FerryTestSupport
import Foundation
import Testing

/// The job states `ferry run` records for the sync-health model, in a real state database.
@Suite struct StateStoreHealthTests {
    @Test func statesAreKeptAsRunsOfOneStateAndReadBackInOrder() throws {
        let dir = try TempDir()
        let store = try StateStore(path: dir.file("state.db"))
        for state in [SyncHealthState.inSync, .inSync, .inSync, .failing, .inSync] {
            try store.recordState(job: "a", state: state, intervalSeconds: 60)
        }
        try store.recordState(job: "b", state: .catchingUp, intervalSeconds: 60)
        // Another interval length starts a new row even in the same state.
        try store.recordState(job: "a", state: .inSync, intervalSeconds: 30)
        let (history, interval) = try store.stateHistory(job: "a")
        #expect(history.map(\.state) == [.inSync, .failing, .inSync, .inSync])
        #expect(history.map(\.intervals) == [3, 1, 1, 1])
        #expect(interval == 30)
        #expect(try store.jobsWithStates() == ["a", "b"])
        #expect(try store.stateHistory(job: "none").history.isEmpty)

        // Reopened, the history is the same, and the model reads it: 3 + 1 + 1 + 1 intervals are 5 transitions.
        let reopened = try StateStore(path: dir.file("state.db"))
        let again = try reopened.stateHistory(job: "a").history
        #expect(again.map(\.intervals) == [3, 1, 1, 1])
        #expect(throws: SyncHealthModel.NotEnoughData(transitions: 5, needed: 10)) { try SyncHealthModel(history: again) }
        let model = try SyncHealthModel(history: again, minimumTransitions: 5)
        #expect(model.counts(from: .inSync) == [3, 0, 1, 0])  // 2 inside the first run, 1 from the third to the fourth
        #expect(model.counts(from: .failing) == [1, 0, 0, 0])
        #expect(model.meanTimeToRecovery == .intervals(1))
    }
}
