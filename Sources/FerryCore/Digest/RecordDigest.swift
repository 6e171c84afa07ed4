import Crypto

/// The fingerprint of one record: the first 128 bits of SHA-256 over its canonical
/// JSON (RFC 8785), after the normalisation every side of a sync agrees on.
///
/// Normalisation: top-level `null` fields are dropped (a SQLite column that is `NULL`
/// and a missing JSON field say the same), and the key field is written as text (an
/// integer key `5` in a CSV file and the id `"5"` on a Kinto server are one record).
public struct RecordHash: Hashable, Sendable, CustomStringConvertible {
    public let high: UInt64
    public let low: UInt64

    public init(fields: [String: JSON], keyField: String, keyText: String) {
        var normalized = fields.filter { $0.value != .null }
        normalized[keyField] = .string(keyText)
        self.init(digest: SHA256.hash(data: JSON.object(normalized).serializedBytes()))
    }

    /// The hash of canonical JSON already written: `write` hands its bytes over in order.
    public init(canonical write: ((_ bytes: [UInt8]) -> Void) -> Void) {
        var hasher = SHA256()
        write { bytes in bytes.withUnsafeBytes { hasher.update(bufferPointer: $0) } }
        self.init(digest: hasher.finalize())
    }

    private init(digest: SHA256.Digest) {
        var high: UInt64 = 0
        var low: UInt64 = 0
        for (i, byte) in digest.prefix(16).enumerated() {
            if i < 8 { high = high << 8 | UInt64(byte) } else { low = low << 8 | UInt64(byte) }
        }
        self.high = high
        self.low = low
    }

    /// A hash from its two halves (as carried in a reconciliation message).
    public init(high: UInt64, low: UInt64) {
        self.high = high
        self.low = low
    }

    /// The 16 bytes, most significant first (the first 16 bytes of the SHA-256).
    public var bytes: [UInt8] {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(16)
        for half in [high, low] {
            for shift in stride(from: 56, through: 0, by: -8) { bytes.append(UInt8(truncatingIfNeeded: half >> UInt64(shift))) }
        }
        return bytes
    }

    public var description: String { hex(high) + hex(low) }
}

/// An order-independent digest of a set of records: their count and the sum of their
/// hashes (modulo 2^64 per half), so two sides can be compared without sorting either.
public struct CollectionDigest: Hashable, Sendable, CustomStringConvertible {
    public private(set) var count = 0
    private var high: UInt64 = 0
    private var low: UInt64 = 0

    public init() {}

    public mutating func add(_ hash: RecordHash) {
        count += 1
        high = high &+ hash.high
        low = low &+ hash.low
    }

    /// `count:hex`, e.g. `3:5f1c…`.
    public var description: String { "\(count):" + hex(high) + hex(low) }
    /// The hash part alone.
    public var hashText: String { hex(high) + hex(low) }
}

private func hex(_ value: UInt64) -> String {
    let text = String(value, radix: 16)
    return String(repeating: "0", count: 16 - text.count) + text
}
