import FerryCore
import FerryStore
import Foundation
import Logging
import NIOCore
import NIOPosix
import NIOSSL
import PostgresNIO

/// One connection of a `postgres://` endpoint, and the translation of driver errors into
/// ``SyncError``s that say what failed and where (never with the password).
///
/// The session runs with `TimeZone=UTC` and `DateStyle=ISO`, so dates and times read the
/// same whatever the server's defaults, and `statement_timeout` when the URL sets one.
final class PostgresSession {
    let connection: PostgresConnection
    let location: PostgresLocation
    let logger: Logger

    /// Fails what waits on the connection once it closes (see ``guarded(_:)``).
    private let watch = CloseWatch()

    private init(connection: PostgresConnection, location: PostgresLocation, logger: Logger) {
        self.connection = connection
        self.location = location
        self.logger = logger
        let watch = watch
        connection.closeFuture.whenComplete { _ in watch.close() }
    }

    /// Runs an operation on the connection, and fails it as soon as the connection is closed.
    ///
    /// postgres-nio 1.33 hands a query to a connection the server has just closed without ever
    /// answering it (the query never reaches the channel handler that would fail it), so a
    /// statement sent right after the server went away would wait forever. The operation runs
    /// in a task of its own; whichever comes first, its result or the close, is the answer.
    /// - Parameter onEventLoop: run the operation's nonisolated code on the connection's event loop
    ///   (see ``copy(_:into:)``).
    func guarded<T: Sendable>(onEventLoop: Bool = false, _ operation: @escaping @Sendable () async throws -> T) async throws -> T {
        let lost = SyncError(.unreachable, "\(location.displayName): lost the connection to \(location.address) (the server closed it)")
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

    /// Runs one statement and reads all its rows; driver errors are left as they are.
    func query(_ sql: String, _ binds: PostgresBindings = PostgresBindings()) async throws -> [PostgresRow] {
        let connection = connection
        let logger = logger
        return try await guarded {
            try await connection.query(PostgresQuery(unsafeSQL: sql, binds: binds), logger: logger).collect()
        }
    }

    /// `COPY table FROM STDIN` (text format) of `text`; driver errors are left as they are.
    ///
    /// postgres-nio 1.33 stops the process (a precondition) when the copy's writer is used, or the
    /// copy ends, after the server closed the connection but before the connection's handlers are
    /// removed (a turn of the event loop later). So the copy runs on the connection's event loop
    /// (a task executor preference): each step checks the connection and makes postgres-nio's
    /// next call in the same turn of the loop, and once the connection is closed the copy waits
    /// for the close to complete (handlers removed) and ends with an error.
    /// - Parameter table: wrapped in double quotes by postgres-nio, without escaping: a plain identifier only.
    func copy(_ text: ByteBuffer, into table: String) async throws {
        let connection = connection
        let logger = logger
        let watch = watch
        let lost = SyncError(.unreachable, "\(location.displayName): lost the connection to \(location.address) (the server closed it)")
        @Sendable func stopIfClosed() async throws {
            guard watch.isClosed || connection.isClosed else { return }
            // The close future completes once the handlers are removed.
            try? await connection.closeFuture.get()
            throw lost
        }
        try await guarded(onEventLoop: true) {
            try await connection.copyFrom(table: table, logger: logger) { writer in
                try await stopIfClosed()
                do {
                    try await writer.write(text)
                } catch {
                    try await stopIfClosed()
                    throw error
                }
                try await stopIfClosed()
            }
        }
    }

    /// Connects and signs in; fails with `.unreachable`, `.unauthorized` or `.notFound` (no such database).
    static func connect(_ location: PostgresLocation) async throws -> PostgresSession {
        // postgres-nio logs at debug and trace: nothing of it belongs on a user's terminal.
        let logger = Logger(label: "ferry.postgres", factory: { _ in SwiftLogNoOpLogHandler() })
        let tls: PostgresConnection.Configuration.TLS
        switch location.sslMode {
        case .disable:
            tls = .disable
        case .require, .verifyFull:
            var configuration = TLSConfiguration.makeClientConfiguration()
            if location.sslMode == .require { configuration.certificateVerification = .none }
            do {
                tls = .require(try NIOSSLContext(configuration: configuration))
            } catch {
                throw SyncError(.io, "\(location.displayName): cannot set up TLS: \(error)")
            }
        }
        var configuration = PostgresConnection.Configuration(
            host: location.host, port: location.port, username: location.user,
            password: location.password, database: location.database, tls: tls)
        configuration.options.connectTimeout = .seconds(Int64(location.connectTimeoutSeconds))
        var parameters = [("application_name", "ferry"), ("TimeZone", "UTC"), ("DateStyle", "ISO")]
        if let milliseconds = location.statementTimeoutMilliseconds {
            parameters.append(("statement_timeout", String(milliseconds)))
        }
        configuration.options.additionalStartupParameters = parameters
        let started = ContinuousClock.now
        do {
            let connection = try await PostgresConnection.connect(
                on: MultiThreadedEventLoopGroup.singleton.any(), configuration: configuration,
                id: Int.random(in: 1...Int.max), logger: logger)
            return PostgresSession(connection: connection, location: location, logger: logger)
        } catch {
            // A server that takes the connection and never answers: the deadline closes it.
            if ContinuousClock.now - started >= .seconds(location.connectTimeoutSeconds), !(error is CancellationError) {
                throw SyncError(.unreachable, "\(location.displayName): cannot reach \(location.address): no answer within \(location.connectTimeoutSeconds) s (connect_timeout)")
            }
            throw PostgresFailure.translate(error, location: location, connecting: true, kind: .unreachable)
        }
    }

    /// Runs one statement and reads its rows.
    /// - Parameter kind: what a failure that is not about the connection becomes (`.target` while writing).
    @discardableResult
    func rows(_ sql: String, _ binds: PostgresBindings = PostgresBindings(), kind: SyncError.Kind = .protocolError) async throws -> [PostgresRow] {
        do {
            return try await query(sql, binds)
        } catch {
            throw PostgresFailure.translate(error, location: location, connecting: false, kind: kind)
        }
    }

    /// Runs one statement and hands its rows over as they arrive (the server is read no faster than `body` goes).
    func stream(_ sql: String, _ binds: PostgresBindings = PostgresBindings(), _ body: (PostgresRow) async throws -> Void) async throws {
        let sequence: PostgresRowSequence
        do {
            let connection = connection
            let logger = logger
            sequence = try await guarded { try await connection.query(PostgresQuery(unsafeSQL: sql, binds: binds), logger: logger) }
        } catch {
            throw PostgresFailure.translate(error, location: location, connecting: false, kind: .protocolError)
        }
        var iterator = sequence.makeAsyncIterator()
        while true {
            let row: PostgresRow?
            do {
                row = try await iterator.next()
            } catch {
                throw PostgresFailure.translate(error, location: location, connecting: false, kind: .protocolError)
            }
            guard let row else { return }
            try await body(row)
        }
    }

    func close() async {
        try? await connection.close()
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

/// A continuation resumed by the first of several answers.
final class OneAnswer<T: Sendable>: @unchecked Sendable {
    private let lock = NSLock()
    private var continuation: CheckedContinuation<T, any Error>?

    init(_ continuation: CheckedContinuation<T, any Error>) {
        self.continuation = continuation
    }

    func resume(returning value: T) {
        lock.withLock { () -> CheckedContinuation<T, any Error>? in defer { continuation = nil }; return continuation }?.resume(returning: value)
    }

    func resume(throwing error: any Error) {
        lock.withLock { () -> CheckedContinuation<T, any Error>? in defer { continuation = nil }; return continuation }?.resume(throwing: error)
    }
}

extension PostgresRow {
    /// Column `index` as text (every column the connectors read is `text` or cast to it); nil for NULL.
    func text(_ index: Int) -> String? {
        let row = PostgresRandomAccessRow(self)
        guard index < row.count, let bytes = row[index].bytes else { return nil }
        return String(buffer: bytes)
    }

    /// Column `index` as a whole number (`count(*)`, …).
    func integer(_ index: Int) -> Int {
        let row = PostgresRandomAccessRow(self)
        return (try? row[index].decode(Int.self)) ?? 0
    }
}

/// What went wrong, said the way a person can act on it.
enum PostgresFailure {
    /// The SQLSTATE of a server error, nil for anything else.
    static func sqlState(_ error: any Error) -> String? {
        (error as? PSQLError)?.serverInfo?[.sqlState]
    }

    static func serverMessage(_ error: any Error) -> String? {
        guard let info = (error as? PSQLError)?.serverInfo, let message = info[.message] else { return nil }
        if let detail = info[.detail] { return message + " (" + detail + ")" }
        return message
    }

    /// Whether the connection itself failed (the server went away, the network broke): nothing can go on with it.
    static func isConnectionLost(_ error: any Error) -> Bool {
        if let state = sqlState(error) { return state.hasPrefix("08") || state.hasPrefix("57P") }
        guard let error = error as? PSQLError else { return false }
        return [.serverClosedConnection, .uncleanShutdown, .connectionError, .clientClosedConnection].contains(error.code)
    }

    static func translate(_ error: any Error, location: PostgresLocation, connecting: Bool, kind: SyncError.Kind) -> SyncError {
        if let error = error as? SyncError { return error }
        let name = location.displayName
        if error is CancellationError { return SyncError(.interrupted, "\(name): cancelled") }
        if let state = sqlState(error) {
            let message = serverMessage(error) ?? "error \(state)"
            switch state {
            case "28P01", "28000":
                return SyncError(.unauthorized, "\(name): the server refused the credentials of user \"\(location.user)\" (\(message)); check USER:PASSWORD")
            case "3D000":
                return SyncError(.notFound, "\(name): no database \"\(location.database)\" on \(location.address) (\(message))")
            case "42501":
                return SyncError(.unauthorized, "\(name): not allowed: \(message)")
            case "57014":
                let limit = location.statementTimeoutMilliseconds.map { " (statement_timeout=\($0))" } ?? ""
                return SyncError(kind, "\(name): a statement was cancelled: \(message)\(limit)")
            case "53300", "57P03":
                return SyncError(.unreachable, "\(name): the server at \(location.address) does not take connections now: \(message)")
            default:
                if state.hasPrefix("08") || state.hasPrefix("57P") {
                    return SyncError(.unreachable, "\(name): lost the connection to \(location.address): \(message)")
                }
                return SyncError(kind, "\(name): \(message) (SQLSTATE \(state))")
            }
        }
        guard let error = error as? PSQLError else {
            return SyncError(kind, "\(name): \(error)")
        }
        switch error.code {
        case .connectionError:
            return SyncError(.unreachable, "\(name): cannot reach \(location.address): \(reason(error.underlying, location: location))")
        case .serverClosedConnection, .uncleanShutdown, .clientClosedConnection:
            if connecting {
                return SyncError(.unreachable, "\(name): \(location.address) closed the connection while connecting")
            }
            return SyncError(.unreachable, "\(name): lost the connection to \(location.address) (the server closed it)")
        case .sslUnsupported:
            return SyncError(.unreachable, "\(name): the server at \(location.address) does not accept TLS (sslmode=\(location.sslMode.rawValue)); use sslmode=disable or turn ssl on in the server")
        case .failedToAddSSLHandler, .receivedUnencryptedDataAfterSSLRequest:
            return SyncError(.unreachable, "\(name): TLS with \(location.address) failed")
        case .authMechanismRequiresPassword:
            return SyncError(.unauthorized, "\(name): the server asks for a password: give one (postgres://USER:PASSWORD@…)")
        case .unsupportedAuthMechanism, .saslError:
            return SyncError(.unauthorized, "\(name): signing in as \"\(location.user)\" failed (the server's authentication method is not supported, or the password is wrong)")
        case .queryCancelled:
            return SyncError(.interrupted, "\(name): a statement was cancelled")
        default:
            return SyncError(kind, "\(name): \(error.code)")
        }
    }

    /// Why a connection could not be made, in words.
    static func reason(_ underlying: (any Error)?, location: PostgresLocation) -> String {
        guard let underlying else { return "connection failed" }
        if let error = underlying as? NIOConnectionError {
            if error.dnsAError != nil && error.dnsAAAAError != nil && error.connectionErrors.isEmpty {
                return "unknown host \(location.host)"
            }
            if let first = error.connectionErrors.first { return reason(first.error, location: location) }
            return "connection failed"
        }
        if let error = underlying as? IOError {
            switch error.errnoCode {
            case ECONNREFUSED: return "connection refused"
            case ETIMEDOUT: return "timed out"
            case EHOSTUNREACH, ENETUNREACH: return "no route to host"
            default: return String(cString: strerror(error.errnoCode)).lowercased()
            }
        }
        if let error = underlying as? ChannelError, case .connectTimeout = error {
            return "no answer within \(location.connectTimeoutSeconds) s (connect_timeout)"
        }
        if underlying is NIOSSLError || underlying is BoringSSLError {
            return "TLS failed: \(underlying)"
        }
        return "\(underlying)"
    }
}
