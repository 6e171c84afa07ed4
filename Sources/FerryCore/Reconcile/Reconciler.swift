/// Range-based set reconciliation (Meyer, "Range-Based Set Reconciliation", arXiv
/// 2212.13567; the design of the Negentropy protocol), as pure functions over one side's
/// sorted items: no I/O, no state between messages.
///
/// The initiator sends the fingerprint of everything. Each side answers every range of
/// the other's message: a matching fingerprint becomes a skip; a mismatching one is sent
/// back as the full list of its own items when there are at most ``Configuration/listThreshold``
/// of them, and otherwise split into ``Configuration/branching`` ranges of equal item counts,
/// each with its fingerprint. A list received by the responder is treated as a fingerprint
/// (equal lists are skipped); a list received by the initiator is compared item by item:
/// those are the differences, and the range is done. The exchange ends when the initiator
/// has nothing but skips to send.
///
/// Termination: a range only ever shrinks into sub-ranges, and the side that splits a range
/// leaves at most 1/16 of its items in each part, so after O(log n) rounds each side's part
/// is small enough to be listed. When a message would pass ``Configuration/frameLimit``,
/// the ranges not yet answered are sent as one fingerprint over their span and answered in
/// a later round; each message answers at least one range, so the exchange still ends.
public struct Reconciler<Items: ReconcileItems> {
    public struct Configuration: Hashable, Sendable {
        /// Into how many ranges a mismatching range is split.
        public var branching = 16
        /// A mismatching range with at most this many of the sender's items is sent as a list.
        public var listThreshold = 32
        /// The most bytes in a message this side writes (raised to ``minimumFrameLimit`` if below).
        public var frameLimit = 131_072

        public init(branching: Int = 16, listThreshold: Int = 32, frameLimit: Int = 131_072) {
            precondition(branching >= 2 && listThreshold >= branching, "split at least 2 ways, list at least as many items as a split makes ranges")
            self.branching = branching
            self.listThreshold = listThreshold
            self.frameLimit = frameLimit
        }

        /// The smallest frame that still answers one range of any message with ids of up to
        /// `maxIDLength` bytes: a skip, the largest answer to one range, and the fingerprint of the rest.
        public func minimumFrameLimit(maxIDLength: Int = ReconcileItem.maxIDLength) -> Int {
            let rangeOverhead = Varint.size(maxIDLength + 1) + maxIDLength + 1
            let split = branching * (rangeOverhead + 16)
            let list = rangeOverhead + Varint.size(listThreshold) + listThreshold * (Varint.size(maxIDLength) + maxIDLength + 16)
            return 1 + rangeOverhead + max(split, list) + rangeOverhead + 16
        }

        /// ``frameLimit``, raised to the minimum if needed.
        public var effectiveFrameLimit: Int { max(frameLimit, minimumFrameLimit()) }
    }

    public let items: Items
    public let configuration: Configuration

    public init(_ items: Items, configuration: Configuration = Configuration()) {
        self.items = items
        self.configuration = configuration
    }

    /// The initiator's first message: one fingerprint over every id.
    public func initiate() -> ReconcileMessage {
        ReconcileMessage(ranges: [.init(upper: .end, payload: .fingerprint(items.sum(0..<items.count).fingerprint))])
    }

    /// The responder's answer to one message. Stateless: the same message always gets the same answer.
    public func respond(to message: ReconcileMessage) -> ReconcileMessage {
        var ignored = ReconcileDifferences()
        return answer(message, initiator: false, differences: &ignored)
    }

    /// The initiator's next message after a reply, adding what the reply revealed to `differences`.
    /// - Returns: nil when the exchange is over (``differences`` is then complete).
    public func proceed(after reply: ReconcileMessage, differences: inout ReconcileDifferences) -> ReconcileMessage? {
        let next = answer(reply, initiator: true, differences: &differences)
        return next.isFinal ? nil : next
    }

