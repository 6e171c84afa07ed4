import GRDB
import NIOConcurrencyHelpers

/// The storage's read connections: a free list of read-only connections, each on its own serial
/// queue, beside the pool's writer.
///
/// A read hops twice: to a free reader's queue, then back to its task. GRDB's pool reads hop three
/// times (the pool's waiting queue, where a read waits for a free reader, then the reader's queue,
/// then the task): here a read takes a free reader on the calling thread, under a lock, and only
/// waits (queued, no thread held) when every reader is busy.
///
/// Connections are opened when first needed, at most `maximumCount`. ``close()`` closes them once
/// the reads on them have finished; a read after it, or waiting for a reader then, fails with
/// GRDB's closed-connection error (``ReopeningPool/isClosed(_:)``).
final class Readers: Sendable {
    private struct State {
        var free: [DatabaseQueue] = []
        var opened = 0
        /// Reads waiting for a reader, first come first served (few: at most the requests in flight).
        var waiting: [@Sendable (Result<DatabaseQueue, any Error>) -> Void] = []
        var all: [DatabaseQueue] = []
        var closed = false
    }

    private let state = NIOLockedValueBox(State())
    private let path: String
    private let configuration: GRDB.Configuration
    private let maximumCount: Int

    /// Readers of the database at `path` (in WAL mode, which its pool's writer set up), opened
    /// with `configuration` made read-only.
    init(path: String, configuration: GRDB.Configuration) {
        var configuration = configuration
        configuration.readonly = true
        configuration.allowsUnsafeTransactions = false
        self.path = path
        self.configuration = configuration
        maximumCount = max(1, configuration.maximumReaderCount)
    }

    /// `reply` on a reader's queue with its connection: in a read transaction (one snapshot for all
    /// its statements) when `snapshot`, else each statement its own.
    func read(snapshot: Bool, _ reply: @escaping @Sendable (Result<Database, any Error>) -> Void) {
        acquire { [self] result in
            switch result {
            case .failure(let error):
                reply(.failure(error))
            case .success(let reader):
                let run: @Sendable (Result<Database, any Error>) -> Void = { result in
                    reply(result)
                    self.release(reader)
                }
                if snapshot { reader.asyncRead(run) } else { reader.asyncUnsafeRead(run) }
            }
        }
    }

    /// Closes every reader, each once the read on it has finished; reads waiting fail.
    func close() throws {
        let (all, waiting) = state.withLockedValue { state in
            state.closed = true
            defer { state.waiting = [] }
            return (state.all, state.waiting)
        }
        for read in waiting { read(.failure(ReopeningPool.closedError)) }
        for reader in all { try reader.close() }
    }

    private enum Take {
        case reader(DatabaseQueue)
        case open
        case wait
        case closed
    }

    private func acquire(_ use: @escaping @Sendable (Result<DatabaseQueue, any Error>) -> Void) {
        let take = state.withLockedValue { state -> Take in
            if state.closed { return .closed }
            if let reader = state.free.popLast() { return .reader(reader) }
            if state.opened < maximumCount {
                state.opened += 1
                return .open
            }
            state.waiting.append(use)
            return .wait
        }
        switch take {
        case .reader(let reader):
            use(.success(reader))
        case .wait:
            break
        case .closed:
            use(.failure(ReopeningPool.closedError))
        case .open:
            do {
                let reader = try DatabaseQueue(path: path, configuration: configuration)
                let closed = state.withLockedValue { state in
                    state.all.append(reader)
                    return state.closed
                }
                if closed { try? reader.close() }
                use(closed ? .failure(ReopeningPool.closedError) : .success(reader))
            } catch {
                state.withLockedValue { $0.opened -= 1 }
                use(.failure(error))
            }
        }
    }

    private func release(_ reader: DatabaseQueue) {
        let next = state.withLockedValue { state -> (@Sendable (Result<DatabaseQueue, any Error>) -> Void)? in
            if !state.waiting.isEmpty { return state.waiting.removeFirst() }
            state.free.append(reader)
            return nil
        }
        next?(.success(reader))
    }
}
