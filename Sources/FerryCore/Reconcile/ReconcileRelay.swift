/// Reconciliation between two responders (two servers that each answer messages statelessly,
/// ``Reconciler/respond(to:)``), driven by a third party that holds no items: each side's
/// reply is forwarded to the other, so the two compare fingerprints with each other and
/// neither is read. Where both sides have listed their items for the same range (one side's
/// list was sent, the other answered it with its own), the relay compares the two lists:
/// those are the differences, and the range goes on as a skip. The exchange ends when a
/// message to forward has nothing but skips.
///
/// It starts by asking side A with a fingerprint that matches no set (16 zero bytes), so A
/// answers with its own fingerprints (or its list), and each later round is one request to one
/// side. Termination is the protocol's: each range answered by a list on one side is either
/// matched (a skip) or answered by the other's list (compared here) or split on the other side
/// into parts of at most 1/16 of its items there; so ranges shrink until both sides list them.
public struct ReconcileRelay: Sendable {
    public enum Side: Hashable, Sendable {
        case a, b
        var other: Side { self == .a ? .b : .a }
    }

    /// The most round trips (requests to either side) before the exchange is abandoned.
    public var maxRounds = 2000
    /// The most bytes accepted in a reply.
    public var replyLimit = 4 << 20

    public init() {}

    /// What the relay found and what it cost: ``ReconcileDifferences/onlyHere`` holds the items
    /// only A has, ``ReconcileDifferences/onlyThere`` those only B has, and
    /// ``ReconcileDifferences/changed`` B's items where both hold an id with different contents.
    public typealias Outcome = ReconcileOutcome

    /// Runs the exchange to its end.
    /// - Parameter send: delivers a message to one side and returns its reply.
    public func run(_ send: (Side, [UInt8]) async throws -> [UInt8]) async throws -> Outcome {
        var outcome = Outcome()
        var side = Side.a
        var message = ReconcileMessage(ranges: [.init(upper: .end, payload: .fingerprint(Fingerprint(bytes: Array(repeating: 0, count: 16))))])
        while true {
            guard outcome.rounds < maxRounds else {
                throw ReconcileError(.tooManyRounds, "reconciliation did not end within \(maxRounds) round trips")
            }
            let bytes = message.encoded()
            outcome.rounds += 1
            outcome.bytesSent += bytes.count
            let replyBytes = try await send(side, bytes)
            outcome.bytesReceived += replyBytes.count
            let reply = try ReconcileMessage(decoding: replyBytes, limit: replyLimit)
            let next = Self.forward(reply, answering: message, from: side, differences: &outcome.differences)
            if next.isFinal { return outcome }
            message = next
            side = side.other
        }
    }

    /// The message to send the other side: `reply` (from `side`, to `sent`) with every list
    /// that answers a list compared and skipped.
    static func forward(_ reply: ReconcileMessage, answering sent: ReconcileMessage, from side: Side, differences: inout ReconcileDifferences) -> ReconcileMessage {
        struct Span: Hashable { var lower: ReconcileBound; var upper: ReconcileBound }
        var sentLists: [Span: [ReconcileItem]] = [:]
        var lower = ReconcileBound.start
        for range in sent.ranges {
            if case .items(let items) = range.payload { sentLists[Span(lower: lower, upper: range.upper)] = items }
            lower = range.upper
        }
        var ranges: [ReconcileMessage.Range] = []
        lower = .start
        for range in reply.ranges {
            if case .items(let theirs) = range.payload, let mine = sentLists[Span(lower: lower, upper: range.upper)] {
                // The other side's list came first: `mine` is the other side's, `theirs` this side's.
                let (a, b) = side == .a ? (theirs, mine) : (mine, theirs)
                Self.compare(a, b, into: &differences)
                ranges.append(.init(upper: range.upper, payload: .skip))
            } else {
                ranges.append(range)
            }
            lower = range.upper
        }
        return ReconcileMessage(ranges: ranges)
    }

    /// Both sides' complete lists for one range (each sorted by id).
    static func compare(_ a: [ReconcileItem], _ b: [ReconcileItem], into differences: inout ReconcileDifferences) {
        var i = 0
        var j = 0
        while i < a.count || j < b.count {
            if i < a.count, j < b.count, a[i].id == b[j].id {
                if a[i].hash != b[j].hash { differences.changed.append(b[j]) }
                i += 1
                j += 1
            } else if j == b.count || (i < a.count && a[i] < b[j]) {
                differences.onlyHere.append(a[i])
                i += 1
            } else {
                differences.onlyThere.append(b[j])
                j += 1
            }
        }
    }
}
