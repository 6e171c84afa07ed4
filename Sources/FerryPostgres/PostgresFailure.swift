import Foundation
import NIOCore
import NIOPosix
import NIOSSL
public import PostgresNIO

/// What went wrong talking to PostgreSQL, said the way a person can act on it: the one
/// translation of driver errors, for the server's storage and the sync connector alike (each
/// wraps the answer in its own error type). Messages never hold a password.
public enum PostgresFailure {
    /// What kind of failure it is: what the caller may do next.
    public enum Kind: Sendable, Equatable {
        /// The credentials or the rights.
        case unauthorized
        /// No such database.
        case notFound
        /// The server cannot be reached, refuses connections now, or the connection broke.
        case unreachable
        /// Cancelled (the task or the statement by the client).
        case interrupted
        /// A statement the server refused or cancelled (`statement_timeout`): the caller's own kind of error.
        case statement
    }

    /// The SQLSTATE of a server error, nil for anything else.
    public static func sqlState(_ error: any Error) -> String? {
        (error as? PSQLError)?.serverInfo?[.sqlState]
    }

    /// The server's message and detail, nil for anything but a server error.
    public static func serverMessage(_ error: any Error) -> String? {
        guard let info = (error as? PSQLError)?.serverInfo, let message = info[.message] else { return nil }
        if let detail = info[.detail] { return message + " (" + detail + ")" }
        return message
    }

    /// Whether the connection itself failed (the server went away, the network broke): nothing can go on with it.
    public static func isConnectionLost(_ error: any Error) -> Bool {
        if let state = sqlState(error) { return state.hasPrefix("08") || state.hasPrefix("57P") }
        guard let error = error as? PSQLError else { return false }
        return [.serverClosedConnection, .uncleanShutdown, .connectionError, .clientClosedConnection].contains(error.code)
    }

    /// What `error` means, talking to `address`; the message names no URL (the caller adds which).
    /// - Parameter connecting: whether it came while making the connection.
    public static func explain(_ error: any Error, _ address: PostgresAddress, connecting: Bool) -> (kind: Kind, message: String) {
        if error is CancellationError { return (.interrupted, "cancelled") }
        let at = address.address
        if let state = sqlState(error) {
            let message = serverMessage(error) ?? "error \(state)"
            switch state {
            case "28P01", "28000":
                return (.unauthorized, "the server refused the credentials of user \"\(address.user)\" (\(message)); check USER:PASSWORD")
            case "3D000":
                return (.notFound, "no database \"\(address.database)\" on \(at) (\(message))")
            case "42501":
                return (.unauthorized, "not allowed: \(message)")
            case "57014":
                let limit = address.statementTimeoutMilliseconds.map { " (statement_timeout=\($0))" } ?? ""
                return (.statement, "a statement was cancelled: \(message)\(limit)")
            case "53300", "57P03":
                return (.unreachable, "the server at \(at) does not take connections now: \(message)")
            default:
                if state.hasPrefix("08") || state.hasPrefix("57P") { return (.unreachable, "lost the connection to \(at): \(message)") }
                return (.statement, "\(message) (SQLSTATE \(state))")
            }
        }
        guard let error = error as? PSQLError else { return (.statement, "\(error)") }
        switch error.code {
        case .connectionError:
            return (.unreachable, "cannot reach \(at): \(reason(error.underlying, address))")
        case .serverClosedConnection, .uncleanShutdown, .clientClosedConnection:
            return (.unreachable, connecting ? "\(at) closed the connection while connecting" : "lost the connection to \(at) (the server closed it)")
        case .sslUnsupported:
            return (.unreachable, "the server at \(at) does not accept TLS (sslmode=\(address.sslMode.rawValue)); use sslmode=disable or turn ssl on in the server")
        case .failedToAddSSLHandler, .receivedUnencryptedDataAfterSSLRequest:
            return (.unreachable, "TLS with \(at) failed")
        case .authMechanismRequiresPassword:
            return (.unauthorized, "the server asks for a password: give one (postgres://USER:PASSWORD@…)")
        case .unsupportedAuthMechanism, .saslError:
            return (.unauthorized, "signing in as \"\(address.user)\" failed (the server's authentication method is not supported, or the password is wrong)")
        case .queryCancelled:
            return (.interrupted, "a statement was cancelled")
        default:
            return (.statement, "\(error.code)")
        }
    }

    /// Why a connection could not be made, in words.
    static func reason(_ underlying: (any Error)?, _ address: PostgresAddress) -> String {
        guard let underlying else { return "connection failed" }
        if let error = underlying as? NIOConnectionError {
            if error.dnsAError != nil && error.dnsAAAAError != nil && error.connectionErrors.isEmpty {
                return "unknown host \(address.host)"
            }
            if let first = error.connectionErrors.first { return reason(first.error, address) }
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
            return "no answer within \(address.connectTimeoutSeconds) s (connect_timeout)"
        }
        if underlying is NIOSSLError || underlying is BoringSSLError {
            return "TLS failed: \(underlying)"
        }
        return "\(underlying)"
    }
}
