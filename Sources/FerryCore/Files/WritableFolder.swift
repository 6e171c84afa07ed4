import Foundation

/// Whether this process can create and write a file, and the one sentence every command says
/// when it cannot: the server opening its database, the engine opening a SQLite target or its
/// state database, `ferry init` writing its file.
package enum WritableFolder {
    /// The folder a file at `path` is in: "." for a bare file name.
    package static func of(_ path: String) -> String {
        let folder = (path as NSString).deletingLastPathComponent
        return folder.isEmpty ? "." : folder
    }

    /// "the folder F is not writable: REASON" when files cannot be created in the folder of
    /// `path`, "the file P is not writable: REASON" when `path` exists and cannot be written;
    /// nil when both can. An `access(2)` or two: cheap enough for a write path that asks at most
    /// once a second.
    package static func problem(for path: String) -> String? {
        let folder = of(path)
        if access(folder, W_OK) != 0 { return message(folder, errno) }
        if access(path, W_OK) != 0, errno != ENOENT { return "the file \(path) is not writable: \(String(cString: strerror(errno)))" }
        return nil
    }

    /// "the folder F is not writable: REASON", `code` the `errno` that said so.
    package static func message(_ folder: String, _ code: Int32) -> String {
        "the folder \(folder) is not writable: \(String(cString: strerror(code)))"
    }
}
