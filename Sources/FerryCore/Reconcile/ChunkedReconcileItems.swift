/// Items in memory, sorted by id, kept in chunks of a few dozen with each chunk's sum, so
/// that a change costs one chunk (plus the chunk index) instead of the whole set: a server
/// keeps a collection's items and applies each write since the last exchange
/// (``set(_:)``, ``remove(_:)``) rather than reading the collection again.
///
/// A round's questions cost: ``position(of:)`` and ``item(at:)`` two binary searches; a range's
/// ``sum(_:)`` the whole chunks inside it from prefix sums, and at most two partial chunks item
/// by item (at most ``chunkCapacity`` each). Changes leave the chunk index stale until
/// ``reindex()`` (linear in the number of chunks, not of items).
public struct ChunkedReconcileItems: ReconcileItems, Sendable {
    /// The most items a chunk holds; a fuller one is split in two.
    public static let chunkCapacity = 128

    private struct Chunk: Sendable {
        var items: [ReconcileItem]
        var sum: ItemSum
    }

    private var chunks: [Chunk] = []
    /// The position of each chunk's first item, and one past the last item at the end.
    private var starts: [Int] = [0]
    /// The sum of the chunks before each chunk, and of all of them at the end.
    private var prefix: [ItemSum] = [ItemSum()]
    private var indexed = true

    /// - Parameter items: sorted by id, no id twice.
    public init(sortedUnique items: [ReconcileItem]) {
        let size = Self.chunkCapacity / 2
        var start = 0
        while start < items.count {
            let part = Array(items[start..<min(start + size, items.count)])
            chunks.append(Chunk(items: part, sum: Self.sum(part)))
            start += size
        }
        reindex()
    }

    private static func sum(_ items: some Sequence<ReconcileItem>) -> ItemSum {
        var sum = ItemSum()
        for item in items { sum.add(item.term) }
        return sum
    }

    /// Rebuilds the chunk index after changes; the queries below need it (checked in debug builds).
    public mutating func reindex() {
        var starts = [0]
        var prefix = [ItemSum()]
        starts.reserveCapacity(chunks.count + 1)
        prefix.reserveCapacity(chunks.count + 1)
        var running = ItemSum()
        for chunk in chunks {
            running.add(chunk.sum)
            starts.append(starts[starts.count - 1] + chunk.items.count)
            prefix.append(running)
        }
        self.starts = starts
        self.prefix = prefix
        indexed = true
    }

    /// The index of the chunk where `id` is or would be: the first whose last id is not below it, else the last.
    private func chunkIndex(for id: [UInt8]) -> Int {
        var low = 0
        var high = chunks.count
        while low < high {
            let middle = (low + high) / 2
            if chunks[middle].items[chunks[middle].items.count - 1].id.lexicographicallyPrecedes(id) { low = middle + 1 } else { high = middle }
        }
        return min(low, chunks.count - 1)
    }

    private static func index(of id: [UInt8], in items: [ReconcileItem]) -> Int {
        items.firstIndex(notBelow: id)
    }

    /// Adds an item, or replaces the one with its id.
    public mutating func set(_ item: ReconcileItem) {
        indexed = false
        guard !chunks.isEmpty else {
            chunks = [Chunk(items: [item], sum: Self.sum([item]))]
            return
        }
        let c = chunkIndex(for: item.id)
        let index = Self.index(of: item.id, in: chunks[c].items)
        if index < chunks[c].items.count, chunks[c].items[index].id == item.id {
            var one = ItemSum()
            one.add(chunks[c].items[index].term)
            chunks[c].sum = chunks[c].sum.subtracting(one)
            chunks[c].items[index] = item
        } else {
            chunks[c].items.insert(item, at: index)
        }
        chunks[c].sum.add(item.term)
        if chunks[c].items.count > Self.chunkCapacity {
            let items = chunks[c].items
            let half = items.count / 2
            chunks[c] = Chunk(items: Array(items[..<half]), sum: Self.sum(items[..<half]))
            chunks.insert(Chunk(items: Array(items[half...]), sum: Self.sum(items[half...])), at: c + 1)
        }
    }

    /// Removes the item with this id, if there is one.
    public mutating func remove(_ id: [UInt8]) {
        guard !chunks.isEmpty else { return }
        let c = chunkIndex(for: id)
        let index = Self.index(of: id, in: chunks[c].items)
        guard index < chunks[c].items.count, chunks[c].items[index].id == id else { return }
        indexed = false
        var one = ItemSum()
        one.add(chunks[c].items[index].term)
        chunks[c].items.remove(at: index)
        if chunks[c].items.isEmpty {
            chunks.remove(at: c)
        } else {
            chunks[c].sum = chunks[c].sum.subtracting(one)
        }
    }

    public var count: Int {
        assert(indexed, "reindex() after changes")
        return starts[starts.count - 1]
    }

    public func position(of bound: ReconcileBound) -> Int {
        assert(indexed, "reindex() after changes")
        guard case .below(let id) = bound, !chunks.isEmpty else { return count }
        let c = chunkIndex(for: id)
        return starts[c] + Self.index(of: id, in: chunks[c].items)
    }

    /// The chunk holding a position (`0 ..< count`).
    private func chunk(at position: Int) -> Int {
        var low = 0
        var high = chunks.count - 1
        while low < high {
            let middle = (low + high + 1) / 2
            if starts[middle] <= position { low = middle } else { high = middle - 1 }
        }
        return low
    }

    public func item(at position: Int) -> ReconcileItem {
        assert(indexed, "reindex() after changes")
        let c = chunk(at: position)
        return chunks[c].items[position - starts[c]]
    }

    public func sum(_ positions: Range<Int>) -> ItemSum {
        assert(indexed, "reindex() after changes")
        guard !positions.isEmpty else { return ItemSum() }
        let first = chunk(at: positions.lowerBound)
        let last = chunk(at: positions.upperBound - 1)
        let head = positions.lowerBound - starts[first]
        if first == last {
            let items = chunks[first].items
            let tail = positions.upperBound - starts[first]
            return head == 0 && tail == items.count ? chunks[first].sum : Self.sum(items[head..<tail])
        }
        var sum = head == 0 ? chunks[first].sum : Self.sum(chunks[first].items[head...])
        sum.add(prefix[last].subtracting(prefix[first + 1]))
        let tail = positions.upperBound - starts[last]
        sum.add(tail == chunks[last].items.count ? chunks[last].sum : Self.sum(chunks[last].items[..<tail]))
        return sum
    }
}
