import Crypto

/// One element of a set being reconciled: a record's id and the ``RecordHash`` of its
/// canonical JSON. Items are ordered by the id's UTF-8 bytes (SQLite's `BINARY` and
/// PostgreSQL's `COLLATE "C"` order), never by Swift's `String` order, which normalises.
public struct ReconcileItem: Hashable, Sendable, Comparable {
    /// The id's UTF-8 bytes: 1 to ``ReconcileItem/maxIDLength`` of them.
    public let id: [UInt8]
    public let hash: RecordHash
    /// What the item adds to a range's sum: the first 16 bytes of SHA-256 over the hash and
    /// the id, so two ids holding equal contents still count as different items.
    public let term: RecordHash

    /// The longest id a message carries (the server's own limit, ``ObjectID/maxLength``).
    public static let maxIDLength = ObjectID.maxLength

    public init(id: [UInt8], hash: RecordHash) {
        self.id = id
        self.hash = hash
        var hasher = SHA256()
        hasher.update(data: hash.bytes)
        hasher.update(data: id)
        let digest = Array(hasher.finalize().prefix(16))
        term = RecordHash(high: digest.prefix(8).reduce(0) { $0 << 8 | UInt64($1) }, low: digest.suffix(8).reduce(0) { $0 << 8 | UInt64($1) })
    }

    public static func == (a: Self, b: Self) -> Bool { a.id == b.id && a.hash == b.hash }
    public func hash(into hasher: inout Hasher) {
        hasher.combine(id)
        hasher.combine(hash)
    }

    public init(id: String, hash: RecordHash) {
        self.init(id: Array(id.utf8), hash: hash)
    }

    /// Whether ``id`` can travel in a message: not empty, at most ``maxIDLength`` bytes.
    public var isCarriable: Bool { !id.isEmpty && id.count <= Self.maxIDLength }

    public var idText: String { String(decoding: id, as: UTF8.self) }

    public static func < (a: Self, b: Self) -> Bool { a.id.lexicographicallyPrecedes(b.id) }
}

/// The upper end of a range of ids: items whose id is below it belong to the range.
/// Ranges follow one another, so each range's lower end is the previous one's upper end
/// (the first starts below every id).
public enum ReconcileBound: Hashable, Sendable, Comparable {
    /// Below this id (bytes), which need not be the id of an item.
    case below([UInt8])
    /// Past every id.
    case end

    /// The start of the id space: below every id.
    public static let start = ReconcileBound.below([])

    /// Whether an id lies below the bound.
    public func isAbove(_ id: [UInt8]) -> Bool {
        switch self {
        case .end: true
        case .below(let bound): id.lexicographicallyPrecedes(bound)
        }
    }

    public static func < (a: Self, b: Self) -> Bool {
        switch (a, b) {
        case (.end, _): false
        case (.below, .end): true
        case (.below(let x), .below(let y)): x.lexicographicallyPrecedes(y)
        }
    }

    /// The shortest bound between two neighbouring ids (`previous < next`): above `previous`,
    /// at or below `next`. Ids with long shared prefixes cost only that prefix plus one byte.
    public static func between(_ previous: [UInt8], _ next: [UInt8]) -> Self {
        var shared = 0
        while shared < previous.count, shared < next.count, previous[shared] == next[shared] { shared += 1 }
        return .below(Array(next.prefix(shared + 1)))
    }
}

/// The fingerprint of a range: the first 16 bytes of SHA-256 over the sum (mod 2^256,
/// 32 bytes little-endian) of its items' terms (``ReconcileItem/term``: hash and id), followed by their count as a varint.
/// Order-independent, and cheap to combine: a sum of sums is the sum of the union.
public struct Fingerprint: Hashable, Sendable, CustomStringConvertible {
    public let bytes: [UInt8]

    public init(bytes: [UInt8]) {
        precondition(bytes.count == 16, "a fingerprint has 16 bytes")
        self.bytes = bytes
    }

