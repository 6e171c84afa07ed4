import FerryCore
import FerryStore

/// A collection's own tombstone retention, `data.tombstones` of its metadata:
/// `{"max_age": "30d", "max_count": 10000}`. A rule given replaces the server's
/// (`tombstone_max_age`, `tombstone_max_count`), `null` turns it off for the collection, and a
/// rule left out keeps the server's.
struct TombstoneRules: Sendable, Equatable {
    /// The largest `max_count` (a billion tombstones).
    static let maxCount = 1_000_000_000
    /// The longest `max_age`: a century, in seconds.
    static let maxAge = 100 * 366 * 86_400
    static let ageExpected = "a duration of 1 s to 100 years such as 90d, 12h or a number of seconds"

    /// Seconds; nil: the server's; `.some(nil)`: no age limit.
    var maxAge: Int?? = nil
    /// nil: the server's; `.some(nil)`: no count limit.
    var maxCount: Int?? = nil

    init() {}

    /// A `max_age` value in whole seconds: a duration text (`90d`) or a number of seconds.
    static func age(_ value: JSON) -> Int? {
        let seconds: Double?
        switch value {
        case .int(let n): seconds = Double(n)
        case .double(let d): seconds = d
        case .string(let text): seconds = DurationText.seconds(text)
        default: seconds = nil
        }
        guard let seconds, seconds >= 1, seconds <= Double(maxAge) else { return nil }
        return Int(seconds)
    }

    /// Reads and checks `data.tombstones` (400 when malformed).
    init(_ value: JSON) throws(KintoError) {
        guard case .object(let members) = value else {
            throw .invalidParameters(location: "body", name: "data.tombstones",
                                     description: "data.tombstones must be an object such as {\"max_age\": \"30d\", \"max_count\": 10000}")
        }
        for name in members.keys where name != "max_age" && name != "max_count" {
            throw .invalidParameters(location: "body", name: "data.tombstones.\(name)",
                                     description: "data.tombstones takes max_age and max_count, not \(name)")
        }
        if let age = members["max_age"] {
            if age == .null {
                maxAge = .some(nil)
            } else if let seconds = Self.age(age) {
                maxAge = seconds
            } else {
                throw .invalidParameters(location: "body", name: "data.tombstones.max_age",
                                         description: "data.tombstones.max_age must be \(Self.ageExpected), or null for no age limit")
            }
        }
        if let count = members["max_count"] {
            if count == .null {
                maxCount = .some(nil)
            } else if let n = count.intValue, n >= 0, n <= Int64(Self.maxCount) {
                maxCount = Int(n)
            } else {
                throw .invalidParameters(location: "body", name: "data.tombstones.max_count",
                                         description: "data.tombstones.max_count must be a whole number from 0 to \(Self.maxCount), or null for no count limit")
            }
        }
    }

    /// The retention of a collection whose server keeps `server`.
    func applied(to server: TombstoneRetention) -> TombstoneRetention {
        var result = server
        if let maxAge { result.maxAge = maxAge.map { Int64($0) * 1000 } }
        if let maxCount { result.maxCount = maxCount }
        return result
    }
}
