import Crypto
import FerryCore
import Foundation
import NIOConcurrencyHelpers

/// The files of attachments, in a folder of their own: `<folder>/<bucket>/<collection>/<record>/<sha256>`.
///
/// Content-addressed within a record's folder: a file's name is the SHA-256 of its bytes, so an
/// upload of the same bytes again is the same file, and a name proves its content. Files are
/// kept per record, not shared across records, so removing a record's files needs no reference
/// counting: its folder goes with it (and a collection's or bucket's with them).
///
/// Writes are atomic: a temporary file in `<folder>/.incoming`, fsynced, renamed into place,
/// and its folder fsynced. Ids are Kinto ids (letters, digits, `_`, `-`) checked by ``Route``,
/// and file names are hashes this type computed: no client text ever becomes a path.
final class AttachmentStore: Sendable {
    let settings: AttachmentSettings
    /// Records whose upload is between its file and its commit: cleaning leaves their folders alone.
    private let uploading = NIOLockedValueBox<[String: Int]>([:])

    init(settings: AttachmentSettings) {
        self.settings = settings
    }

    var folder: String { settings.folder }

    /// Where a record's files live, relative to the folder.
    static func recordFolder(bucket: String, collection: String, record: String) -> String {
        "\(bucket)/\(collection)/\(record)"
    }

    /// The SHA-256 of `bytes`, in lower-case hex.
    static func sha256(_ bytes: [UInt8]) -> String {
        Hex.encode(SHA256.hash(data: bytes))
    }

    /// Whether `name` is a file name this store writes (64 lower-case hex digits).
    static func isFileName(_ name: Substring) -> Bool {
        name.utf8.count == 64 && name.utf8.allSatisfy { (0x30...0x39).contains($0) || (0x61...0x66).contains($0) }
    }

    /// Stores `bytes` for a record: its location (relative to the folder), and whether the file
    /// is new (false when the same bytes were already there).
    func store(_ bytes: [UInt8], hash: String, recordFolder: String) throws -> (location: String, created: Bool) {
        let location = recordFolder + "/" + hash
        let path = folder + "/" + location
        if FileManager.default.fileExists(atPath: path) { return (location, false) }
        let incoming = folder + "/.incoming"
        try FileManager.default.createDirectory(atPath: incoming, withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: folder + "/" + recordFolder, withIntermediateDirectories: true)
        let temporary = incoming + "/" + UUID().uuidString
        do {
            try Self.writeSynced(bytes, to: temporary)
            guard rename(temporary, path) == 0 else { throw POSIXError(.init(rawValue: errno) ?? .EIO) }
            Self.syncFolder(folder + "/" + recordFolder)
        } catch {
            unlink(temporary)
            throw error
        }
        return (location, true)
    }

    /// Writes and fsyncs a new file.
    static func writeSynced(_ bytes: [UInt8], to path: String) throws {
        let fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0o644)
        guard fd >= 0 else { throw POSIXError(.init(rawValue: errno) ?? .EIO) }
        defer { close(fd) }
        var written = 0
        try bytes.withUnsafeBytes { raw in
            while written < raw.count {
                let n = write(fd, raw.baseAddress! + written, raw.count - written)
                if n < 0 {
                    if errno == EINTR { continue }
                    throw POSIXError(.init(rawValue: errno) ?? .EIO)
                }
                written += n
            }
        }
        guard fsync(fd) == 0 else { throw POSIXError(.init(rawValue: errno) ?? .EIO) }
    }

    /// Makes a rename in `path` durable.
    static func syncFolder(_ path: String) {
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else { return }
        fsync(fd)
        close(fd)
    }

    /// The bytes at `location`, or nil when there is no such file.
    func read(_ location: String) -> [UInt8]? {
        FileManager.default.contents(atPath: folder + "/" + location).map { [UInt8]($0) }
    }

    /// Removes one file (and its record's folder when that is left empty).
    func remove(_ location: String) {
        let path = folder + "/" + location
        try? FileManager.default.removeItem(atPath: path)
        let parent = (path as NSString).deletingLastPathComponent
        if (try? FileManager.default.contentsOfDirectory(atPath: parent))?.isEmpty == true {
            try? FileManager.default.removeItem(atPath: parent)
        }
    }

    /// Removes a folder (relative) and all it holds.
    func removeFolder(_ relative: String) {
        try? FileManager.default.removeItem(atPath: relative.isEmpty ? folder : folder + "/" + relative)
    }

    /// Whether a file or folder (relative) exists.
    func exists(_ relative: String) -> Bool {
        FileManager.default.fileExists(atPath: folder + "/" + relative)
    }

    /// The names in a folder (relative), without the hidden ones (`.incoming`).
    func names(in relative: String) -> [String] {
        let path = relative.isEmpty ? folder : folder + "/" + relative
        return ((try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []).filter { !$0.hasPrefix(".") }.sorted()
    }

    /// Marks a record's folder as taking an upload until `end` is called.
    func beginUpload(_ recordFolder: String) {
        uploading.withLockedValue { $0[recordFolder, default: 0] += 1 }
    }

    func endUpload(_ recordFolder: String) {
        uploading.withLockedValue {
            $0[recordFolder, default: 1] -= 1
            if $0[recordFolder] == 0 { $0[recordFolder] = nil }
        }
    }

    func isUploading(_ recordFolder: String) -> Bool {
        uploading.withLockedValue { $0[recordFolder] != nil }
    }
}