    private func answer(_ message: ReconcileMessage, initiator: Bool, differences: inout ReconcileDifferences) -> ReconcileMessage {
        let limit = configuration.effectiveFrameLimit
        let reserve = ReconcileMessage.Range(upper: .below(Array(repeating: 0, count: ReconcileItem.maxIDLength)),
                                             payload: .fingerprint(Fingerprint(bytes: Array(repeating: 0, count: 16)))).encodedSize
        var out = Output()
        var lowerPosition = 0
        for range in message.ranges {
            let upperPosition = max(lowerPosition, items.position(of: range.upper))
            let own = lowerPosition..<upperPosition
            var answer: [ReconcileMessage.Range]
            switch range.payload {
            case .skip:
                answer = [.init(upper: range.upper, payload: .skip)]
            case .fingerprint(let theirs):
                answer = items.sum(own).fingerprint == theirs ? [.init(upper: range.upper, payload: .skip)] : split(own, upper: range.upper)
            case .items(let theirs) where initiator:
                compare(theirs, with: own, into: &differences)
                answer = [.init(upper: range.upper, payload: .skip)]
            case .items(let theirs):
                var sum = ItemSum()
                for item in theirs { sum.add(item.term) }
                answer = sum.fingerprint == items.sum(own).fingerprint ? [.init(upper: range.upper, payload: .skip)] : split(own, upper: range.upper)
            }
            let size = answer.reduce(0) { $0 + $1.encodedSize }
            if out.answered, out.size + size + reserve > limit, let last = message.ranges.last?.upper {
                // Out of room: the rest is compared again, as one range, in a later round.
                let restEnd = max(lowerPosition, items.position(of: last))
                out.append(.init(upper: last, payload: .fingerprint(items.sum(lowerPosition..<restEnd).fingerprint)))
                break
            }
            answer.forEach { out.append($0) }
            lowerPosition = upperPosition
        }
        return out.message
    }

    /// A mismatching range, answered with this side's items: a list when few, else a split.
    private func split(_ own: Range<Int>, upper: ReconcileBound) -> [ReconcileMessage.Range] {
        let count = own.count
        if count <= configuration.listThreshold {
            return [.init(upper: upper, payload: .items(own.map(items.item(at:))))]
        }
        let parts = configuration.branching
        var ranges: [ReconcileMessage.Range] = []
        ranges.reserveCapacity(parts)
        var start = own.lowerBound
        for part in 1...parts {
            let end = own.lowerBound + count * part / parts
            let bound = part == parts ? upper : .between(items.item(at: end - 1).id, items.item(at: end).id)
            ranges.append(.init(upper: bound, payload: .fingerprint(items.sum(start..<end).fingerprint)))
            start = end
        }
        return ranges
    }

    /// The other side's complete list for a range against this side's items there.
    private func compare(_ theirs: [ReconcileItem], with own: Range<Int>, into differences: inout ReconcileDifferences) {
        var position = own.lowerBound
        var index = 0
        while position < own.upperBound || index < theirs.count {
            let mine = position < own.upperBound ? items.item(at: position) : nil
            let other = index < theirs.count ? theirs[index] : nil
            switch (mine, other) {
            case let (mine?, other?) where mine.id == other.id:
                if mine.hash != other.hash { differences.changed.append(other) }
                position += 1
                index += 1
            case let (mine?, other?) where mine < other:
                differences.onlyHere.append(mine)
                position += 1
            case let (mine?, nil):
                differences.onlyHere.append(mine)
                position += 1
            case let (_, other?):
                differences.onlyThere.append(other)
                index += 1
            case (nil, nil):
                return
            }
        }
    }

    /// A message being written: consecutive skips merge, trailing skips are dropped.
    private struct Output {
        var ranges: [ReconcileMessage.Range] = []
        var size = 1
        /// Whether a range other than a skip was written: this message already makes progress.
        var answered = false

        mutating func append(_ range: ReconcileMessage.Range) {
            if case .skip = range.payload {
                // A skip after a skip: one skip up to the later bound.
                if case .skip? = ranges.last?.payload { size -= ranges.removeLast().encodedSize }
            } else {
                answered = true
            }
            ranges.append(range)
            size += range.encodedSize
        }

        var message: ReconcileMessage {
            var ranges = ranges
            if case .skip? = ranges.last?.payload { ranges.removeLast() }
            return ReconcileMessage(ranges: ranges)
        }
    }
}

/// What an exchange revealed, from the initiator's side.
public struct ReconcileDifferences: Hashable, Sendable {
    /// Items only the initiator holds.
    public var onlyHere: [ReconcileItem] = []
    /// Items only the responder holds (with the responder's hashes).
    public var onlyThere: [ReconcileItem] = []
    /// Ids both hold with different hashes, as the responder's items.
    public var changed: [ReconcileItem] = []

    public init() {}

    public var count: Int { onlyHere.count + onlyThere.count + changed.count }
}
