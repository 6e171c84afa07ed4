public import Foundation

/// Starts a child process that prints the port it listens on, and returns that port.
///
/// Its output is drained on a thread of its own for its whole life (a full pipe would block
/// it); the wait for the line naming the port has a deadline.
/// - Parameters:
///   - pattern: a regular expression whose first group is the port.
///   - what: the child's name in the error when it does not start.
///   - log: collects everything the process prints, stdout and stderr together.
public func launch(_ process: Process, output: Pipe, port pattern: String, what: String, log: LockedData = LockedData()) throws -> Int {
    let regex = try Regex(pattern)
    process.standardOutput = output
    process.standardError = output
    try process.run()
    log.collect(output.fileHandleForReading)
    let deadline = Date().addingTimeInterval(30)
    while Date() < deadline && process.isRunning {
        if let match = log.text.firstMatch(of: regex), let group = match.output[1].substring, let port = Int(group) {
            return port
        }
        usleep(20_000)
    }
    kill(process.processIdentifier, SIGKILL)
    throw Spawn.Failure("\(what) did not start: \(log.text)")
}
