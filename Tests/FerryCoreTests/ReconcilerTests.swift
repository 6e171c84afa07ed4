import FerryCore
import FerryTestSupport
import Testing

/// Two sets and what reconciling them must find.
struct ReconcileCase: CustomStringConvertible {
    var seed: UInt64
    var here: [ReconcileItem]
    var there: [ReconcileItem]
    var configuration: Reconciler<SortedReconcileItems>.Configuration

    var description: String { "seed \(seed): \(here.count) vs \(there.count) items, frame \(configuration.effectiveFrameLimit)" }

    /// Builds a pair from a seed: a base set, then deletes, updates and creates on the other side.
    init(seed: UInt64, size: Int, differenceFraction: Double) {
        self.seed = seed
        var random = SplitMix(seed: seed)
        let idStyle = Int.random(in: 0..<3, using: &random)
        // Long shared prefixes make bounds long and ids close together.
        let prefix = String(repeating: "customer-region-eu-west-", count: Int.random(in: 1...8, using: &random))
        func id(_ n: Int) -> String {
            switch idStyle {
            case 0: String(random.next(), radix: 16) + "-" + String(n)
            case 1: prefix + String(n)
            default: prefix + String(random.next() % 1000) + "-" + String(n)
            }
        }
        // A few hash values shared by many ids: equal contents under different ids.
        let sharedHashes = (0..<4).map { _ in RecordHash(high: random.next(), low: random.next()) }
        func hash() -> RecordHash {
            Int.random(in: 0..<4, using: &random) == 0 ? sharedHashes.randomElement(using: &random)! : RecordHash(high: random.next(), low: random.next())
        }
        var base: [String: RecordHash] = [:]
        for n in 0..<size { base[id(n)] = hash() }
        var other = base
        let changes = Int(Double(size) * differenceFraction)
        var keys = Array(base.keys).sorted()
        keys.shuffle(using: &random)
        for key in keys.prefix(changes) {
            switch Int.random(in: 0..<3, using: &random) {
            case 0: other[key] = nil
            case 1: other[key] = hash()
            default: other[id(size + Int(random.next() % 1_000_000))] = hash()
            }
        }
        here = base.map { ReconcileItem(id: $0.key, hash: $0.value) }
        there = other.map { ReconcileItem(id: $0.key, hash: $0.value) }
        let frames = [0, 20_000, 131_072]
        configuration = .init(frameLimit: frames.randomElement(using: &random)!)
    }

    /// The exact differences, from both sets in full.
    var expected: (onlyHere: Set<[UInt8]>, onlyThere: Set<[UInt8]>, changed: Set<[UInt8]>) {
        let a = Dictionary(uniqueKeysWithValues: here.map { ($0.id, $0.hash) })
        let b = Dictionary(uniqueKeysWithValues: there.map { ($0.id, $0.hash) })
        return (Set(a.keys).subtracting(b.keys), Set(b.keys).subtracting(a.keys),
                Set(a.keys.filter { b[$0] != nil && b[$0] != a[$0] }))
    }

    /// Runs the whole exchange in memory, every message through its bytes, checking each frame's size.
    func run() async throws -> ReconcileExchange<SortedReconcileItems>.Outcome {
        let initiator = Reconciler(SortedReconcileItems(here), configuration: configuration)
        let responder = Reconciler(SortedReconcileItems(there), configuration: configuration)
        let limit = configuration.effectiveFrameLimit
        return try await ReconcileExchange(initiator).run { bytes in
            #expect(bytes.count <= limit, "\(self): a request of \(bytes.count) bytes")
            let reply = responder.respond(to: try ReconcileMessage(decoding: bytes, limit: limit)).encoded()
            #expect(reply.count <= limit, "\(self): a reply of \(reply.count) bytes")
            return reply
        }
    }
}

@Suite struct ReconcilerTests {
    @Test(arguments: 0..<40)
    func randomPairsReconcileToTheSymmetricDifference(seed: Int) async throws {
        var random = SplitMix(seed: UInt64(seed) &* 7919)
        let sizes = [0, 1, 2, 15, 33, 100, 517, 2_000, 5_000]
        let fractions = [0, 0.0001, 0.001, 0.01, 0.1, 0.5, 1]
        let test = ReconcileCase(seed: UInt64(seed), size: sizes.randomElement(using: &random)!,
                                 differenceFraction: fractions.randomElement(using: &random)!)
        let outcome = try await test.run()
        let expected = test.expected
        let found = outcome.differences
        #expect(Set(found.onlyHere.map(\.id)) == expected.onlyHere, "\(test)")
        #expect(Set(found.onlyThere.map(\.id)) == expected.onlyThere, "\(test)")
        #expect(Set(found.changed.map(\.id)) == expected.changed, "\(test)")
        #expect(found.count == expected.onlyHere.count + expected.onlyThere.count + expected.changed.count, "\(test): an id reported twice")
    }

