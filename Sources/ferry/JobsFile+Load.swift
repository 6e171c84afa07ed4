import FerryCore
import FerrySync
import Foundation

extension JobsFile {
    /// Reads and parses a jobs file and keeps the named jobs, in file order.
    /// - Parameters:
    ///   - file: The jobs file's path.
    ///   - only: The jobs to keep; every job when empty.
    /// - Throws: ``SyncError`` naming the file: it cannot be read, is not a valid jobs file,
    ///   or has no job of one of the names (the message lists the jobs it has).
    static func load(_ file: String, only: [String], environment: [String: String]) throws(SyncError) -> [Entry] {
        guard let data = FileManager.default.contents(atPath: file), let text = String(data: data, encoding: .utf8) else {
            throw SyncError(.io, "\(file): cannot read the jobs file")
        }
        let jobs = try parse(text, file: file, environment: environment)
        let names = jobs.compactMap(\.job.name)
        for name in only where !names.contains(name) {
            throw .badInput("\(file): no job named \(name) (jobs: \(names.joined(separator: ", ")))")
        }
        return only.isEmpty ? jobs : jobs.filter { only.contains($0.job.name ?? "") }
    }
}
