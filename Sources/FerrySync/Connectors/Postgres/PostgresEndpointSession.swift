import FerryCore
import FerryPostgres
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
final class PostgresEndpointSession {
    let link: PostgresLink
    let location: PostgresLocation
    let logger: Logger

    var connection: PostgresConnection { link.connection }

    private init(connection: PostgresConnection, location: PostgresLocation, logger: Logger) {
        link = PostgresLink(connection)
        self.location = location
        self.logger = logger
    }

    /// What an operation fails with when the connection closes before it is answered.
    var lost: SyncError {
        SyncError(.unreachable, "\(location.displayName): lost the connection to \(location.address) (the server closed it)")
    }

    /// Runs an operation on the connection, and fails it as soon as the connection is closed
    /// (``PostgresLink``: the guard against postgres-nio's hang).
    func guarded<T: Sendable>(onEventLoop: Bool = false, _ operation: @escaping @Sendable () async throws -> T) async throws -> T {
        try await link.guarded(onEventLoop: onEventLoop, lost: lost, operation)
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
        let link = link
        let lost = lost
        @Sendable func stopIfClosed() async throws {
            guard link.isClosed else { return }
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
    static func connect(_ location: PostgresLocation) async throws -> PostgresEndpointSession {
        // postgres-nio logs at debug and trace: nothing of it belongs on a user's terminal.
        let logger = Logger(label: "ferry.postgres", factory: { _ in SwiftLogNoOpLogHandler() })
        let configuration: PostgresConnection.Configuration
        do {
            configuration = try location.server.connectionConfiguration()
        } catch {
            throw SyncError(.io, "\(location.displayName): \(error.message)")
        }
        let started = ContinuousClock.now
        do {
            let connection = try await PostgresConnection.connect(
                on: MultiThreadedEventLoopGroup.singleton.any(), configuration: configuration,
                id: Int.random(in: 1...Int.max), logger: logger)
            return PostgresEndpointSession(connection: connection, location: location, logger: logger)
        } catch {
            // A server that takes the connection and never answers: the deadline closes it.
            if ContinuousClock.now - started >= .seconds(location.connectTimeoutSeconds), !(error is CancellationError) {
                throw SyncError(.unreachable, "\(location.displayName): cannot reach \(location.address): no answer within \(location.connectTimeoutSeconds) s (connect_timeout)")
            }
            throw PostgresErrors.translate(error, location: location, connecting: true, kind: .unreachable)
        }
    }

    /// Runs one statement and reads its rows.
    /// - Parameter kind: what a failure that is not about the connection becomes (`.target` while writing).
    @discardableResult
    func rows(_ sql: String, _ binds: PostgresBindings = PostgresBindings(), kind: SyncError.Kind = .protocolError) async throws -> [PostgresRow] {
        do {
            return try await query(sql, binds)
        } catch {
            throw PostgresErrors.translate(error, location: location, connecting: false, kind: kind)
        }
    }

    /// Runs one statement and hands its rows over as they arrive, one per ``RowStream/next()``
    /// (the server is read no faster than they are asked for).
    func stream(_ sql: String, _ binds: PostgresBindings = PostgresBindings()) async throws -> RowStream {
        let sequence: PostgresRowSequence
        do {
            let connection = connection
            let logger = logger
            sequence = try await guarded { try await connection.query(PostgresQuery(unsafeSQL: sql, binds: binds), logger: logger) }
        } catch {
            throw PostgresErrors.translate(error, location: location, connecting: false, kind: .protocolError)
        }
        return RowStream(iterator: sequence.makeAsyncIterator(), location: location)
    }

    /// The rows of a statement being read. Dropping it before its end cancels the rest of the
    /// statement (postgres-nio's iterator does when it is released), so the connection can run the next.
    struct RowStream {
        var iterator: PostgresRowSequence.AsyncIterator
        let location: PostgresLocation

        mutating func next() async throws -> PostgresRow? {
            do {
                return try await iterator.next()
            } catch {
                throw PostgresErrors.translate(error, location: location, connecting: false, kind: .protocolError)
            }
        }
    }

    func close() async {
        try? await connection.close()
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

/// Driver errors as ``SyncError``s (``FerryPostgres/PostgresFailure`` says what they mean).
enum PostgresErrors {
    /// - Parameter kind: what a failure of a statement becomes (`.target` while writing).
    static func translate(_ error: any Error, location: PostgresLocation, connecting: Bool, kind: SyncError.Kind) -> SyncError {
        if let error = error as? SyncError { return error }
        let (failure, message) = PostgresFailure.explain(error, location.server, connecting: connecting)
        let mapped: SyncError.Kind
        switch failure {
        case .unauthorized: mapped = .unauthorized
        case .notFound: mapped = .notFound
        case .unreachable: mapped = .unreachable
        case .interrupted: mapped = .interrupted
        case .statement: mapped = kind
        }
        return SyncError(mapped, "\(location.displayName): \(message)")
    }
}
