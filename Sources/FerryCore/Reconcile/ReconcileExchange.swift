/// The initiator's side of a whole exchange over a transport (an HTTP endpoint, or a
/// responder in the same process): decodes each reply with a size limit, counts rounds
/// and bytes, and gives up after ``maxRounds`` so a responder that never converges
/// cannot keep it busy.
public struct ReconcileExchange<Items: ReconcileItems> {
    public let reconciler: Reconciler<Items>
    /// The most round trips before the exchange is abandoned with ``ReconcileError/Code/tooManyRounds``.
    public var maxRounds = 1000
    /// The most bytes accepted in a reply.
    public var replyLimit = 4 << 20

    public init(_ reconciler: Reconciler<Items>) {
        self.reconciler = reconciler
    }

    public typealias Outcome = ReconcileOutcome

    /// Runs the exchange to its end.
    /// - Parameter send: delivers one message to the responder and returns its reply.
    public func run(_ send: ([UInt8]) async throws -> [UInt8]) async throws -> Outcome {
        var outcome = Outcome()
        var message: ReconcileMessage? = reconciler.initiate()
        while let current = message {
            guard outcome.rounds < maxRounds else {
                throw ReconcileError(.tooManyRounds, "reconciliation did not end within \(maxRounds) round trips")
            }
            let bytes = current.encoded()
            outcome.rounds += 1
            outcome.bytesSent += bytes.count
            let reply = try await send(bytes)
            outcome.bytesReceived += reply.count
            message = reconciler.proceed(after: try ReconcileMessage(decoding: reply, limit: replyLimit), differences: &outcome.differences)
        }
        return outcome
    }
}

/// What an exchange found (``ReconcileDifferences``, from the initiator's side or, for a
/// ``ReconcileRelay``, from side A's) and what it cost: round trips and bytes each way.
public struct ReconcileOutcome: Hashable, Sendable {
    public var differences = ReconcileDifferences()
    public var rounds = 0
    public var bytesSent = 0
    public var bytesReceived = 0

    public init() {}
}
