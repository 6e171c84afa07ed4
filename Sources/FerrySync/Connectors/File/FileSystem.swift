#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The few file-system questions connectors ask.
enum FileSystem {
    static func exists(_ path: String) -> Bool {
        access(path, F_OK) == 0
    }

    static func isWritableDirectory(_ path: String) -> Bool {
        var info = stat()
        return stat(path, &info) == 0 && (info.st_mode & S_IFMT) == S_IFDIR && access(path, W_OK) == 0
    }

    /// Creates a folder and its parents (like `mkdir -p`).
    static func createDirectory(_ path: String) throws(SyncError) {
        var current = path.hasPrefix("/") ? "" : "."
        for part in path.split(separator: "/") {
            current += "/" + part
            if mkdir(current, 0o755) != 0 && errno != EEXIST {
                throw SyncError(.io, "cannot create folder \(current): \(String(cString: strerror(errno)))")
            }
        }
    }

    /// Removes a SQLite database file and the journal files beside it (a target a failed run created).
    static func removeDatabase(_ path: String) {
        for suffix in ["", "-wal", "-shm", "-journal"] { unlink(path + suffix) }
    }

    /// Removes `PATH.ferry-PID.tmp` files a killed run left behind (see ``AtomicFileWriter``).
    static func removeStaleTemporaries(of path: String) {
        let slash = path.lastIndex(of: "/")
        let folder = slash.map { String(path[..<$0]) } ?? "."
        let name = slash.map { String(path[path.index(after: $0)...]) } ?? path
        guard let dir = opendir(folder.isEmpty ? "/" : folder) else { return }
        defer { closedir(dir) }
        while let entry = readdir(dir) {
            let entryName = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix(while: { $0 != 0 }), as: UTF8.self)
            }
            guard entryName.hasPrefix(name + ".ferry-"), entryName.hasSuffix(".tmp") else { continue }
            let pidText = entryName.dropFirst(name.count + 7).dropLast(4)
            // Only a file whose writer is gone.
            if let pid = Int32(pidText), pid != getpid(), kill(pid, 0) == 0 { continue }
            unlink((folder.isEmpty ? "" : folder) + "/" + entryName)
        }
    }
}
