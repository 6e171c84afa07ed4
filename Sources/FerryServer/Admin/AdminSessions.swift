import FerryCore
import Foundation

/// The signed-in sessions of `/admin`, in memory (a restart signs everyone out).
///
/// A session keeps the `Authorization` value it signed in with, so every page re-authenticates
/// through the API's own authenticator (a changed password or a deleted account ends it); it
/// is never rendered. Each session has its own CSRF token, which every form carries.
final class AdminSessions: @unchecked Sendable {
    struct Session: Sendable {
        let id: String
        let authorization: String
        let user: String
        /// The user's principal (`account:ada`), shown beside the name.
        let principal: String
        let csrf: String
        let expires: Date
    }

    /// How long a session lasts after sign-in.
    let lifetime: TimeInterval
    /// Most sessions held; the oldest go first.
    let capacity: Int
    private let lock = NSLock()
    private var sessions: [String: Session] = [:]

    init(lifetime: TimeInterval = 8 * 3600, capacity: Int = 10_000) {
        self.lifetime = lifetime
        self.capacity = capacity
    }

    func create(authorization: String, user: String, principal: String, now: Date = Date()) -> Session {
        let session = Session(id: Self.token(), authorization: authorization, user: user, principal: principal, csrf: Self.token(), expires: now + lifetime)
        lock.withLock {
            sessions = sessions.filter { $0.value.expires > now }
            if sessions.count >= capacity, let oldest = sessions.min(by: { $0.value.expires < $1.value.expires }) {
                sessions[oldest.key] = nil
            }
            sessions[session.id] = session
        }
        return session
    }

    func session(_ id: String, now: Date = Date()) -> Session? {
        lock.withLock {
            guard let session = sessions[id] else { return nil }
            if session.expires <= now {
                sessions[id] = nil
                return nil
            }
            return session
        }
    }

    func end(_ id: String) {
        lock.withLock { sessions[id] = nil }
    }

    /// 32 random bytes as hex (the system's cryptographic generator).
    static func token() -> String {
        var generator = SystemRandomNumberGenerator()
        return Hex.encode((0..<32).map { _ in UInt8.random(in: 0...255, using: &generator) })
    }

    /// Compares without an early exit, so the time taken does not tell how much of a token was right.
    static func same(_ a: String, _ b: String) -> Bool {
        let x = Array(a.utf8), y = Array(b.utf8)
        guard x.count == y.count else { return false }
        return zip(x, y).reduce(0) { $0 | ($1.0 ^ $1.1) } == 0
    }
}
