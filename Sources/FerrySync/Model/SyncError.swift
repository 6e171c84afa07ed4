/// Why a sync could not go on, said in one line: what failed, where, and what to do next.
///
/// The kind decides the exit code and whether a retry can help; the message is for people.
public struct SyncError: Error, Sendable, CustomStringConvertible, Equatable {
    public struct Kind: Hashable, Sendable {
        private enum Base: Hashable, Sendable {
            case badInput, unreachable, unauthorized, notFound, protocolError, target, io, interrupted, cursorExpired
        }
        private let base: Base
        /// A URL, flag, file line or config key is wrong.
        public static let badInput = Kind(base: .badInput)
        /// The endpoint could not be reached (after retries).
        public static let unreachable = Kind(base: .unreachable)
        /// The endpoint refused the credentials.
        public static let unauthorized = Kind(base: .unauthorized)
        /// A table, file, bucket or collection does not exist.
        public static let notFound = Kind(base: .notFound)
        /// The endpoint answered something it should not have.
        public static let protocolError = Kind(base: .protocolError)
        /// The target failed to apply a batch as a whole.
        public static let target = Kind(base: .target)
        /// Reading or writing a local file failed.
        public static let io = Kind(base: .io)
        /// `--strict` stopped the run at a rejected record, or it was cancelled.
        public static let interrupted = Kind(base: .interrupted)
        /// The source no longer keeps its changes back to the checkpoint (a server purged tombstones
        /// past it: 410, errno 124); an incremental run then diffs instead (``SyncEngine``).
        public static let cursorExpired = Kind(base: .cursorExpired)
    }

    public let kind: Kind
    public let message: String

    public init(_ kind: Kind, _ message: String) {
        self.kind = kind
        self.message = message
    }

    public var description: String { message }

    public static func badInput(_ message: String) -> SyncError { SyncError(.badInput, message) }
}
