/// One message of range-based set reconciliation: consecutive ranges of ids, each
/// answered as a skip (nothing to do), a fingerprint (compare yours), or the full list
/// of the sender's items in it. Ranges not covered at the end are skipped.
///
/// Wire format (binary, `application/vnd.ferry.reconcile`):
/// ```
/// message := 0xF1 range*
/// range   := bound mode payload
/// bound   := varint(0)                  -- end of the id space
///          | varint(n + 1) byte{n}      -- below these id bytes (n ≤ 256)
/// mode    := 0 (skip) | 1 (fingerprint: 16 bytes)
///          | 2 (items: varint(count) then count × (varint(idLength) id hash[16]))
/// ```
public struct ReconcileMessage: Hashable, Sendable {
    public enum Payload: Hashable, Sendable {
        case skip
        case fingerprint(Fingerprint)
        /// Every item the sender holds in the range, sorted by id.
        case items([ReconcileItem])
    }

    public struct Range: Hashable, Sendable {
        public var upper: ReconcileBound
        public var payload: Payload

        public init(upper: ReconcileBound, payload: Payload) {
            self.upper = upper
            self.payload = payload
        }

        /// The bytes this range takes in a message.
        public var encodedSize: Int {
            var size = 1
            switch upper {
            case .end: size += 1
            case .below(let id): size += Varint.size(id.count + 1) + id.count
            }
            switch payload {
            case .skip: break
            case .fingerprint: size += 16
            case .items(let items):
                size += Varint.size(items.count)
                for item in items { size += Varint.size(item.id.count) + item.id.count + 16 }
            }
            return size
        }
    }

    public static let version: UInt8 = 0xF1
    public static let mediaType = "application/vnd.ferry.reconcile"

    public var ranges: [Range]

    public init(ranges: [Range] = []) {
        self.ranges = ranges
    }

    /// Whether the message asks nothing more: no range but skips. The exchange is over.
    public var isFinal: Bool {
        ranges.allSatisfy { if case .skip = $0.payload { true } else { false } }
    }

    public var encodedSize: Int { ranges.reduce(1) { $0 + $1.encodedSize } }

    public func encoded() -> [UInt8] {
        var bytes: [UInt8] = [Self.version]
        bytes.reserveCapacity(encodedSize)
        for range in ranges {
            switch range.upper {
            case .end: bytes.append(0)
            case .below(let id):
                Varint.append(UInt64(id.count + 1), to: &bytes)
                bytes.append(contentsOf: id)
            }
            switch range.payload {
            case .skip: bytes.append(0)
            case .fingerprint(let fingerprint):
                bytes.append(1)
                bytes.append(contentsOf: fingerprint.bytes)
            case .items(let items):
                bytes.append(2)
                Varint.append(UInt64(items.count), to: &bytes)
                for item in items {
                    Varint.append(UInt64(item.id.count), to: &bytes)
                    bytes.append(contentsOf: item.id)
                    bytes.append(contentsOf: item.hash.bytes)
                }
            }
        }
        return bytes
    }

