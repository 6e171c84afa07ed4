import Foundation

extension SyncHealthModel {
    /// The model as `ferry status --model --json`, `/status` and the status page show it.
    /// - Parameters:
    ///   - intervalSeconds: the length of one interval, to give times in seconds too.
    ///   - ahead: the k of "in sync k intervals ahead".
    public func json(intervalSeconds: Double?, ahead: Int) -> JSON {
        func byState<T>(_ values: [T], _ wrap: (T) -> JSON) -> JSON {
            .object(Dictionary(uniqueKeysWithValues: zip(Self.states, values).map { ($0.0.rawValue, wrap($0.1)) }))
        }
        var out: [String: JSON] = [
            "current": .string(current.rawValue),
            "transitions": .int(Int64(transitions)),
            "counts": byState(counts) { row in byState(row) { .int(Int64($0)) } },
            "probabilities": byState(Array(zip(probabilities, Self.states))) { row, state in
                observed.contains(state) ? byState(row) { .double(Self.rounded($0)) } : .null
            },
            "long_run_share": byState(longRun) { .double(Self.rounded($0)) },
            "irreducible": .bool(irreducible),
            "in_sync_ahead": ["intervals": .int(Int64(ahead)), "probability": .double(Self.rounded(inSyncProbability(ahead: ahead)))],
        ]
        if let intervalSeconds { out["interval_seconds"] = .double(intervalSeconds) }
        switch meanTimeToRecovery {
        case .intervals(let m):
            out["recovery"] = "recovers"
            out["mean_time_to_recovery_intervals"] = .double(Self.rounded(m))
            out["mean_time_to_recovery_seconds"] = intervalSeconds.map { .double(Self.rounded(m * $0)) } ?? .null
        case .never:
            out["recovery"] = "never recovered"
            out["mean_time_to_recovery_intervals"] = .null
        case .neverFailed:
            out["recovery"] = "never failed"
            out["mean_time_to_recovery_intervals"] = .null
        }
        return .object(out)
    }

    /// The key figures as lines of text, for `ferry status --model`.
    public func lines(intervalSeconds: Double?, ahead: Int) -> [String] {
        func percent(_ x: Double) -> String { String(Int((x * 1000).rounded())).withDecimal + "%" }
        var lines = ["now: \(current.rawValue.replacingOccurrences(of: "_", with: " ")), from \(transitions) transitions"
            + (intervalSeconds.map { " of \(Self.seconds($0)) each" } ?? "")]
        lines.append("long-run share in sync: \(percent(share(.inSync)))" + (irreducible ? "" : " (from the current state; not every state leads back to every other)"))
        switch meanTimeToRecovery {
        case .intervals(let m):
            lines.append("mean time to recovery: \(Self.rounded(m)) intervals" + (intervalSeconds.map { " (\(Self.seconds(m * $0)))" } ?? ""))
        case .never: lines.append("mean time to recovery: none (failing was never seen to lead back to in sync)")
        case .neverFailed: lines.append("mean time to recovery: never failed")
        }
        lines.append("P(in sync \(ahead) intervals ahead): \(percent(inSyncProbability(ahead: ahead)))")
        let names = Self.states.map { $0.rawValue.replacingOccurrences(of: "_", with: " ") }
        let width = names.map(\.count).max()!
        lines.append("transitions (counts, rows: from, columns: to):")
        lines.append("".padding(toLength: width, withPad: " ", startingAt: 0) + "  " + names.joined(separator: "  "))
        for (name, row) in zip(names, counts) {
            lines.append(name.padding(toLength: width, withPad: " ", startingAt: 0) + "  "
                + zip(row, names).map { String($0.0).padding(toLength: $0.1.count, withPad: " ", startingAt: 0) }.joined(separator: "  "))
        }
        return lines
    }

    public static func rounded(_ x: Double) -> Double { (x * 10_000).rounded() / 10_000 }

    /// Seconds as text in the largest unit that fits: `90 s` is `1.5 min`.
    public static func seconds(_ s: Double) -> String {
        if s >= 3600 { return "\(rounded(s / 3600)) h" }
        if s >= 60 { return "\(rounded(s / 60)) min" }
        return "\(rounded(s)) s"
    }
}

private extension String {
    /// "1234" as tenths: "123.4".
    var withDecimal: String {
        let padded = count < 2 ? String(repeating: "0", count: 2 - count) + self : self
        return String(padded.dropLast()) + "." + String(padded.suffix(1))
    }
}
