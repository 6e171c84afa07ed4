import Foundation

/// A new folder for one test. All of them sit in one folder of this test process's own,
/// removed when the process exits, so runs do not pile folders up in the temporary directory.
/// - Parameter prefix: the start of its name, to tell what made it.
public func temporaryDirectory(_ prefix: String = "test") throws -> String {
    let path = TemporaryFolders.root + "/" + prefix + "-" + UUID().uuidString
    try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    return path
}

enum TemporaryFolders {
    static let root: String = {
        let root = NSTemporaryDirectory() + "ferry-tests-\(getpid())"
        atexit { try? FileManager.default.removeItem(atPath: TemporaryFolders.root) }
        return root
    }()
}

/// A ``temporaryDirectory(_:)`` of its own, removed when the last one holding it lets go (a
/// restarted server keeps its predecessor's folder by holding the same one).
public final class TempDir: Sendable {
    public let path: String

    public init(_ prefix: String = "sync") throws {
        path = try temporaryDirectory(prefix)
    }

    deinit { try? FileManager.default.removeItem(atPath: path) }

    /// The path of `name` in the folder.
    public func file(_ name: String) -> String { path + "/" + name }
}
