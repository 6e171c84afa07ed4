import Foundation

/// A length of time as people write it in settings: `500ms`, `30s`, `5m`, `2h`, `90d`, or plain seconds.
public enum DurationText {
    /// The seconds `text` says, or nil when it is not a finite, non-negative duration.
    public static func seconds(_ text: String) -> Double? {
        let trimmed = text.trimmingCharacters(in: .whitespaces).lowercased()
        let units: [(String, Double)] = [("ms", 0.001), ("s", 1), ("m", 60), ("h", 3600), ("d", 86_400)]
        var value: Double? = Double(trimmed)
        if value == nil {
            for (suffix, factor) in units where trimmed.hasSuffix(suffix) {
                if let n = Double(trimmed.dropLast(suffix.count)) { value = n * factor; break }
            }
        }
        guard let value, value.isFinite, value >= 0 else { return nil }
        return value
    }
}