    /// Reads a message, checking everything a hostile sender could get wrong: the version,
    /// truncation, lengths, bounds that do not increase, items out of order or outside
    /// their range. Work and memory are linear in the bytes given.
    /// - Parameter limit: the most bytes accepted.
    public init(decoding bytes: [UInt8], limit: Int) throws(ReconcileError) {
        guard bytes.count <= limit else {
            throw ReconcileError(.tooLarge, "the message has \(bytes.count) bytes; the limit is \(limit)")
        }
        var reader = Reader(bytes: bytes)
        guard try reader.byte("the version byte") == Self.version else {
            throw .malformed("it does not start with the version byte 0xF1 (send \(Self.mediaType) bodies)")
        }
        var ranges: [Range] = []
        var lower = ReconcileBound.start
        while !reader.atEnd {
            let index = ranges.count
            if lower == .end { throw .malformed("range \(index) follows a range that ends past every id") }
            let upper: ReconcileBound
            let length = try reader.varint("the bound of range \(index)")
            if length == 0 {
                upper = .end
            } else {
                guard length - 1 <= UInt64(ReconcileItem.maxIDLength) else {
                    throw .malformed("the bound of range \(index) is \(length - 1) bytes long; ids have at most \(ReconcileItem.maxIDLength)")
                }
                upper = .below(try reader.bytes(Int(length - 1), "the bound of range \(index)"))
            }
            guard lower < upper else {
                throw ReconcileError(.outOfOrder, "range \(index) does not end above the range before it: bounds must increase")
            }
            switch try reader.byte("the mode of range \(index)") {
            case 0:
                ranges.append(Range(upper: upper, payload: .skip))
            case 1:
                ranges.append(Range(upper: upper, payload: .fingerprint(Fingerprint(bytes: try reader.bytes(16, "the fingerprint of range \(index)")))))
            case 2:
                let count = try reader.varint("the item count of range \(index)")
                // Each item takes at least 18 bytes: no allocation beyond what the bytes can hold.
                guard count <= UInt64(reader.remaining / 18) else {
                    throw .malformed("range \(index) announces \(count) items, more than the message holds")
                }
                var items: [ReconcileItem] = []
                items.reserveCapacity(Int(count))
                for n in 0..<Int(count) {
                    let idLength = try reader.varint("item \(n) of range \(index)")
                    guard idLength >= 1, idLength <= UInt64(ReconcileItem.maxIDLength) else {
                        throw .malformed("item \(n) of range \(index) has an id of \(idLength) bytes; ids have 1 to \(ReconcileItem.maxIDLength)")
                    }
                    let id = try reader.bytes(Int(idLength), "item \(n) of range \(index)")
                    let hash = try reader.bytes(16, "the hash of item \(n) of range \(index)")
                    let item = ReconcileItem(id: id, hash: RecordHash(high: hash.prefix(8).reduce(0) { $0 << 8 | UInt64($1) },
                                                                        low: hash.suffix(8).reduce(0) { $0 << 8 | UInt64($1) }))
                    if let previous = items.last, !(previous < item) {
                        throw ReconcileError(.outOfOrder, "item \(n) of range \(index) is not above the item before it: items must be sorted by id, each once")
                    }
                    if case .below(let bytes) = lower, id.lexicographicallyPrecedes(bytes) {
                        throw ReconcileError(.outOfOrder, "item \(n) of range \(index) lies below its range")
                    }
                    if !upper.isAbove(id) {
                        throw ReconcileError(.outOfOrder, "item \(n) of range \(index) lies above its range")
                    }
                    items.append(item)
                }
                ranges.append(Range(upper: upper, payload: .items(items)))
            case let mode:
                throw .malformed("range \(index) has the unknown mode \(mode) (0 skip, 1 fingerprint, 2 items)")
            }
            lower = upper
        }
        self.ranges = ranges
    }

    private struct Reader {
        let bytes: [UInt8]
        var offset = 0

        var atEnd: Bool { offset == bytes.count }
        var remaining: Int { bytes.count - offset }

        mutating func byte(_ what: String) throws(ReconcileError) -> UInt8 {
            guard offset < bytes.count else { throw .malformed("it ends inside \(what)") }
            defer { offset += 1 }
            return bytes[offset]
        }

        mutating func bytes(_ count: Int, _ what: String) throws(ReconcileError) -> [UInt8] {
            guard count <= remaining else { throw .malformed("it ends inside \(what)") }
            defer { offset += count }
            return Array(bytes[offset..<offset + count])
        }

        mutating func varint(_ what: String) throws(ReconcileError) -> UInt64 {
            var value: UInt64 = 0
            for shift in stride(from: 0, to: 63, by: 7) {
                let byte = try byte(what)
                value |= UInt64(byte & 0x7F) << UInt64(shift)
                if byte & 0x80 == 0 { return value }
            }
            throw .malformed("a number in \(what) is too long")
        }
    }
}

/// Why a reconciliation message was refused; the message says what and where.
public struct ReconcileError: Error, Hashable, Sendable, CustomStringConvertible {
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Base: String, Hashable, Sendable { case malformed, tooLarge = "too-large", outOfOrder = "out-of-order", tooManyRounds = "too-many-rounds" }
        private let base: Base
        /// Not a message of this protocol: wrong version, truncated, bad lengths or modes.
        public static let malformed = Code(base: .malformed)
        /// More bytes than the limit.
        public static let tooLarge = Code(base: .tooLarge)
        /// Bounds that do not increase, or items unsorted or outside their range.
        public static let outOfOrder = Code(base: .outOfOrder)
        /// An exchange that did not end within the round limit.
        public static let tooManyRounds = Code(base: .tooManyRounds)
        public var description: String { base.rawValue }
    }

    public let code: Code
    public let message: String

    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    static func malformed(_ why: String) -> Self { Self(.malformed, "not a reconciliation message: \(why)") }

    public var description: String { message }
}
