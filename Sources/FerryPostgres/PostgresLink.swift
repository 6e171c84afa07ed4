import Foundation
public import NIOCore
public import PostgresNIO

/// A connection whose operations fail as soon as it closes.
///
/// postgres-nio 1.33 hands a query to a connection the server has just closed without ever
/// answering it (the query never reaches the channel handler that would fail it), so a statement
/// sent right after the server went away would wait forever. Every operation of the server's
/// storage and of the sync connector goes through ``guarded(onEventLoop:lost:_:)`` or
/// ``wait(_:lost:)``: whichever comes first, its answer or the close, is the answer.
public final class PostgresLink: Sendable {
    public let connection: PostgresConnection
    private let watch = CloseWatch()
    private let preparedNames = PreparedNames()

    public init(_ connection: PostgresConnection) {
        self.connection = connection
        let watch = watch
        connection.closeFuture.whenComplete { _ in watch.close() }
    }

    /// Whether the connection is closed (or closing).
    public var isClosed: Bool { watch.isClosed || connection.isClosed }

    /// Whether a prepared statement of this name ran on this connection (``markPrepared(_:)``).
    ///
    /// postgres-nio prepares a statement the first time it runs on a connection, and queues its
    /// execution until the preparation is answered: a query written after it meanwhile reaches
    /// the server first. Only a statement known to be prepared is sent straight to the server,
    /// so only then may another statement follow it without waiting for its answer.
    public func isPrepared(_ name: String) -> Bool { preparedNames.contains(name) }

    /// Notes that a prepared statement of this name ran on this connection (it answered).
    public func markPrepared(_ name: String) { preparedNames.insert(name) }

    /// Runs `operation`, and fails it with `lost` as soon as the connection is closed.
    /// - Parameter onEventLoop: run the operation's nonisolated code on the connection's event loop
    ///   (the same turn of the loop as the connection's own handlers; never waiting for a thread of
    ///   Swift's cooperative pool, which blocking callers can fill).
    public func guarded<T: Sendable>(onEventLoop: Bool = false, lost: any Error,
                                     _ operation: @escaping @Sendable () async throws -> T) async throws -> T {
        let loop = connection.eventLoop
        return try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<T, any Error>) in
            let answer = OneAnswer(continuation)
            guard let id = watch.add({ answer.resume(throwing: lost) }) else {
                answer.resume(throwing: lost)
                return
            }
            let watch = watch
            @Sendable func run() async {
                do {
                    answer.resume(returning: try await operation())
                } catch {
                    answer.resume(throwing: error)
                }
                watch.remove(id)
            }
            if onEventLoop, #available(macOS 15.0, iOS 18.0, tvOS 18.0, watchOS 11.0, *) {
                Task(executorPreference: EventLoopTaskExecutor(loop)) { await run() }
            } else {
                Task { await run() }
            }
        }
    }

    /// Waits, blocking the calling thread (never an event loop's), for `future`'s answer, or fails
    /// with `lost` as soon as the connection is closed. For synchronous callers: the server's
    /// storage sessions.
    public func wait<T: Sendable>(lost: any Error, _ future: EventLoopFuture<T>) throws -> T {
        let promise = connection.eventLoop.makePromise(of: T.self)
        let first = FirstAnswer()
        guard let id = watch.add({ if first.take() { promise.fail(lost) } }) else {
            // Every promise is fulfilled before it goes: a debug build traps on one that is not
            // ("leaking promise"), and a statement after the close (a ROLLBACK after a statement
            // that failed with it) took `ferry serve` down so under network faults.
            promise.fail(lost)
            throw lost
        }
        let watch = watch
        future.whenComplete { result in
            watch.remove(id)
            if first.take() { promise.completeWith(result) }
        }
        return try promise.futureResult.wait()
    }

    /// ``wait(lost:_:)`` for an operation only async code can start (postgres-nio's prepared
    /// statements): it runs in a task on the connection's event loop, never on Swift's cooperative
    /// pool, which callers blocked in a transaction (holding its locks) could fill.
    public func wait<T: Sendable>(lost: any Error, _ operation: @escaping @Sendable () async throws -> T) throws -> T {
        try wait(lost: lost, start(operation))
    }

    /// Starts `operation` as ``wait(lost:_:)`` does, without waiting: its answer, for
    /// ``wait(lost:_:)`` later (a statement sent behind another whose answer is still to come).
    public func start<T: Sendable>(_ operation: @escaping @Sendable () async throws -> T) -> EventLoopFuture<T> {
        let promise = connection.eventLoop.makePromise(of: T.self)
        @Sendable func run() async {
            do { promise.succeed(try await operation()) } catch { promise.fail(error) }
        }
        if #available(macOS 15.0, iOS 18.0, tvOS 18.0, watchOS 11.0, *) {
            Task(executorPreference: EventLoopTaskExecutor(connection.eventLoop)) { await run() }
        } else {
            Task { await run() }
        }
        return promise.futureResult
    }
}

/// The names of the prepared statements that ran on a connection.
final class PreparedNames: @unchecked Sendable {
    private let lock = NSLock()
    private var names: Set<String> = []

    func contains(_ name: String) -> Bool { lock.withLock { names.contains(name) } }
    func insert(_ name: String) { _ = lock.withLock { names.insert(name) } }
}

/// Taken once, by whoever comes first.
final class FirstAnswer: @unchecked Sendable {
    private let lock = NSLock()
    private var done = false

    /// True for the first caller only.
    func take() -> Bool {
        lock.withLock {
            defer { done = true }
            return !done
        }
    }
}

/// The operations waiting on a connection, failed together when it closes.
final class CloseWatch: @unchecked Sendable {
    private let lock = NSLock()
    private var closed = false
    private var waiters: [Int: @Sendable () -> Void] = [:]
    private var next = 0

    /// Registers what to do on close; nil when the connection is already closed.
    func add(_ onClose: @escaping @Sendable () -> Void) -> Int? {
        lock.withLock {
            guard !closed else { return nil }
            next += 1
            waiters[next] = onClose
            return next
        }
    }

    func remove(_ id: Int) {
        lock.withLock { _ = waiters.removeValue(forKey: id) }
    }

    var isClosed: Bool { lock.withLock { closed } }

    func close() {
        let all = lock.withLock {
            closed = true
            defer { waiters = [:] }
            return Array(waiters.values)
        }
        for onClose in all { onClose() }
    }
}

/// A continuation resumed by the first of several answers (also the server's request timeout race).
package final class OneAnswer<T: Sendable>: @unchecked Sendable {
    private let lock = NSLock()
    private var continuation: CheckedContinuation<T, any Error>?

    package init(_ continuation: CheckedContinuation<T, any Error>) {
        self.continuation = continuation
    }

    package func resume(returning value: T) {
        lock.withLock { () -> CheckedContinuation<T, any Error>? in defer { continuation = nil }; return continuation }?.resume(returning: value)
    }

    package func resume(throwing error: any Error) {
        lock.withLock { () -> CheckedContinuation<T, any Error>? in defer { continuation = nil }; return continuation }?.resume(throwing: error)
    }
}
