import Foundation

/// A file's validation (``FileEndpoint/validate()``) on a thread of its own, so that it runs on
/// the second core alongside a load into SQLite instead of before it. The load commits nothing
/// before the validation has passed (SQLiteWriter+Load.swift), so a malformed line anywhere in
/// the file still changes nothing.
///
/// A thread rather than a task: the load holds its cooperative thread until it ends and waits
/// for this at its first commit, which must not depend on a second cooperative thread being free.
final class BackgroundValidation: @unchecked Sendable {
    private let condition = NSCondition()
    private var ended = false
    private var failure: (any Error)? = nil  // guarded by `condition`

    /// Starts validating `file` (its own reader: the endpoint is left to the load).
    init(_ file: FileEndpoint) {
        let (path, format, options) = (file.path, file.format, file.options)
        let thread = Thread { [self] in
            var failure: (any Error)? = nil
            do {
                try FileEndpoint(path: path, format: format, options: options).validateNow()
            } catch {
                failure = error
            }
            condition.lock()
            self.failure = failure
            ended = true
            condition.broadcast()
            condition.unlock()
        }
        thread.stackSize = 8 << 20  // the JSON check recurses into nested values
        thread.start()
    }

    /// Whether the file has been found well formed, without waiting (false while the check
    /// runs); throws the error of a malformed file.
    func passed() throws -> Bool {
        condition.lock()
        defer { condition.unlock() }
        if let failure { throw failure }
        return ended
    }

    /// Waits for the check to end; throws the error of a malformed file.
    func wait() throws {
        if let failure = waitForFailure() { throw failure }
    }

    /// Waits for the check to end: the error of a malformed file, nil for a well-formed one.
    func waitForFailure() -> (any Error)? {
        condition.lock()
        defer { condition.unlock() }
        while !ended { condition.wait() }
        return failure
    }
}
