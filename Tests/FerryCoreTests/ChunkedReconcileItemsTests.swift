import FerryCore
import FerryTestSupport
import Testing

/// ``ChunkedReconcileItems`` changed in place answers every question exactly as
/// ``SortedReconcileItems`` built from scratch over the same set (the server keeps the first and
/// applies writes to it; the second is the linear reference).
@Suite struct ChunkedReconcileItemsTests {
    /// Compares every answer a reconciler asks for: count, each item, positions of bounds
    /// (item ids, neighbours' shortest bounds, ids absent from the set, the end), and the
    /// fingerprints of random ranges, of whole chunks and of single items.
    static func expectSame(_ chunked: ChunkedReconcileItems, _ reference: SortedReconcileItems, _ random: inout SplitMix, _ context: String) {
        #expect(chunked.count == reference.count, "\(context)")
        guard chunked.count == reference.count else { return }
        let n = reference.count
        #expect((0..<n).allSatisfy { chunked.item(at: $0) == reference.item(at: $0) }, "\(context): items")
        var bounds: [ReconcileBound] = [.start, .end, .below([0xFF]), .below(Array("m".utf8))]
        for _ in 0..<50 where n > 0 {
            let p = Int(random.next() % UInt64(n))
            bounds.append(.below(reference.item(at: p).id))
            bounds.append(.below(reference.item(at: p).id + [0]))
            if p + 1 < n { bounds.append(.between(reference.item(at: p).id, reference.item(at: p + 1).id)) }
        }
        for bound in bounds {
            #expect(chunked.position(of: bound) == reference.position(of: bound), "\(context): position of \(bound)")
        }
        var ranges: [Range<Int>] = [0..<n, 0..<0, n..<n]
        for _ in 0..<200 {
            let a = Int(random.next() % UInt64(n + 1))
            let b = Int(random.next() % UInt64(n + 1))
            ranges.append(min(a, b)..<max(a, b))
            if n > 0 { ranges.append(a % n..<(a % n + 1)) }
        }
        for range in ranges {
            #expect(chunked.sum(range).fingerprint == reference.sum(range).fingerprint, "\(context): sum of \(range)")
        }
    }

    @Test(arguments: 0..<12)
    func changesInPlaceAnswerAsARebuild(seed: Int) {
        var random = SplitMix(seed: UInt64(seed) &* 104_729 &+ 11)
        let sizes = [0, 1, 5, 127, 128, 129, 700, 5_000]
        let size = sizes[seed % sizes.count]
        // Ids sharing a long prefix, and a few hashes shared by many ids.
        let prefix = seed % 2 == 0 ? "" : String(repeating: "tenant-42/", count: 10)
        let shared = RecordHash(high: 9, low: 9)
        func hash() -> RecordHash { random.next() % 5 == 0 ? shared : RecordHash(high: random.next(), low: random.next()) }
        func id() -> String { prefix + String(random.next() % UInt64(max(size * 3, 10)), radix: 36) }
        var truth: [String: RecordHash] = [:]
        for _ in 0..<size { truth[id()] = hash() }
        var chunked = ChunkedReconcileItems(sortedUnique: SortedReconcileItems(truth.map { ReconcileItem(id: $0.key, hash: $0.value) }).items)
        for round in 0..<6 {
            // A batch of creates, updates, deletes (some of absent ids), as the server applies writes since a round.
            let changes = [1, 3, 50, 400, size, 2 * size][round]
            for _ in 0..<changes {
                let key = id()
                if random.next() % 3 == 0 {
                    truth[key] = nil
                    chunked.remove(Array(key.utf8))
                } else {
                    let value = hash()
                    truth[key] = value
                    chunked.set(ReconcileItem(id: key, hash: value))
                }
            }
            // Deleting everything empties every chunk.
            if round == 4, seed % 3 == 0 {
                for key in truth.keys { chunked.remove(Array(key.utf8)) }
                truth = [:]
            }
            chunked.reindex()
            let reference = SortedReconcileItems(truth.map { ReconcileItem(id: $0.key, hash: $0.value) })
            Self.expectSame(chunked, reference, &random, "seed \(seed) round \(round), \(truth.count) items")
        }
    }

    /// A whole exchange against changed chunked items finds exactly the symmetric difference.
    @Test(arguments: 0..<8)
    func reconcilesAgainstChangedItems(seed: Int) async throws {
        let test = ReconcileCase(seed: UInt64(seed) &+ 500, size: [10, 300, 3_000, 20_000][seed % 4], differenceFraction: [0.001, 0.05, 0.5][seed % 3])
        // The responder's items built from the initiator's set, then changed into its own.
        let start = Dictionary(test.here.map { ($0.id, $0) }, uniquingKeysWith: { $1 })
        let end = Dictionary(test.there.map { ($0.id, $0) }, uniquingKeysWith: { $1 })
        var items = ChunkedReconcileItems(sortedUnique: SortedReconcileItems(test.here).items)
        for id in start.keys where end[id] == nil { items.remove(id) }
        for item in end.values where start[item.id] != item { items.set(item) }
        items.reindex()
        let responder = Reconciler(items, configuration: .init(frameLimit: test.configuration.frameLimit))
        let outcome = try await ReconcileExchange(Reconciler(SortedReconcileItems(test.here), configuration: test.configuration)).run { bytes in
            responder.respond(to: try ReconcileMessage(decoding: bytes, limit: 1 << 20)).encoded()
        }
        let expected = test.expected
        #expect(Set(outcome.differences.onlyHere.map(\.id)) == expected.onlyHere, "\(test)")
        #expect(Set(outcome.differences.onlyThere.map(\.id)) == expected.onlyThere, "\(test)")
        #expect(Set(outcome.differences.changed.map(\.id)) == expected.changed, "\(test)")
        #expect(outcome.differences.count == expected.onlyHere.count + expected.onlyThere.count + expected.changed.count, "\(test)")
    }
}
