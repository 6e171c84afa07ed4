/// A side's items as reconciliation reads them: sorted by id, addressed by position.
/// ``SortedReconcileItems`` holds them in memory; a store with block aggregates could
/// answer the same questions without loading every item.
public protocol ReconcileItems {
    /// How many items there are.
    var count: Int { get }
    /// The position of the first item at or above `bound` (``count`` for ``ReconcileBound/end``).
    func position(of bound: ReconcileBound) -> Int
    /// The item at a position.
    func item(at position: Int) -> ReconcileItem
    /// The count and sum of the items in a range of positions.
    func sum(_ positions: Range<Int>) -> ItemSum
}

/// Items in memory, sorted by id, with prefix sums so any range's fingerprint costs
/// one subtraction: a round's work is proportional to the ranges in the message (times
/// a logarithm), not to the number of items.
public struct SortedReconcileItems: ReconcileItems, Sendable {
    public let items: [ReconcileItem]
    private let prefix: [ItemSum]

    /// - Parameter items: in any order; an id present twice keeps its last item.
    public init(_ items: some Sequence<ReconcileItem>) {
        var sorted = Array(items)
        // A stable sort, then keep the last of equal ids.
        sorted = sorted.enumerated().sorted { $0.element.id == $1.element.id ? $0.offset < $1.offset : $0.element < $1.element }.map(\.element)
        var unique: [ReconcileItem] = []
        unique.reserveCapacity(sorted.count)
        for item in sorted {
            if let last = unique.last, last.id == item.id { unique[unique.count - 1] = item } else { unique.append(item) }
        }
        self.init(sortedUnique: unique)
    }

    /// - Parameter items: already sorted by id, no id twice (checked in debug builds).
    public init(sortedUnique items: [ReconcileItem]) {
        assert(zip(items, items.dropFirst()).allSatisfy { $0 < $1 }, "items must be sorted by id, each id once")
        self.items = items
        var prefix: [ItemSum] = [ItemSum()]
        prefix.reserveCapacity(items.count + 1)
        var running = ItemSum()
        for item in items {
            running.add(item.term)
            prefix.append(running)
        }
        self.prefix = prefix
    }

    public var count: Int { items.count }

    public func position(of bound: ReconcileBound) -> Int {
        guard case .below(let id) = bound else { return items.count }
        return items.firstIndex(notBelow: id)
    }

    public func item(at position: Int) -> ReconcileItem { items[position] }

    public func sum(_ positions: Range<Int>) -> ItemSum {
        prefix[positions.upperBound].subtracting(prefix[positions.lowerBound])
    }
}

extension Array where Element == ReconcileItem {
    /// The index of the first item whose id is not below `id` (``count`` when none), in items sorted by id.
    func firstIndex(notBelow id: [UInt8]) -> Int {
        var low = 0
        var high = count
        while low < high {
            let middle = (low + high) / 2
            if self[middle].id.lexicographicallyPrecedes(id) { low = middle + 1 } else { high = middle }
        }
        return low
    }
}
