import FerryCore
import Foundation
import Testing

/// The webhook signature is pure: tested with a fixed clock.
@Suite struct WebhookSignatureTests {
    static let secret = "whsec-3f9a0c5e71b2"
    static let delivery = "wh1-1732870000123"
    static let body = Array(#"{"id":"wh1-1732870000123","event":"changes","changes":[{"id":"a","last_modified":5}]}"#.utf8)
    static let now = 1_732_870_000

    static func code(_ header: String?, secret: String = secret, delivery: String = delivery, body: [UInt8] = body,
                     now: Int = now, tolerance: Int = 300) -> WebhookSignatureError.Code? {
        do {
            try WebhookSignature.verify(header: header, secret: secret, delivery: delivery, body: body, now: now, tolerance: tolerance)
            return nil
        } catch {
            return error.code
        }
    }

    @Test func aSignedDeliveryVerifies() throws {
        let header = WebhookSignature.header(secret: Self.secret, timestamp: Self.now, delivery: Self.delivery, body: Self.body)
        #expect(header.hasPrefix("t=1732870000,sha256="))
        let hex = header.dropFirst("t=1732870000,sha256=".count)
        #expect(hex.count == 64 && hex.allSatisfy { "0123456789abcdef".contains($0) })
        let timestamp = try WebhookSignature.verify(header: header, secret: Self.secret, delivery: Self.delivery, body: Self.body, now: Self.now)
        #expect(timestamp == Self.now)
        // An empty body signs and verifies too.
        let empty = WebhookSignature.header(secret: Self.secret, timestamp: Self.now, delivery: Self.delivery, body: [])
        #expect(Self.code(empty, body: []) == nil)
        // Spaces after the comma, parts in the other order and upper-case hex are accepted.
        let mac = String(hex)
        #expect(Self.code("t=1732870000, sha256=\(mac)") == nil)
        #expect(Self.code("sha256=\(mac),t=1732870000") == nil)
        #expect(Self.code("t=1732870000,sha256=\(mac.uppercased())") == nil)
    }

    @Test func theMACIsHMACSHA256OverTimestampDeliveryAndBody() {
        // Computed independently: Python's hmac.new(secret, b"<t>.<delivery>.<body>", sha256).hexdigest().
        #expect(WebhookSignature.header(secret: Self.secret, timestamp: Self.now, delivery: Self.delivery, body: Self.body)
                == "t=1732870000,sha256=7e3376e295587dd146bfe744c9a40021776392cc4f23fc07d786be071174b65f")
        #expect(WebhookSignature.header(secret: "Jefe", timestamp: 0, delivery: "x", body: [])
                == "t=0,sha256=a214074ece1be17426834d2ce46e09fa6b3fbdfe5757abc561969e83a22bae99")
    }

    @Test func anyChangeBreaksTheSignature() {
        let header = WebhookSignature.header(secret: Self.secret, timestamp: Self.now, delivery: Self.delivery, body: Self.body)
        var changedBody = Self.body
        changedBody[changedBody.count - 3] = UInt8(ascii: "6")
        #expect(Self.code(header, body: changedBody) == .wrongSignature)
        #expect(Self.code(header, body: Self.body + [UInt8(ascii: " ")]) == .wrongSignature)
        #expect(Self.code(header, delivery: "wh1-1732870000124") == .wrongSignature)
        #expect(Self.code(header, secret: Self.secret + "x") == .wrongSignature)
        #expect(Self.code(header, secret: "") == .wrongSignature)
        // Another timestamp in the header, the MAC kept: refused even within the window.
        let moved = header.replacingOccurrences(of: "t=1732870000", with: "t=1732870001")
        #expect(Self.code(moved) == .wrongSignature)
        // A forgery is told it is wrong, not that it is old.
        let forged = header.replacingOccurrences(of: "t=1732870000", with: "t=1732860000")
        #expect(Self.code(forged) == .wrongSignature)
    }

    @Test(arguments: [
        ("", "it is empty"),
        ("   ", "it is empty"),
        ("sha256=\(String(repeating: "ab", count: 32))", "no t="),
        ("t=1732870000", "no sha256="),
        ("t=1732870000,sha256=\(String(repeating: "zz", count: 32))", "64 hex digits"),
        ("t=1732870000,sha256=\(String(repeating: "a", count: 63))", "64 hex digits"),
        ("t=1732870000,sha256=\(String(repeating: "ab", count: 31))", "64 hex digits"),
        ("t=1732870000,sha256=", "64 hex digits"),
        ("t=,sha256=\(String(repeating: "ab", count: 32))", "Unix seconds"),
        ("t=-5,sha256=\(String(repeating: "ab", count: 32))", "Unix seconds"),
        ("t=017328700,sha256=\(String(repeating: "ab", count: 32))", "Unix seconds"),
        ("t=1e9,sha256=\(String(repeating: "ab", count: 32))", "Unix seconds"),
        ("t=99999999999999999999,sha256=\(String(repeating: "ab", count: 32))", "Unix seconds"),
        ("t=1732870000,sha256=\(String(repeating: "ab", count: 32)),v1=abc", "unknown part \"v1\""),
        ("t=1732870000,sha256=\(String(repeating: "ab", count: 32)),", "an empty part"),
        ("t=1732870000,sha256=\(String(repeating: "ab", count: 32)) junk", "64 hex digits"),
        ("t=1732870000;sha256=\(String(repeating: "ab", count: 32))", "Unix seconds"),
        ("t=1732870000,sha256", "without ="),
        ("t=1,t=1732870000,sha256=\(String(repeating: "ab", count: 32))", "t= is given twice"),
        ("t=1732870000,sha256=\(String(repeating: "ab", count: 32)),sha256=\(String(repeating: "cd", count: 32))", "sha256= is given twice"),
    ] as [(String, String)])
    func malformedHeadersAreRefusedWithTheReason(header: String, reason: String) {
        do {
            try WebhookSignature.verify(header: header, secret: Self.secret, delivery: Self.delivery, body: Self.body, now: Self.now)
            Issue.record("\(header) was accepted")
        } catch {
            #expect(error.code == .malformed, "\(header)")
            #expect(error.message.contains(reason), "\(header): \(error.message)")
            #expect(!error.message.contains(Self.secret))
        }
    }

    @Test func aMissingHeaderIsMissing() {
        #expect(Self.code(nil) == .missing)
    }

    @Test func theTimestampMustBeWithinTheTolerance() {
        func signed(at timestamp: Int) -> String {
            WebhookSignature.header(secret: Self.secret, timestamp: timestamp, delivery: Self.delivery, body: Self.body)
        }
        // At the edges of the window: accepted.
        #expect(Self.code(signed(at: Self.now - 300)) == nil)
        #expect(Self.code(signed(at: Self.now + 300)) == nil)
        // Just outside: refused, with how far off it is.
        #expect(Self.code(signed(at: Self.now - 301)) == .tooOld)
        #expect(Self.code(signed(at: Self.now + 301)) == .fromTheFuture)
        do {
            try WebhookSignature.verify(header: signed(at: Self.now - 1000), secret: Self.secret, delivery: Self.delivery, body: Self.body, now: Self.now)
            Issue.record("a 1000 s old signature was accepted")
        } catch {
            #expect(error.code == .tooOld && error.seconds == 1000)
            #expect(error.message.contains("1000 s old") && error.message.contains("300 s allowed"), "\(error.message)")
        }
        do {
            try WebhookSignature.verify(header: signed(at: Self.now + 400), secret: Self.secret, delivery: Self.delivery, body: Self.body, now: Self.now)
            Issue.record("a signature 400 s in the future was accepted")
        } catch {
            #expect(error.code == .fromTheFuture && error.seconds == 400)
        }
        // The receiver's tolerance decides.
        #expect(Self.code(signed(at: Self.now - 1000), tolerance: 3600) == nil)
        #expect(Self.code(signed(at: Self.now - 10), tolerance: 5) == .tooOld)
    }
}
