public import FerryCore
public import HTTPTypes
import Foundation

/// An error answered in Kinto's format: `{"code","errno","error","message","details"}`.
///
/// The errno numbers are Kinto's (`kinto.core.errors.ERRORS`), so Kinto clients
/// recognise them.
public struct KintoError: Error, Sendable {
    /// HTTP status.
    public var status: Int
    /// Kinto's stable error number.
    public var errno: Int
    /// The HTTP reason phrase.
    public var error: String
    /// What went wrong, for a person.
    public var message: String
    /// Machine-readable context.
    public var details: JSON?
    /// Extra response headers (`Retry-After`, `WWW-Authenticate` …).
    public var headers: [(String, String)] = []

    public init(status: Int, errno: Int, error: String, message: String, details: JSON? = nil, headers: [(String, String)] = []) {
        self.status = status
        self.errno = errno
        self.error = error
        self.message = message
        self.details = details
        self.headers = headers
    }

    /// The response body.
    public var body: JSON {
        var members: [String: JSON] = [
            "code": .int(Int64(status)), "errno": .int(Int64(errno)), "error": .string(error), "message": .string(message),
        ]
        if let details { members["details"] = details }
        return .object(members)
    }

    /// Kinto's errno numbers.
    public enum Errno {
        public static let missingAuthToken = 104
        public static let invalidAuthToken = 105
        public static let badJSON = 106
        public static let invalidParameters = 107
        public static let missingParameters = 108
        public static let invalidPostedData = 109
        public static let invalidResourceID = 110
        public static let missingResource = 111
        public static let missingContentLength = 112
        public static let requestTooLarge = 113
        public static let modifiedMeanwhile = 114
        public static let methodNotAllowed = 115
        public static let versionNotAvailable = 116
        public static let clientReachedCapacity = 117
        public static let forbidden = 121
        public static let constraintViolated = 122
        /// Ferry's: a change feed asked from before the collection's tombstone horizon (410).
        public static let beforeTombstoneHorizon = 124
        public static let backend = 201
        public static let serviceDeprecated = 202
        public static let undefined = 999
    }

    /// 400: a parameter is invalid. `location` is `querystring`, `body`, `path` or `header`.
    public static func invalidParameters(location: String, name: String? = nil, description: String) -> KintoError {
        var detail: [String: JSON] = ["location": .string(location), "description": .string(description)]
        if let name { detail["name"] = .string(name) }
        let message: String
        if let name, !description.contains(name) {
            message = "\(name) in \(location): \(description)"
        } else {
            message = "\(location): \(description)"
        }
        return KintoError(status: 400, errno: Errno.invalidParameters, error: "Invalid parameters", message: message, details: .array([.object(detail)]))
    }

    /// 400: the body is not valid JSON.
    public static func badJSON(_ reason: String) -> KintoError {
        KintoError(status: 400, errno: Errno.badJSON, error: "Invalid parameters", message: "body: Invalid JSON (\(reason))",
                   details: [["location": "body", "description": .string("Invalid JSON: \(reason)")]])
    }

    /// 404 for an object that does not exist.
    public static func notFound(resource: String, id: String) -> KintoError {
        KintoError(status: 404, errno: Errno.invalidResourceID, error: "Not Found",
                   message: "\(resource) '\(id)' does not exist", details: ["id": .string(id), "resource_name": .string(resource)])
    }

    /// 404 for a path that names nothing.
    public static let missingResource = KintoError(status: 404, errno: Errno.missingResource, error: "Not Found",
                                                   message: "The resource you are looking for could not be found.")

    /// 405.
    public static func methodNotAllowed(_ method: HTTPRequest.Method, allowed: [HTTPRequest.Method]) -> KintoError {
        let names = allowed.map(\.rawValue).joined(separator: ", ")
        return KintoError(status: 405, errno: Errno.methodNotAllowed, error: "Method Not Allowed",
                          message: "Method not allowed on this endpoint: \(method.rawValue) (allowed: \(names))",
                          headers: [("Allow", names)])
    }

    /// 401: anonymous where a principal is needed.
    public static let unauthorized = KintoError(status: 401, errno: Errno.missingAuthToken, error: "Unauthorized",
                                                message: "Please authenticate yourself to use this endpoint.",
                                                headers: [("WWW-Authenticate", "Basic realm=\"Realm\"")])

    /// 401: credentials that cannot be read.
    public static func invalidAuth(_ reason: String) -> KintoError {
        KintoError(status: 401, errno: Errno.invalidAuthToken, error: "Unauthorized", message: "Invalid Authorization header: \(reason)",
                   headers: [("WWW-Authenticate", "Basic realm=\"Realm\"")])
    }

    /// 403: authenticated, but not allowed.
    public static let forbidden = KintoError(status: 403, errno: Errno.forbidden, error: "Forbidden",
                                             message: "This user cannot access this resource.")

    /// 412: a precondition header did not match.
    public static func modifiedMeanwhile(existing: JSON?, timestamp: Int64) -> KintoError {
        KintoError(status: 412, errno: Errno.modifiedMeanwhile, error: "Precondition Failed", message: "Resource was modified meanwhile",
                   details: existing.map { ["existing": $0] } ?? [:],
                   headers: [("ETag", "\"\(timestamp)\""), ("Last-Modified", Timestamp.httpDate(timestamp))])
    }

    /// 413.
    /// 410: the changes after `since` cannot be listed completely: retention purged tombstones
    /// up to `horizon`, so deletes between the two are gone. `what` names the cursor (`_since`,
    /// `Last-Event-ID`).
    public static func beforeTombstoneHorizon(_ what: String, since: Int64, horizon: Int64) -> KintoError {
        KintoError(status: 410, errno: Errno.beforeTombstoneHorizon, error: "Gone",
                   message: "\(what) \(since) is older than this collection's tombstone horizon \(horizon): the tombstones of records deleted up to \(horizon) were purged, so the changes since \(since) cannot be listed completely. Read the records in full (or reconcile: POST the collection's /reconcile), then resume from the collection's ETag",
                   details: ["since": .int(since), "horizon": .int(horizon)],
                   headers: [(KintoAPI.tombstoneHorizonHeader, String(horizon))])
    }

    public static func tooLarge(limit: Int) -> KintoError {
        KintoError(status: 413, errno: Errno.requestTooLarge, error: "Request Entity Too Large",
                   message: "Request body too large: the limit is \(limit) bytes")
    }

    /// 503: the storage failed; the client should retry later.
    /// 429: the principal sent more requests than the rate limit allows.
    public static func tooManyRequests(retryAfter: Int, limit: Int, seconds: Double) -> KintoError {
        KintoError(status: 429, errno: Errno.clientReachedCapacity, error: "Too Many Requests",
                   message: "More than \(limit) requests in \(String(format: "%g", seconds)) s; retry in \(retryAfter) s",
                   headers: [("Retry-After", String(retryAfter))])
    }

    /// 408: the body did not arrive in time.
    public static func requestTimeout(seconds: Double) -> KintoError {
        KintoError(status: 408, errno: Errno.undefined, error: "Request Timeout",
                   message: "The request body did not arrive within \(String(format: "%g", seconds)) s")
    }

    public static func backend(_ message: String, retryAfter: Int) -> KintoError {
        KintoError(status: 503, errno: Errno.backend, error: "Service Unavailable", message: message,
                   headers: [("Retry-After", String(retryAfter))])
    }

    /// 500.
    public static func internalError(_ message: String) -> KintoError {
        KintoError(status: 500, errno: Errno.undefined, error: "Internal Server Error", message: message)
    }
}
