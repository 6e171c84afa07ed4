#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Reads a file as lines of bytes, in 1 MiB chunks, without loading it whole.
///
/// A line ends at `\n`; a `\r` before it is dropped. Line numbers start at 1.
struct LineReader: ~Copyable {
    private let fd: Int32
    private var buffer: [UInt8] = []
    private var start = 0
    private var eof = false
    private(set) var lineNumber = 0
    /// Bytes handed out so far (for progress).
    private(set) var bytesRead = 0

    init(path: String) throws(SyncError) {
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else {
            throw SyncError(errno == ENOENT ? .notFound : .io, "cannot read \(path): \(String(cString: strerror(errno)))")
        }
        var info = stat()
        if fstat(fd, &info) == 0, (info.st_mode & S_IFMT) == S_IFDIR {
            close(fd)
            throw SyncError(.io, "cannot read \(path): it is a directory")
        }
        self.fd = fd
    }

    deinit { close(fd) }

    /// Calls `body` with the next line, or returns false at the end of the file.
    mutating func next<R>(_ body: (ArraySlice<UInt8>) throws -> R) throws -> R? {
        while true {
            if let newline = newline(from: start) {
                var end = newline
                if end > start, buffer[end - 1] == UInt8(ascii: "\r") { end -= 1 }
                let line = buffer[start..<end]
                bytesRead += newline + 1 - start
                start = newline + 1
                lineNumber += 1
                return try body(line)
            }
            if eof {
                guard start < buffer.count else { return nil }
                var end = buffer.count
                if buffer[end - 1] == UInt8(ascii: "\r") { end -= 1 }
                let line = buffer[start..<end]
                bytesRead += buffer.count - start
                start = buffer.count
                lineNumber += 1
                return try body(line)
            }
            try fill()
        }
    }

    /// The index of the next `\n` at or after `from` (memchr: the generic search was most of
    /// this reader's own time in a CSV load's profile).
    private func newline(from: Int) -> Int? {
        buffer.withUnsafeBytes { raw -> Int? in
            guard from < raw.count, let base = raw.baseAddress,
                  let found = memchr(base + from, Int32(UInt8(ascii: "\n")), raw.count - from) else { return nil }
            return base.distance(to: UnsafeRawPointer(found))
        }
    }

    private mutating func fill() throws(SyncError) {
        if start > 0 {
            buffer.removeFirst(start)
            start = 0
        }
        let chunk = 1 << 20
        let old = buffer.count
        buffer.reserveCapacity(old + chunk)
        var readCount = 0
        buffer.append(contentsOf: repeatElement(0, count: chunk))
        buffer.withUnsafeMutableBytes { raw in
            readCount = read(fd, raw.baseAddress! + old, chunk)
        }
        guard readCount >= 0 else {
            buffer.removeLast(chunk)
            throw SyncError(.io, "read failed: \(String(cString: strerror(errno)))")
        }
        buffer.removeLast(chunk - readCount)
        if readCount == 0 { eof = true }
    }
}

/// Writes a file through a buffer, then makes it durable and moves it into place.
final class AtomicFileWriter {
    let path: String
    let temporaryPath: String
    private let fd: Int32
    private var buffer: [UInt8] = []
    private var done = false

    init(path: String) throws(SyncError) {
        self.path = path
        temporaryPath = path + ".ferry-\(getpid()).tmp"
        fd = open(temporaryPath, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        guard fd >= 0 else {
            throw SyncError(.io, "cannot write \(path): \(String(cString: strerror(errno)))")
        }
        buffer.reserveCapacity(1 << 20)
    }

    deinit {
        if !done {
            close(fd)
            unlink(temporaryPath)
        }
    }

    func write(_ bytes: some Sequence<UInt8>) throws(SyncError) {
        buffer.append(contentsOf: bytes)
        if buffer.count >= 1 << 20 { try flush() }
    }

    private func flush() throws(SyncError) {
        var offset = 0
        while offset < buffer.count {
            let n = buffer.withUnsafeBytes { Glibc.write(fd, $0.baseAddress! + offset, $0.count - offset) }
            guard n > 0 else { throw SyncError(.io, "cannot write \(path): \(String(cString: strerror(errno)))") }
            offset += n
        }
        buffer.removeAll(keepingCapacity: true)
    }

    /// Flushes, fsyncs and renames over `path`: readers see the old file or the new one, never half.
    func commit() throws(SyncError) {
        try flush()
        guard fsync(fd) == 0 else { throw SyncError(.io, "cannot sync \(temporaryPath): \(String(cString: strerror(errno)))") }
        close(fd)
        done = true
        guard rename(temporaryPath, path) == 0 else {
            unlink(temporaryPath)
            throw SyncError(.io, "cannot replace \(path): \(String(cString: strerror(errno)))")
        }
        // Make the rename itself durable.
        let directory = path.contains("/") ? String(path[..<path.lastIndex(of: "/")!]) : "."
        let dfd = open(directory.isEmpty ? "/" : directory, O_RDONLY)
        if dfd >= 0 {
            fsync(dfd)
            close(dfd)
        }
    }
}
