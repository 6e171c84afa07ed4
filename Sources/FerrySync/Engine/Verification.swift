public import FerryCore

/// Both sides compared: counts, order-independent digests, and the keys that differ.
public struct Verification: Sendable, Equatable {
    public var sourceCount = 0
    public var targetCount = 0
    public var sourceDigest = ""
    public var targetDigest = ""
    /// Keys only the source has.
    public var missingInTarget: [String] = []
    /// Keys only the target has.
    public var extraInTarget: [String] = []
    /// Keys on both sides with different contents.
    public var different: [String] = []
    /// How many keys differ in all (the lists stop at the limit).
    public var differingCount = 0
    /// Set when a server side answered by reconciliation instead of being read in full.
    public var reconciliation: ReconciliationCost? = nil
    /// The most records the comparison held in memory at once (two batches when both sides
    /// read in key order, a whole side otherwise), for tests.
    var peakRecordsHeld = 0

    public init() {}

    /// Fills in the counts and digests of both sides and how many keys differ.
    mutating func settle(source: CollectionDigest, target: CollectionDigest, differing: Int) {
        sourceCount = source.count
        targetCount = target.count
        sourceDigest = source.description
        targetDigest = target.description
        differingCount = differing
    }

    public var equal: Bool { sourceCount == targetCount && sourceDigest == targetDigest && differingCount == 0 }

    public var json: JSON {
        var out: JSON = [
            "equal": .bool(equal), "sourceCount": .int(Int64(sourceCount)), "targetCount": .int(Int64(targetCount)),
            "sourceDigest": .string(sourceDigest), "targetDigest": .string(targetDigest),
            "differing": .int(Int64(differingCount)),
            "missingInTarget": .array(missingInTarget.map(JSON.string)), "extraInTarget": .array(extraInTarget.map(JSON.string)),
            "different": .array(different.map(JSON.string)),
        ]
        if let reconciliation { out["reconciliation"] = reconciliation.json }
        return out
    }
}

/// What a reconciliation with a server cost: round trips and bytes each way.
public struct ReconciliationCost: Sendable, Equatable {
    public var rounds = 0
    public var bytesSent = 0
    public var bytesReceived = 0

    init(_ outcome: ReconcileOutcome) {
        rounds = outcome.rounds
        bytesSent = outcome.bytesSent
        bytesReceived = outcome.bytesReceived
    }

    public var json: JSON {
        ["rounds": .int(Int64(rounds)), "bytesSent": .int(Int64(bytesSent)), "bytesReceived": .int(Int64(bytesReceived))]
    }
}
