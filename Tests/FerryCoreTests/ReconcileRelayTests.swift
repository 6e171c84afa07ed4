import FerryCore
import FerryTestSupport
import Testing

/// Two responders reconciled through a ``ReconcileRelay`` that holds no items (two servers
/// driven by the engine) find exactly the symmetric difference, every frame within the limit.
@Suite struct ReconcileRelayTests {
    @Test(arguments: 0..<30)
    func twoRespondersReconcileToTheSymmetricDifference(seed: Int) async throws {
        var random = SplitMix(seed: UInt64(seed) &* 6_007 &+ 1)
        let sizes = [0, 1, 2, 31, 33, 100, 517, 2_000, 5_000]
        let fractions = [0, 0.0001, 0.001, 0.01, 0.1, 0.5, 1]
        let test = ReconcileCase(seed: UInt64(seed) &+ 9_000, size: sizes.randomElement(using: &random)!,
                                 differenceFraction: fractions.randomElement(using: &random)!)
        let a = Reconciler(SortedReconcileItems(test.here), configuration: test.configuration)
        let b = Reconciler(SortedReconcileItems(test.there), configuration: test.configuration)
        let limit = test.configuration.effectiveFrameLimit
        let outcome = try await ReconcileRelay().run { side, bytes in
            #expect(bytes.count <= limit, "\(test): a request of \(bytes.count) bytes")
            let reply = (side == .a ? a : b).respond(to: try ReconcileMessage(decoding: bytes, limit: limit)).encoded()
            #expect(reply.count <= limit, "\(test): a reply of \(reply.count) bytes")
            return reply
        }
        let expected = test.expected
        #expect(Set(outcome.differences.onlyHere.map(\.id)) == expected.onlyHere, "\(test)")
        #expect(Set(outcome.differences.onlyThere.map(\.id)) == expected.onlyThere, "\(test)")
        #expect(Set(outcome.differences.changed.map(\.id)) == expected.changed, "\(test)")
        #expect(outcome.differences.count == expected.onlyHere.count + expected.onlyThere.count + expected.changed.count, "\(test): an id reported twice")
        // The changed items are B's.
        let bHashes = Dictionary(uniqueKeysWithValues: test.there.map { ($0.id, $0.hash) })
        #expect(outcome.differences.changed.allSatisfy { bHashes[$0.id] == $0.hash })
    }

    /// One difference in 100,000 items: the relay's round trips and bytes (two requests per
    /// round of the two-party protocol at most).
    @Test func oneDifferenceCostsFewRoundTrips() async throws {
        var random = SplitMix(seed: 43)
        let base = (0..<100_000).map { _ in ReconcileItem(id: String(random.next(), radix: 16), hash: RecordHash(high: random.next(), low: random.next())) }
        var other = base
        other[4242] = ReconcileItem(id: other[4242].id, hash: RecordHash(high: 5, low: 6))
        let a = Reconciler(SortedReconcileItems(base))
        let b = Reconciler(SortedReconcileItems(other))
        let outcome = try await ReconcileRelay().run { side, bytes in
            (side == .a ? a : b).respond(to: try ReconcileMessage(decoding: bytes, limit: 1 << 20)).encoded()
        }
        #expect(outcome.differences.changed.map(\.id) == [base[4242].id] && outcome.differences.count == 1)
        #expect(outcome.rounds <= 8, "\(outcome.rounds) round trips")
    }

    /// A side that never stops splitting (a hostile or broken server) is given up on.
    @Test func aRelayThatDoesNotEndIsAbandoned() async throws {
        var relay = ReconcileRelay()
        relay.maxRounds = 5
        await #expect(throws: ReconcileError.self) {
            _ = try await relay.run { _, _ in
                ReconcileMessage(ranges: [.init(upper: .end, payload: .fingerprint(Fingerprint(bytes: Array(repeating: 1, count: 16))))]).encoded()
            }
        }
    }
}