    @Test(arguments: [(100_000, 0.00001), (100_000, 0.01)])
    func largeSetsReconcile(size: Int, fraction: Double) async throws {
        let test = ReconcileCase(seed: UInt64(size) &+ UInt64(fraction * 1e6), size: size, differenceFraction: fraction)
        let outcome = try await test.run()
        let expected = test.expected
        #expect(Set(outcome.differences.onlyHere.map(\.id)) == expected.onlyHere)
        #expect(Set(outcome.differences.onlyThere.map(\.id)) == expected.onlyThere)
        #expect(Set(outcome.differences.changed.map(\.id)) == expected.changed)
    }

    /// The targets for one difference in a large set: few round trips, few bytes.
    @Test func oneDifferenceCostsFewRoundTripsAndBytes() async throws {
        var random = SplitMix(seed: 42)
        let base = (0..<100_000).map { _ in ReconcileItem(id: String(random.next(), radix: 16) + String(random.next(), radix: 16),
                                                          hash: RecordHash(high: random.next(), low: random.next())) }
        var other = base
        other[777] = ReconcileItem(id: other[777].id, hash: RecordHash(high: 1, low: 2))
        let initiator = Reconciler(SortedReconcileItems(base))
        let responder = Reconciler(SortedReconcileItems(other))
        let outcome = try await ReconcileExchange(initiator).run { bytes in
            responder.respond(to: try ReconcileMessage(decoding: bytes, limit: 1 << 20)).encoded()
        }
        #expect(outcome.differences.changed.map(\.id) == [base[777].id] && outcome.differences.changed.first?.hash == RecordHash(high: 1, low: 2))
        #expect(outcome.differences.count == 1)
        #expect(outcome.rounds <= 4, "\(outcome.rounds) round trips")
        #expect(outcome.bytesSent <= 4096 && outcome.bytesReceived <= 4096, "\(outcome.bytesSent) bytes sent, \(outcome.bytesReceived) received")
    }

    @Test func equalSetsTakeOneRoundTrip() async throws {
        let items = (0..<5_000).map { ReconcileItem(id: "r\($0)", hash: RecordHash(high: UInt64($0), low: 7)) }
        let responder = Reconciler(SortedReconcileItems(items.reversed()))
        let outcome = try await ReconcileExchange(Reconciler(SortedReconcileItems(items))).run { bytes in
            responder.respond(to: try ReconcileMessage(decoding: bytes, limit: 1 << 20)).encoded()
        }
        #expect(outcome.rounds == 1 && outcome.differences.count == 0)
    }

    @Test func sumsAreOrderIndependentAndSubtract() {
        var random = SplitMix(seed: 3)
        // Hashes near 2^128 so the 256-bit carries are exercised.
        let hashes = (0..<200).map { _ in RecordHash(high: UInt64.max - random.next() % 3, low: UInt64.max - random.next() % 3) }
        var forward = ItemSum()
        var backward = ItemSum()
        hashes.forEach { forward.add($0) }
        hashes.reversed().forEach { backward.add($0) }
        #expect(forward.fingerprint == backward.fingerprint)
        var head = ItemSum()
        hashes.prefix(50).forEach { head.add($0) }
        var tail = ItemSum()
        hashes.dropFirst(50).forEach { tail.add($0) }
        #expect(forward.subtracting(head).fingerprint == tail.fingerprint)
        #expect(forward.subtracting(head).count == 150)
        #expect(head.fingerprint != tail.fingerprint)
        // The count takes part: the empty set differs from a set whose hashes sum to zero.
        var zero = ItemSum()
        zero.add(RecordHash(high: 0, low: 0))
        #expect(zero.fingerprint != ItemSum().fingerprint)
    }

