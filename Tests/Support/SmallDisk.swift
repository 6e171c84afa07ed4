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

    /// Runs a command (mount, umount …) through ``Spawn`` (posix_spawn and waitpid): Foundation's
    /// `waitUntilExit()` once never saw a finished child end.
    static func run(_ arguments: [String]) -> (Int32, String) {
        do {
            let result = try Spawn.run("/usr/bin/env", arguments)
            return (result.status, result.stdout + result.stderr)
        } catch {
            return (-1, "\(error)")
        }
    }
}

/// A folder that can be made read-only and writable again under the processes using it: a bind
/// mount of a temporary folder on itself, remounted `ro`/`rw`. Root ignores permission bits, not a
/// read-only mount. Linux refuses to remount it read-only while a process has a file in it open
/// for writing (EBUSY), so a server is stopped before ``makeReadOnly()`` and started again after.
public final class ReadOnlyMount: @unchecked Sendable {
    public let path: String
    private var mounted = true

    private init(path: String) {
        self.path = path
    }

    /// A new temporary folder mounted on itself (writable), or nil after printing why `test` is skipped.
    public static func orSkip(_ test: String) -> ReadOnlyMount? {
        let path: String
        do {
            path = try temporaryDirectory("readonly")
        } catch {
            print("\(test) skipped: cannot make a folder: \(error)")
            return nil
        }
        let (status, output) = SmallDisk.run(["mount", "--bind", path, path])
        guard status == 0 else {
            print("\(test) skipped: cannot bind-mount a folder (needs root; CI runs as root): \(output)")
            return nil
        }
        return ReadOnlyMount(path: path)
    }

    public func makeReadOnly() throws { try remount("ro") }
    public func makeWritable() throws { try remount("rw") }

    private func remount(_ mode: String) throws {
        let (status, output) = SmallDisk.run(["mount", "-o", "remount,bind,\(mode)", path])
        guard status == 0 else { throw SmallDisk.MountError(description: "remount \(mode) failed: \(output)") }
    }

    public func remove() {
        guard mounted else { return }
        mounted = false
        _ = SmallDisk.run(["umount", "-l", path])
        try? FileManager.default.removeItem(atPath: path)
    }

    deinit { remove() }
}