    public var description: String { Hex.encode(bytes) }
}

/// A count and a sum modulo 2^256 of item hashes: what a ``Fingerprint`` is made from.
/// Kept as four 64-bit limbs, least significant first.
public struct ItemSum: Sendable {
    public private(set) var count = 0
    private var limbs: (UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0)

    public init() {}

    public mutating func add(_ hash: RecordHash) {
        count += 1
        var carry: Bool
        (limbs.0, carry) = limbs.0.addingReportingOverflow(hash.low)
        var (next, overflow) = limbs.1.addingReportingOverflow(hash.high)
        if carry {
            let (again, overflowAgain) = next.addingReportingOverflow(1)
            next = again
            overflow = overflow || overflowAgain
        }
        limbs.1 = next
        guard overflow else { return }
        (limbs.2, carry) = limbs.2.addingReportingOverflow(1)
        if carry { limbs.3 &+= 1 }
    }

    /// Adds every item counted in `other`: the sum of the union of two disjoint sets.
    public mutating func add(_ other: ItemSum) {
        count += other.count
        var carry = false
        var overflow: Bool
        (limbs.0, overflow) = limbs.0.addingReportingOverflow(other.limbs.0)
        carry = overflow
        (limbs.1, overflow) = limbs.1.addingReportingOverflow(other.limbs.1)
        if carry { let (v, o) = limbs.1.addingReportingOverflow(1); limbs.1 = v; overflow = overflow || o }
        carry = overflow
        (limbs.2, overflow) = limbs.2.addingReportingOverflow(other.limbs.2)
        if carry { let (v, o) = limbs.2.addingReportingOverflow(1); limbs.2 = v; overflow = overflow || o }
        carry = overflow
        limbs.3 = limbs.3 &+ other.limbs.3 &+ (carry ? 1 : 0)
    }

    /// `self - other`, for the sum of a range from two prefix sums (`other` a prefix of `self`).
    public func subtracting(_ other: ItemSum) -> ItemSum {
        var result = ItemSum()
        result.count = count - other.count
        var borrow: Bool
        var b2: Bool
        (result.limbs.0, borrow) = limbs.0.subtractingReportingOverflow(other.limbs.0)
        (result.limbs.1, b2) = limbs.1.subtractingReportingOverflow(other.limbs.1)
        if borrow { let (v, o) = result.limbs.1.subtractingReportingOverflow(1); result.limbs.1 = v; b2 = b2 || o }
        borrow = b2
        (result.limbs.2, b2) = limbs.2.subtractingReportingOverflow(other.limbs.2)
        if borrow { let (v, o) = result.limbs.2.subtractingReportingOverflow(1); result.limbs.2 = v; b2 = b2 || o }
        borrow = b2
        result.limbs.3 = limbs.3 &- other.limbs.3 &- (borrow ? 1 : 0)
        return result
    }

    public var fingerprint: Fingerprint {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(42)
        for limb in [limbs.0, limbs.1, limbs.2, limbs.3] {
            for shift in stride(from: 0, to: 64, by: 8) { bytes.append(UInt8(truncatingIfNeeded: limb >> UInt64(shift))) }
        }
        Varint.append(UInt64(count), to: &bytes)
        return Fingerprint(bytes: Array(SHA256.hash(data: bytes).prefix(16)))
    }
}

/// LEB128 unsigned varints, as reconciliation messages carry lengths and counts.
enum Varint {
    static func append(_ value: UInt64, to bytes: inout [UInt8]) {
        var value = value
        while value >= 0x80 {
            bytes.append(UInt8(truncatingIfNeeded: value) | 0x80)
            value >>= 7
        }
        bytes.append(UInt8(value))
    }

    static func size(_ value: Int) -> Int {
        var value = UInt64(value)
        var size = 1
        while value >= 0x80 { value >>= 7; size += 1 }
        return size
    }
}
