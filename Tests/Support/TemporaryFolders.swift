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
