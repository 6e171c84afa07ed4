import Foundation

/// Identifiers of buckets, collections, groups and records.
public enum ObjectID {
    /// The longest id accepted.
    public static let maxLength = 256

    /// Kinto's id rule: a letter or digit, then letters, digits, `_` and `-`.
    public static func isValid(_ id: String) -> Bool {
        guard !id.isEmpty, id.utf8.count <= maxLength else { return false }
        var first = true
        for byte in id.utf8 {
            switch byte {
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"):
                break
            case UInt8(ascii: "_"), UInt8(ascii: "-"):
                if first { return false }
            default:
                return false
            }
            first = false
        }
        return true
    }

    /// A new random id (a lowercase UUID, as Kinto generates).
    public static func generate() -> String {
        UUID().uuidString.lowercased()
    }
}

/// Millisecond timestamps.
public enum Timestamp {
    /// Milliseconds since 1970 now.
    public static func now() -> Int64 {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return Int64(ts.tv_sec) * 1000 + Int64(ts.tv_nsec) / 1_000_000
    }

    /// The largest timestamp a client may ask for (`data.last_modified`, `?last_modified=` of a
    /// delete): 2^53 - 1, the largest integer a JavaScript client reads exactly, some 285,000
    /// years from now. Far below `Int64.max`, so the timestamps after it never overflow.
    public static let maxRequested: Int64 = 9_007_199_254_740_991

    /// The next timestamp after `previous`: now, or `previous + 1` when the clock has not moved past it.
    /// Never traps: at `Int64.max` (a store written before ``maxRequested`` existed) it stays there.
    public static func next(after previous: Int64, now: Int64 = Timestamp.now()) -> Int64 {
        max(now, previous < .max ? previous + 1 : .max)
    }

    /// A timestamp a client asks for, checked against ``maxRequested``: nil when it is too large.
    public static func requested(_ value: Int64) -> Int64? {
        value <= maxRequested ? value : nil
    }

    /// An RFC 7231 HTTP date for a millisecond timestamp. Written as bytes: every response that
    /// carries a timestamp has one (each sub-response of a `/batch` too).
    public static func httpDate(_ milliseconds: Int64) -> String {
        var time = time_t(milliseconds / 1000)
        var parts = tm()
        gmtime_r(&time, &parts)
        let days = "SunMonTueWedThuFriSat".utf8
        let months = "JanFebMarAprMayJunJulAugSepOctNovDec".utf8
        var out: [UInt8] = []
        out.reserveCapacity(32)
        func name(_ names: String.UTF8View, _ index: Int32) {
            let start = names.index(names.startIndex, offsetBy: Int(index) * 3)
            out.append(contentsOf: names[start..<names.index(start, offsetBy: 3)])
        }
        func two(_ value: Int32) {
            out.append(UInt8(ascii: "0") + UInt8(value / 10))
            out.append(UInt8(ascii: "0") + UInt8(value % 10))
        }
        name(days, parts.tm_wday)
        out.append(contentsOf: ", ".utf8)
        two(parts.tm_mday)
        out.append(UInt8(ascii: " "))
        name(months, parts.tm_mon)
        out.append(UInt8(ascii: " "))
        out.append(contentsOf: String(parts.tm_year + 1900).utf8)
        out.append(UInt8(ascii: " "))
        two(parts.tm_hour)
        out.append(UInt8(ascii: ":"))
        two(parts.tm_min)
        out.append(UInt8(ascii: ":"))
        two(parts.tm_sec)
        out.append(contentsOf: " GMT".utf8)
        return String(decoding: out, as: UTF8.self)
    }
}
