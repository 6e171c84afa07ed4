import ArgumentParser
import FerryCore
import FerrySync
import Foundation

/// `ferry init [PATH]`: a commented `ferry.yml` to start from, written without a question and
/// never over an existing file.
struct InitCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "init",
        abstract: "Write a commented ferry.yml to start from: a server section and one example job.",
        discussion: """
            Writes ferry.yml into the current folder, or to PATH: a folder (ferry.yml in it) or a \
            file name. Asks nothing, and never overwrites: when the file exists, nothing is \
            written and the exit status is 2.

            Then `ferry serve --config ferry.yml` starts the server with its server: section, and \
            `ferry run ferry.yml` runs its jobs, each on its schedule.
            """
    )

    @Argument(help: ArgumentHelp("A folder (ferry.yml is written in it) or the file to write.", valueName: "PATH")) var path: String?

    /// The file to write: PATH itself, or ferry.yml in PATH when it is a folder.
    var destination: String {
        guard let path else { return "ferry.yml" }
        var isFolder: ObjCBool = false
        if FileManager.default.fileExists(atPath: path, isDirectory: &isFolder), isFolder.boolValue {
            return (path.hasSuffix("/") ? path : path + "/") + "ferry.yml"
        }
        return path
    }

    func run() throws {
        let file = destination
        do {
            try Self.create(file, text: Self.template)
        } catch {
            throw CommandLine.fail(error)
        }
        print("wrote \(file): `ferry serve --config \(file)` starts the server, `ferry run \(file)` runs the jobs")
    }

    /// Creates `path` with `text`; fails, writing nothing, when it exists or cannot be created.
    static func create(_ path: String, text: String) throws(SyncError) {
        let descriptor = open(path, O_WRONLY | O_CREAT | O_EXCL, 0o644)
        guard descriptor >= 0 else {
            let code = errno
            let folder = WritableFolder.of(path)
            switch code {
            case EEXIST: throw SyncError(.io, "\(path) already exists: nothing written (remove it, or give another path)")
            case ENOENT: throw SyncError(.io, "cannot write \(path): the folder \(folder) does not exist")
            case ENOTDIR: throw SyncError(.io, "cannot write \(path): \(folder) is not a folder")
            case EACCES, EPERM, EROFS: throw SyncError(.io, "cannot write \(path): \(WritableFolder.message(folder, code))")
            default: throw SyncError(.io, "cannot write \(path): \(String(cString: strerror(code)))")
            }
        }
        let bytes = Array(text.utf8)
        let written = bytes.withUnsafeBytes { write(descriptor, $0.baseAddress, $0.count) }
        let closed = close(descriptor)
        guard written == bytes.count, closed == 0 else {
            let reason = String(cString: strerror(errno))
            unlink(path)  // not half a file
            throw SyncError(.io, "cannot write \(path): \(reason)")
        }
    }

    /// What `ferry init` writes: accepted as it is by `ferry serve --config` and `ferry run`.
    static let template = """
        # ferry.yml, written by `ferry init`.
        #
        #   ferry serve --config ferry.yml   runs the server with the server: section
        #   ferry run ferry.yml              runs the jobs: section, each job on its schedule
        #
        # Every server setting, with its default: `ferry serve --list-settings`.
        # FERRY_<SETTING> environment variables and flags override this file: keep secrets
        # (passwords, tokens) in the environment, not here. Unknown keys are errors.

        server:
          # Where to listen (0.0.0.0: every interface; port 0: any free port).
          host: 127.0.0.1
          port: 8888
          # The SQLite database lives in this folder. To store in PostgreSQL instead, set
          # FERRY_DATABASE=postgres://USER:PASSWORD@HOST:5432/DB in the environment
          # (or a database: line here, without the password in the file).
          data: ./ferry-data
          # trace, debug, info, notice, warning, error or critical.
          log_level: info
          # Most sub-requests in one /batch, and the largest request body in bytes:
          # batch_max_requests: 1000
          # max_body_size: 1048576

        jobs:
          # An example: copy the server's users collection into a SQLite file every five
          # minutes, reading only what changed since the last run (deletes included).
          # Its checkpoint is kept in .ferry/state.db; `ferry status` shows its runs.
          users-backup:
            source: http://127.0.0.1:8888/v1/buckets/main/collections/users
            # Credentials from the environment, never in the file:
            # source_auth: ${FERRY_SOURCE_AUTH}
            target: sqlite:backup.db#users
            mode: incremental        # full | incremental | diff
            schedule: every 5m       # once | every 30s | cron */5 * * * * | follow | webhook
            # transform: { rename: { username: name }, drop: [internal], filter: ["age>=18"] }
            # verify: true           # compare both sides (count and digest) after each run

        """
}
