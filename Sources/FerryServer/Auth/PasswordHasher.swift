import _CryptoExtras
import Crypto
import Foundation

/// Account passwords at rest: PBKDF2-HMAC-SHA256 with a random 16-byte salt, stored as
/// `pbkdf2_sha256$ROUNDS$SALT$HASH` (base64), the form Django uses. Verification reads
/// the rounds from the stored value, so raising `rounds` later keeps old passwords valid.
public struct PasswordHasher: Sendable {
    /// Rounds for new hashes (OWASP and swift-crypto ask for at least 210,000).
    public let rounds: Int

    public init(rounds: Int = 210_000) {
        self.rounds = rounds
    }

    static let prefix = "pbkdf2_sha256"

    public func hash(_ password: String) -> String {
        var generator = SystemRandomNumberGenerator()
        let salt = (0..<16).map { _ in UInt8.random(in: 0...255, using: &generator) }
        let key = Self.derive(password, salt: salt, rounds: rounds)
        return [Self.prefix, String(rounds), Data(salt).base64EncodedString(), Data(key).base64EncodedString()].joined(separator: "$")
    }

    /// Whether `password` matches a stored hash (false for a malformed one).
    public func verify(_ password: String, against stored: String) -> Bool {
        let parts = stored.split(separator: "$")
        guard parts.count == 4, parts[0] == Self.prefix, let rounds = Int(parts[1]), rounds >= 1, rounds <= 10_000_000,
              let salt = Data(base64Encoded: String(parts[2])), let expected = Data(base64Encoded: String(parts[3])), expected.count == 32
        else { return false }
        let key = Self.derive(password, salt: Array(salt), rounds: rounds)
        // Constant time: every byte is compared.
        return zip(key, expected).reduce(0) { $0 | ($1.0 ^ $1.1) } == 0
    }

    static func derive(_ password: String, salt: [UInt8], rounds: Int) -> [UInt8] {
        let key = try! KDF.Insecure.PBKDF2.deriveKey(from: Array(password.utf8), salt: salt, using: .sha256,
                                                      outputByteCount: 32, unsafeUncheckedRounds: rounds)
        return key.withUnsafeBytes { Array($0) }
    }
}
