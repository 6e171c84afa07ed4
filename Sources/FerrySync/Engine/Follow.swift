public import AsyncHTTPClient
public import FerryCore
public import Foundation
import NIOCore
import NIOHTTP1

/// `--follow`: keeps a target in sync in real time. After a first run catches up, each change
/// of the source triggers an incremental run.
///
/// What says "the source changed" depends on the source: a Ferry server's event stream, else
/// its long-poll (`_wait`), else (Kinto, tables, files, APIs) a timer. The watcher only wakes the
/// loop; the run itself reads from the job's checkpoint, so a lost, merged or late wake-up can
/// delay a change but never lose or repeat one, and every run checkpoints as usual. Wake-ups
/// that arrive during a run cause one more run after it, not one per change.
///
/// A two-way job stays two-way and watches both sides: a change on either wakes the loop, and
/// each run reads both sides' changes since the last. A change the run itself wrote wakes the
/// loop once more; that run finds both sides equal to their base and writes nothing (no echo).
public final class Follower: @unchecked Sendable {
    /// How the follower learns of changes.
    public enum Watch: Sendable, Equatable, CustomStringConvertible {
        case stream(url: String)
        case longPoll(url: String)
        case poll(seconds: Double)

        /// The `--via` value that asks for this way of watching.
        public var via: String {
            switch self {
            case .stream: "stream"
            case .longPoll: "long-poll"
            case .poll: "poll"
            }
        }

        public var description: String {
            switch self {
            case .stream: "the server's event stream"
            case .longPoll: "the server's long-poll"
            case .poll(let seconds): "polling, \(Schedule.every(seconds: seconds))"
            }
        }
    }

    public let job: SyncJob
    /// Seconds between runs when the source has no change feed to watch.
    public let pollInterval: Double
    /// Raised by the watcher; closed by ``stop()``.
    let changed = WakeSignal()
    /// Closed by ``stop()``: the engine ends a run at the next batch boundary.
    public let stopping = WakeSignal()
    let client: HTTPClient
    let connectors: ConnectorRegistry
    private var watchers: [Task<Void, Never>] = []
    /// Called with each run's report, and with each failure (the loop goes on).
    public var onReport: (SyncReport) -> Void = { _ in }
    public var onError: (any Error) -> Void = { _ in }
    public var onNotice: (String) -> Void = { _ in }
    /// Called when a run starts, and when the watcher sees a change (before the run that reads it).
    public var onRunStarted: () -> Void = {}
    public var onChange: @Sendable () -> Void = {}
    /// The longest wait before a run even without a wake-up (a safety net under the stream).
    public var quietRunInterval: Double = 300
    /// `stream`, `long-poll` or `poll` to skip discovery (a proxy that breaks event streams); nil: the best the source offers.
    public var via: String? = nil

    public init(job: SyncJob, pollInterval: Double = 5, client: HTTPClient = .ferrySync, connectors: ConnectorRegistry = .standard) {
        var job = job
        if job.mode != .twoWay { job.mode = .incremental }
        self.job = job
        self.pollInterval = pollInterval
        self.client = client
        self.connectors = connectors
    }

    /// Stops following: the current run ends after its batch, the loop returns.
    public func stop() {
        stopping.close()
        changed.close()
        for watcher in watchers { watcher.cancel() }
    }

    /// The sides whose changes wake the loop: the source, and the target of a two-way job.
    var watchedSides: [(url: String, target: Bool)] {
        job.mode == .twoWay ? [(job.source, false), (job.target, true)] : [(job.source, false)]
    }

    /// The side's endpoint when its changes can be watched (``ChangeWatching``).
    private func watchable(target: Bool) -> (any ChangeWatching)? {
        try? SyncEngine(client: client, connectors: connectors).endpoint(job, target: target) as? any ChangeWatching
    }

    /// How changes of the job's source can be watched.
    public func discoverWatch() async -> Watch {
        await discoverWatch(job.source, target: false)
    }

    /// How changes of one side can be watched.
    func discoverWatch(_ url: String, target: Bool) async -> Watch {
        guard via != "poll", let side = watchable(target: target) else { return .poll(seconds: pollInterval) }
        guard let feeds = await side.changeFeeds() else { return .poll(seconds: pollInterval) }
        if let feed = feeds.first(where: { via == nil || $0.via == via }) { return feed }
        if let via { onNotice("the source offers no \(via); polling instead") }
        return .poll(seconds: pollInterval)
    }

    /// Runs until ``stop()``: a first run, then one after each change.
    public func run(engine: SyncEngine) async {
        engine.stop = stopping
        var idle = quietRunInterval
        var connections: [WakeSignal] = []
        for side in watchedSides {
            let watch = await discoverWatch(side.url, target: side.target)
            onNotice("following \(connectors.redacted(side.url)) through \(watch)")
            if case .poll(let seconds) = watch {
                idle = min(idle, seconds)
            } else {
                let connected = WakeSignal()
                startWatcher(watch, side: side, connected: connected)
                connections.append(connected)
            }
        }
        // The watchers connect before the first run reads, so no change falls in between.
        for connected in connections { _ = await connected.wait(timeout: .seconds(5)) }
        var failures = 0
        while !stopping.isClosed {
            do {
                onRunStarted()
                let report = try await engine.run(job)
                failures = 0
                onReport(report)
            } catch {
                failures += 1
                onError(error)
                // Try again after a backoff, woken early by a change (the source may be back).
                let delay = min(30, 0.5 * pow(2, Double(min(failures - 1, 6))))
                _ = await changed.wait(timeout: .milliseconds(Int64(delay * 1000)))
                continue
            }
            if stopping.isClosed { break }
            _ = await changed.wait(timeout: .milliseconds(Int64(idle * 1000)))
        }
        for watcher in watchers { watcher.cancel() }
    }

    private func startWatcher(_ watch: Watch, side: (url: String, target: Bool), connected: WakeSignal) {
        guard let watched = watchable(target: side.target) else { return }
        let changed = self.changed
        let notice = onNotice
        let onChange = self.onChange
        watchers.append(Task {
            var attempt = 0
            while !Task.isCancelled && !changed.isClosed {
                var problem: String?
                do {
                    if case .poll = watch { return }
                    problem = try await watched.watch(watch, connected: {
                        attempt = 0
                        connected.raise()
                    }, changed: {
                        onChange()
                        changed.raise()
                    })
                } catch is CancellationError {
                    return
                } catch {
                    problem = HTTPTransport.describe(error)
                }
                if Task.isCancelled || changed.isClosed { return }
                attempt += 1
                let delay = min(30, 0.25 * pow(2, Double(min(attempt - 1, 7)))) * Double.random(in: 0.8...1.2)
                if let problem, attempt == 1 || attempt % 10 == 0 {
                    notice("watching \(watched.displayName): \(problem); reconnecting in \(String(format: "%.1f", delay)) s")
                }
                try? await Task.sleep(nanoseconds: UInt64(delay * 1e9))
                // Whatever happened while not connected is read by the next run.
                changed.raise()
            }
        })
    }
}
