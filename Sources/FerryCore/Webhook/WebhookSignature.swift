import Crypto
import Foundation

/// The `Ferry-Signature` header of a webhook delivery: proof that whoever holds the shared
/// secret sent this body, for this delivery id, at this time.
///
/// The header is `t=<unix seconds>,sha256=<hex>`, where the hex is the lowercase
/// HMAC-SHA256, keyed with the secret, of `"<t>.<delivery id>.<raw body bytes>"`:
/// ```swift
/// let header = WebhookSignature.header(secret: secret, timestamp: 1_732_870_000, delivery: "wh1-1732870000123", body: body)
/// // "t=1732870000,sha256=9c1e…"
/// try WebhookSignature.verify(header: header, secret: secret, delivery: "wh1-1732870000123", body: body, now: now)
/// ```
/// The timestamp and the delivery id are inside the MAC, so a receiver can refuse replays:
/// an old delivery fails the time window, a recent one its memory of the ids it accepted.
/// Verification compares MACs in constant time and its errors never echo the secret or
/// the expected MAC.
public enum WebhookSignature {
    /// The header that carries the signature.
    public static let headerName = "Ferry-Signature"
    /// The header that carries the delivery id (the same on every retry of a delivery).
    public static let deliveryHeaderName = "Ferry-Delivery"
    /// The header that names the event (`changes`).
    public static let eventHeaderName = "Ferry-Event"
    /// Seconds a signature stays valid on either side of its timestamp, unless the receiver says otherwise.
    public static let defaultTolerance = 300

    /// The `Ferry-Signature` value for a delivery.
    /// - Parameters:
    ///   - secret: The webhook's shared secret.
    ///   - timestamp: When the delivery is sent, in Unix seconds (not negative).
    ///   - delivery: The delivery id, as sent in `Ferry-Delivery`.
    ///   - body: The request body exactly as sent.
    /// - Returns: `t=<timestamp>,sha256=<64 lowercase hex digits>`.
    public static func header(secret: String, timestamp: Int, delivery: String, body: [UInt8]) -> String {
        "t=\(timestamp),sha256=" + Hex.encode(mac(secret: secret, timestamp: timestamp, delivery: delivery, body: body))
    }

    /// Checks a delivery's `Ferry-Signature` header.
    /// - Parameters:
    ///   - header: The header's value; nil when the request had none.
    ///   - secret: The webhook's shared secret.
    ///   - delivery: The request's `Ferry-Delivery` id.
    ///   - body: The raw request body.
    ///   - now: The receiver's clock, in Unix seconds.
    ///   - tolerance: The most seconds the signature's timestamp may be from `now`, either way.
    /// - Returns: The signature's timestamp.
    /// - Throws: ``WebhookSignatureError``: `.missing`, `.malformed`, `.wrongSignature` (checked
    ///   before the time, so a forgery is never told its timestamp was the problem), `.tooOld`
    ///   or `.fromTheFuture`.
    @discardableResult
    public static func verify(header: String?, secret: String, delivery: String, body: [UInt8], now: Int,
                              tolerance: Int = defaultTolerance) throws(WebhookSignatureError) -> Int {
        let (timestamp, received) = try parse(header)
        guard mac(secret: secret, timestamp: timestamp, delivery: delivery, body: body) == received else {
            throw .wrongSignature
        }
        let age = now - timestamp
        if age > tolerance { throw .tooOld(seconds: age, tolerance: tolerance) }
        if -age > tolerance { throw .fromTheFuture(seconds: -age, tolerance: tolerance) }
        return timestamp
    }

    /// Whether a delivery id is fit to sign: 1 to 200 ASCII letters, digits, `.`, `_`, `:` or `-`.
    ///
    /// Neither `{` nor white space, so no split of `"<t>.<id>.<body>"` other than the real one
    /// has a body that is a JSON object: the MAC cannot be carried over to another id and body.
    public static func isValidDeliveryID(_ id: String) -> Bool {
        (1...200).contains(id.utf8.count) && id.utf8.allSatisfy { byte in
            switch byte {
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
                 UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: ":"), UInt8(ascii: "-"): true
            default: false
            }
        }
    }

    /// The parts of a `Ferry-Signature` value, each required exactly once, in either order;
    /// spaces around a part are allowed, anything else is `.malformed`.
    /// - Returns: The timestamp and the 32 MAC bytes.
    public static func parse(_ header: String?) throws(WebhookSignatureError) -> (timestamp: Int, mac: [UInt8]) {
        guard let header else { throw .missing }
        guard !header.allSatisfy({ $0 == " " || $0 == "\t" }) else { throw .malformed("it is empty") }
        var timestamp: Int?
        var mac: [UInt8]?
        for rawPart in header.split(separator: ",", omittingEmptySubsequences: false) {
            let part = rawPart.trimmingCharacters(in: [" ", "\t"])
            guard let eq = part.firstIndex(of: "=") else {
                throw .malformed(part.isEmpty ? "it has an empty part" : "a part without = (\(Self.quoted(part)))")
            }
            let name = part[..<eq]
            let value = part[part.index(after: eq)...]
            switch name {
            case "t":
                guard timestamp == nil else { throw .malformed("t= is given twice") }
                guard (1...12).contains(value.count), value.allSatisfy({ $0.isASCII && $0.isNumber }),
                      value == "0" || value.first != "0", let seconds = Int(value) else {
                    throw .malformed("t= must be Unix seconds, digits only")
                }
                timestamp = seconds
            case "sha256":
                guard mac == nil else { throw .malformed("sha256= is given twice") }
                guard value.utf8.count == 64, let bytes = Hex.decode(value) else {
                    throw .malformed("sha256= must be 64 hex digits")
                }
                mac = bytes
            default:
                throw .malformed("unknown part \(Self.quoted(String(name)))")
            }
        }
        guard let timestamp else { throw .malformed("no t=") }
        guard let mac else { throw .malformed("no sha256=") }
        return (timestamp, mac)
    }

    static func mac(secret: String, timestamp: Int, delivery: String, body: [UInt8]) -> HMAC<SHA256>.MAC {
        var hmac = HMAC<SHA256>(key: SymmetricKey(data: Array(secret.utf8)))
        hmac.update(data: Array("\(timestamp).\(delivery).".utf8))
        hmac.update(data: body)
        return hmac.finalize()
    }

    /// A short quotation of what the sender wrote, so a message stays one readable line.
    static func quoted(_ text: String) -> String {
        "\"" + (text.count > 20 ? String(text.prefix(20)) + "…" : text) + "\""
    }
}
