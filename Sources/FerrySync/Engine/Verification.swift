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

    public init() {}

    public var equal: Bool { sourceCount == targetCount && sourceDigest == targetDigest && differingCount == 0 }

    public var json: JSON {
        [
            "equal": .bool(equal), "sourceCount": .int(Int64(sourceCount)), "targetCount": .int(Int64(targetCount)),
            "sourceDigest": .string(sourceDigest), "targetDigest": .string(targetDigest),
            "differing": .int(Int64(differingCount)),
            "missingInTarget": .array(missingInTarget.map(JSON.string)), "extraInTarget": .array(extraInTarget.map(JSON.string)),
            "different": .array(different.map(JSON.string)),
        ]
    }
}
