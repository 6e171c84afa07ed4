import Foundation
import Logging
import NIOConcurrencyHelpers
public import ServiceLifecycle
import UnixSignals

/// The one way a long-running command stops (`ferry run`, `ferry listen`, `ferry sync --follow`,
/// `--every` and `--cron`; `ferry serve` uses ``SecondSignal`` beside its own services): its work runs as a service of a `ServiceGroup` that shuts down
/// gracefully on SIGTERM or SIGINT. The first signal calls `stop` (waits end at once, runs after
/// their current batch, with the checkpoint saved) and the command ends when the work returns;
/// a second signal ends the process at once, with status 130.
public enum GracefulShutdown {
    /// Runs `work` until it returns, by itself or after `stop`.
    /// - Returns: what `work` returned.
    public static func run<Result: Sendable>(stop: @escaping @Sendable () -> Void, _ work: @escaping @Sendable () async -> Result) async throws -> Result {
        let service = Work(body: work, stop: stop)
        var logger = Logger(label: "ferry")
        logger.logLevel = .warning
        let group = ServiceGroup(configuration: .init(
            services: [
                // First, so that it is told to shut down last: it listens for a second signal
                // until the work has returned.
                .init(service: SecondSignal()),
                .init(service: service, successTerminationBehavior: .gracefullyShutdownGroup),
            ],
            gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        try await group.run()
        guard let result = service.result.withLockedValue({ $0 }) else { throw CancellationError() }
        return result
    }

    /// The command's work as a service: graceful shutdown calls `stop`, and the work returns soon after.
    final class Work<Result: Sendable>: Service {
        let body: @Sendable () async -> Result
        let stop: @Sendable () -> Void
        let result = NIOLockedValueBox<Result?>(nil)

        init(body: @escaping @Sendable () async -> Result, stop: @escaping @Sendable () -> Void) {
            self.body = body
            self.stop = stop
        }

        func run() async {
            let value = await withGracefulShutdownHandler { await self.body() } onGracefulShutdown: { self.stop() }
            result.withLockedValue { $0 = value }
        }
    }

    /// Says on stderr what the first SIGTERM or SIGINT does, and exits with 130 on a second one.
    /// Put it first in a `ServiceGroup`, so that it is told to shut down last.
    public struct SecondSignal: Service {
        /// After "ferry: SIGTERM: " on the first signal.
        let firstSignalDoes: String

        public init(firstSignalDoes: String = "finishing the current batch, then stopping") {
            self.firstSignalDoes = firstSignalDoes
        }

        public func run() async throws {
            let signals = await UnixSignalsSequence(trapping: .sigterm, .sigint)
            await cancelWhenGracefulShutdown {
                var received = 0
                for await signal in signals {
                    received += 1
                    if received > 1 {
                        FileHandle.standardError.write(Data("ferry: second signal: stopping now\n".utf8))
                        exit(130)
                    }
                    let name = signal == .sigterm ? "SIGTERM" : "SIGINT"
                    FileHandle.standardError.write(Data("ferry: \(name): \(firstSignalDoes)\n".utf8))
                }
            }
        }
    }
}
