import Dispatch
import Foundation

/// SIGTERM and SIGINT as an event: the first one calls `onSignal` (finish the current batch,
/// save the checkpoint, exit 0); a second one exits at once (status 130).
public final class ShutdownSignals: @unchecked Sendable {
    private var sources: [any DispatchSourceSignal] = []
    private let lock = NSLock()
    private var received = 0

    public init(onSignal: @escaping @Sendable (Int32) -> Void) {
        for number in [SIGTERM, SIGINT] {
            signal(number, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: number, queue: .global())
            source.setEventHandler { [self] in
                let count = lock.withLock {
                    received += 1
                    return received
                }
                if count > 1 {
                    FileHandle.standardError.write(Data("ferry: second signal: stopping now\n".utf8))
                    exit(130)
                }
                FileHandle.standardError.write(Data("ferry: \(number == SIGTERM ? "SIGTERM" : "SIGINT"): finishing the current batch, then stopping\n".utf8))
                onSignal(number)
            }
            source.resume()
            sources.append(source)
        }
    }

    /// Puts the default handlers back.
    public func cancel() {
        for source in sources { source.cancel() }
        for number in [SIGTERM, SIGINT] { signal(number, SIG_DFL) }
    }
}
