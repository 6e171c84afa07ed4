import Foundation
import NIOConcurrencyHelpers

/// Per-principal request rate limit: a token bucket of `requests` refilled over `seconds`.
public final class RateLimiter: Sendable {
    public let requests: Int
    public let seconds: Double
    private struct Bucket { var tokens: Double; var updated: Double }
    private let buckets = NIOLockedValueBox<[String: Bucket]>([:])

    public init(requests: Int, seconds: Double) {
        self.requests = requests
        self.seconds = seconds
    }

    /// Takes one request from `key`'s bucket: nil when allowed, else the seconds until one is.
    public func admit(_ key: String, now: Double? = nil) -> Int? {
        take(key, now: now, taking: true)
    }

    /// The seconds until `key` has a request again (nil: it has one now), taking nothing.
    public func wait(_ key: String, now: Double? = nil) -> Int? {
        take(key, now: now, taking: false)
    }

    private func take(_ key: String, now: Double?, taking: Bool) -> Int? {
        let now = now ?? ProcessInfo.processInfo.systemUptime
        let rate = Double(requests) / seconds
        return buckets.withLockedValue { buckets in
            if buckets.count > 100_000 {
                // Forget the idle ones (a full bucket is the same as no bucket).
                buckets = buckets.filter { now - $0.value.updated < seconds }
            }
            var bucket = buckets[key] ?? Bucket(tokens: Double(requests), updated: now)
            bucket.tokens = min(Double(requests), bucket.tokens + (now - bucket.updated) * rate)
            bucket.updated = now
            defer { buckets[key] = bucket }
            if bucket.tokens >= 1 {
                if taking { bucket.tokens -= 1 }
                return nil
            }
            return max(1, Int(((1 - bucket.tokens) / rate).rounded(.up)))
        }
    }
}

/// What protects the server from clients that send too much or too slowly.
public struct RequestLimits: Sendable {
    /// Largest request body (413 above).
    public var maxBodySize = 1 << 20
    /// Seconds a client has to send its whole body (408 after).
    public var bodyTimeout: Double = 30
    /// Seconds a request has, once its body arrived, to be answered; past it the answer is a 503
    /// and its storage work is stopped and rolled back (``StorageDeadline``). A long-poll's
    /// `_wait` comes on top. nil: no limit.
    public var requestTimeout: Double? = nil
    public var rateLimiter: RateLimiter? = nil
    /// Requests in flight above which answers carry `Backoff: busyBackoff` (ask clients to slow down).
    public var busyThreshold = 256
    public var busyBackoff = 10
    /// Most event streams open at once (503 above).
    public var maxStreams = 1000
    /// Seconds between heartbeats (`: heartbeat` comments) on an idle event stream.
    public var streamHeartbeat: Double = 15

    public init() {}
}

/// Counts requests in flight.
final class InFlight: Sendable {
    private let count = NIOLockedValueBox(0)
    func enter() -> Int { count.withLockedValue { $0 += 1; return $0 } }
    func leave() { count.withLockedValue { $0 -= 1 } }
}
