import Foundation

/// A small file system of its own (tmpfs) for disk-fault tests: a data folder that fills up, and
/// space that comes back (``resize(megabytes:)``) while the process using it keeps running.
///
/// Mounting needs root (CI runs as root); ``make(megabytes:)`` answers nil with the reason where
/// it cannot, and the test skips saying so.
public final class SmallDisk: @unchecked Sendable {
    public let path: String
    private var mounted = true

    private init(path: String) {
        self.path = path
    }

    /// A tmpfs of `megabytes` at a new temporary folder, or the reason there cannot be one.
    public static func make(megabytes: Int) -> Result<SmallDisk, MountError> {
        let path: String
        do {
            path = try temporaryDirectory("disk")
        } catch {
            return .failure(MountError(description: "cannot make a folder: \(error)"))
        }
        let (status, output) = run(["mount", "-t", "tmpfs", "-o", "size=\(megabytes)m", "tmpfs", path])
        guard status == 0 else {
            return .failure(MountError(description: "cannot mount a tmpfs (needs root; CI runs as root): \(output)"))
        }
        return .success(SmallDisk(path: path))
    }

    /// ``make(megabytes:)``, or nil after printing why `test` is skipped.
    public static func orSkip(megabytes: Int, _ test: String) -> SmallDisk? {
        switch make(megabytes: megabytes) {
        case .success(let disk): return disk
        case .failure(let reason):
            print("\(test) skipped: \(reason)")
            return nil
        }
    }

    /// Gives the file system `megabytes` (more: space comes back; its files stay).
    public func resize(megabytes: Int) throws {
        let (status, output) = Self.run(["mount", "-o", "remount,size=\(megabytes)m", path])
        guard status == 0 else { throw MountError(description: "remount failed: \(output)") }
    }

    /// Unmounts (lazily: a killed process's files may still be closing).
    public func remove() {
        guard mounted else { return }
        mounted = false
        _ = Self.run(["umount", "-l", path])
        try? FileManager.default.removeItem(atPath: path)
    }

    deinit { remove() }

    public struct MountError: Error, CustomStringConvertible {
        public let description: String
    }

    private static func run(_ arguments: [String]) -> (Int32, String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = arguments
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        do {
            try process.run()
        } catch {
            return (-1, "\(error)")
        }
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: data, as: UTF8.self))
    }
}
