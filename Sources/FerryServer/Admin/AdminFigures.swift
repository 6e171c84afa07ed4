import Foundation
import NIOConcurrencyHelpers

/// The server's own figures over time, for `/admin/server`: a sample of its Prometheus text at
/// most every ``interval`` seconds (the responder offers one after each request, so an idle
/// server takes none), the last ``capacity`` kept in memory.
final class AdminFigures: Sendable {
    /// What one sample holds: counters as totals, gauges as they were.
    struct Sample: Sendable, Equatable {
        var at: Double
        var requests: Double
        var latencySum: Double
        var latencyCount: Double
        var openStreams: Double
        var recordsWritten: Double
        var storageErrors: Double
        var storageBytes: Double

        /// The figures of a Prometheus text (each metric's lines summed over their labels).
        init(at: Double, exposition text: String) {
            var sums: [Substring: Double] = [:]
            for line in text.split(separator: "\n") where !line.hasPrefix("#") {
                guard let space = line.lastIndex(of: " "), let value = Double(line[line.index(after: space)...]) else { continue }
                let name = line[..<(line.firstIndex(of: "{") ?? space)]
                sums[name, default: 0] += value
            }
            self.at = at
            requests = sums["ferry_http_requests_total"] ?? 0
            latencySum = sums["ferry_http_request_duration_seconds_sum"] ?? 0
            latencyCount = sums["ferry_http_request_duration_seconds_count"] ?? 0
            openStreams = sums["ferry_streams_open"] ?? 0
            recordsWritten = sums["ferry_records_written_total"] ?? 0
            storageErrors = sums["ferry_storage_errors_total"] ?? 0
            storageBytes = sums["ferry_storage_bytes"] ?? 0
        }
    }

    /// The series the charts draw, one value per interval between two samples.
    struct Series: Equatable {
        var requestsPerSecond: [Double] = []
        var latencyMilliseconds: [Double] = []
        var openStreams: [Double] = []
        var writesPerSecond: [Double] = []

        init(_ samples: [Sample]) {
            for (a, b) in zip(samples, samples.dropFirst()) {
                let seconds = max(b.at - a.at, 0.001)
                requestsPerSecond.append(max(b.requests - a.requests, 0) / seconds)
                let count = b.latencyCount - a.latencyCount
                latencyMilliseconds.append(count > 0 ? (b.latencySum - a.latencySum) / count * 1000 : 0)
                openStreams.append(b.openStreams)
                writesPerSecond.append(max(b.recordsWritten - a.recordsWritten, 0) / seconds)
            }
        }
    }

    let interval: Double
    let capacity: Int
    private let samples = NIOLockedValueBox<[Sample]>([])

    init(interval: Double = 5, capacity: Int = 120) {
        self.interval = interval
        self.capacity = capacity
    }

    /// Takes a sample when the last one is at least ``interval`` old; `exposition` is only called then.
    func offer(now: Double = ProcessInfo.processInfo.systemUptime, exposition: () -> String) {
        let due = samples.withLockedValue { samples in
            guard let last = samples.last else { return true }
            return now - last.at >= interval
        }
        guard due else { return }
        let sample = Sample(at: now, exposition: exposition())
        samples.withLockedValue { samples in
            guard samples.last.map({ now - $0.at >= interval }) ?? true else { return }
            samples.append(sample)
            if samples.count > capacity { samples.removeFirst(samples.count - capacity) }
        }
    }

    var all: [Sample] { samples.withLockedValue { $0 } }
}
