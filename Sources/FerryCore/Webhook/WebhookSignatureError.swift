/// Why a `Ferry-Signature` was refused, in a message fit to send back to the sender: it
/// never holds the secret or the expected MAC.
public struct WebhookSignatureError: Error, Hashable, Sendable, CustomStringConvertible {
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Base: String, Hashable, Sendable {
            case missing, malformed, wrongSignature = "wrong-signature", tooOld = "too-old", fromTheFuture = "from-the-future"
        }
        private let base: Base
        /// The request has no `Ferry-Signature` header.
        public static let missing = Code(base: .missing)
        /// The header is not `t=<unix seconds>,sha256=<64 hex digits>`.
        public static let malformed = Code(base: .malformed)
        /// The MAC does not match: another secret, or a changed body, delivery id or timestamp.
        public static let wrongSignature = Code(base: .wrongSignature)
        /// The timestamp is further in the past than the tolerance: most likely a replay.
        public static let tooOld = Code(base: .tooOld)
        /// The timestamp is further in the future than the tolerance: a clock is off.
        public static let fromTheFuture = Code(base: .fromTheFuture)

        /// `missing`, `malformed`, `wrong-signature`, `too-old` or `from-the-future`.
        public var description: String { base.rawValue }
    }

    public let code: Code
    /// With `.tooOld` and `.fromTheFuture`: how many seconds the timestamp is from the receiver's clock.
    public let seconds: Int?
    public let message: String

    public var description: String { message }

    public static let missing = Self(code: .missing, seconds: nil, message: "no Ferry-Signature header")
    public static let wrongSignature = Self(
        code: .wrongSignature, seconds: nil,
        message: "Ferry-Signature does not match: the secret differs, or the body, delivery id or timestamp was changed"
    )

    public static func malformed(_ why: String) -> Self {
        Self(code: .malformed, seconds: nil, message: "Ferry-Signature is malformed: \(why) (expected t=<unix seconds>,sha256=<64 hex digits>)")
    }

    public static func tooOld(seconds: Int, tolerance: Int) -> Self {
        Self(code: .tooOld, seconds: seconds,
             message: "Ferry-Signature is \(seconds) s old, more than the \(tolerance) s allowed: a replayed delivery, or a clock that is off")
    }

    public static func fromTheFuture(seconds: Int, tolerance: Int) -> Self {
        Self(code: .fromTheFuture, seconds: seconds,
             message: "Ferry-Signature is dated \(seconds) s in the future, more than the \(tolerance) s allowed: check the sender's clock")
    }
}