    @Test func boundsBetweenNeighboursAreShortAndSeparate() {
        let a = Array("customer-region-eu-west-1234".utf8)
        let b = Array("customer-region-eu-west-1299".utf8)
        let bound = ReconcileBound.between(a, b)
        #expect(bound == .below(Array("customer-region-eu-west-129".utf8)))
        #expect(!bound.isAbove(b) && bound.isAbove(a))
        let prefixOfNext = ReconcileBound.between(Array("ab".utf8), Array("abc".utf8))
        #expect(prefixOfNext.isAbove(Array("ab".utf8)) && !prefixOfNext.isAbove(Array("abc".utf8)))
    }

    @Test func messagesRoundTripThroughBytes() throws {
        let message = ReconcileMessage(ranges: [
            .init(upper: .below(Array("m".utf8)), payload: .skip),
            .init(upper: .below(Array("t".utf8)), payload: .fingerprint(ItemSum().fingerprint)),
            .init(upper: .end, payload: .items([ReconcileItem(id: "u1", hash: RecordHash(high: 1, low: .max)),
                                                ReconcileItem(id: "zz", hash: RecordHash(high: .max, low: 0))])),
        ])
        let bytes = message.encoded()
        #expect(bytes.count == message.encodedSize)
        #expect(try ReconcileMessage(decoding: bytes, limit: 1000) == message)
    }

    /// Hostile bytes: each refused with its own message, none accepted.
    @Test(arguments: [
        ([], "ends inside the version byte"),
        ([0x61], "does not start with the version byte"),
        ([0xF1, 0x02, 0x61], "ends inside the mode of range 0"),
        ([0xF1, 0x02, 0x61, 0x07], "unknown mode 7"),
        ([0xF1, 0x02, 0x61, 0x01, 0x00], "ends inside the fingerprint of range 0"),
        ([0xF1, 0x02, 0x62, 0x00, 0x02, 0x61, 0x00], "range 1 does not end above the range before it"),
        ([0xF1, 0x00, 0x00, 0x00, 0x00], "range 1 follows a range that ends past every id"),
        ([0xF1, 0x00, 0x02, 0xFF, 0xFF, 0xFF, 0xFF, 0x0F], "announces"),
        ([0xF1, 0x00, 0x02, 0x01, 0x00] + [UInt8](repeating: 0, count: 17), "has an id of 0 bytes"),
        ([0xF1, 0x00, 0x02, 0x02, 0x01, 0x62] + [UInt8](repeating: 0, count: 16) + [0x01, 0x61] + [UInt8](repeating: 0, count: 16),
         "item 1 of range 0 is not above the item before it"),
        ([0xF1, 0x02, 0x62, 0x02, 0x01, 0x01, 0x63] + [UInt8](repeating: 0, count: 16), "item 0 of range 0 lies above its range"),
        ([0xF1, 0x02, 0x62, 0x00, 0x00, 0x02, 0x01, 0x01, 0x61] + [UInt8](repeating: 0, count: 16), "item 0 of range 1 lies below its range"),
        ([0xF1, 0x82, 0x02] + [UInt8](repeating: 0x61, count: 257) + [0x00], "bound of range 0 is 257 bytes long"),
        ([0xF1, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF], "too long"),
    ] as [([UInt8], String)])
    func badMessagesAreRefused(bytes: [UInt8], reason: String) {
        #expect {
            _ = try ReconcileMessage(decoding: bytes, limit: 10_000)
        } throws: { error in
            "\(error)".contains(reason)
        }
    }

    @Test func oversizedMessagesAreRefusedBeforeReading() {
        let bytes = [UInt8](repeating: 0xF1, count: 2_000)
        #expect(throws: ReconcileError(.tooLarge, "the message has 2000 bytes; the limit is 1000")) {
            _ = try ReconcileMessage(decoding: bytes, limit: 1_000)
        }
    }

    /// A responder that never agrees cannot keep the initiator busy: the round limit ends it.
    @Test func aResponderThatNeverConvergesIsCutOff() async throws {
        let items = (0..<1_000).map { ReconcileItem(id: "r\($0)", hash: RecordHash(high: UInt64($0), low: 1)) }
        var exchange = ReconcileExchange(Reconciler(SortedReconcileItems(items)))
        exchange.maxRounds = 20
        var round: UInt64 = 0
        await #expect(throws: ReconcileError.self) {
            _ = try await exchange.run { _ in
                round += 1
                return ReconcileMessage(ranges: [.init(upper: .end, payload: .fingerprint(Fingerprint(bytes: RecordHash(high: round, low: 0).bytes)))]).encoded()
            }
        }
        #expect(round == 20)
    }
}
