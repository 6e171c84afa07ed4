/// The kinto-attachment plugin's settings, as Ferry serves them (`attachment_*` in `ferry.yml`).
public struct AttachmentSettings: Sendable, Equatable {
    /// The folder files are kept in (`<data>/attachments`).
    public var folder: String
    /// What a record's `attachment.location` is relative to, announced as
    /// `capabilities.attachments.base_url`; nil: this server's own `/attachments/`.
    public var baseURL: String? = nil
    /// The largest file, in bytes (413 above). kinto-attachment leaves it to the proxy in
    /// front; Ferry bounds it itself: 25 MiB.
    public var maxSize: Int = 25 << 20
    /// Allowed file extensions, lower case without the dot (kinto-attachment's
    /// `attachment.extensions`); nil: any (its default).
    public var extensions: Set<String>? = nil
    /// Allowed media types, lower case (`text/plain`, or `image/*` for a whole type); nil: any.
    public var mimetypes: Set<String>? = nil
    /// Keep a file when its record, collection or bucket is deleted or its attachment replaced
    /// (kinto-attachment's `attachment.keep_old_files`).
    public var keepOldFiles: Bool = false
    /// Serve files to anyone (as a public CDN would); else only to who may read the record.
    public var publicRead: Bool = false

    public init(folder: String) {
        self.folder = folder
    }

    /// Whether `filename`'s extension is allowed (always, when any is).
    func allows(filename: String) -> Bool {
        guard let extensions else { return true }
        guard let dot = filename.lastIndex(of: "."), dot != filename.startIndex else { return false }
        return extensions.contains(filename[filename.index(after: dot)...].lowercased())
    }

    /// Whether `mimetype` (without parameters) is allowed.
    func allows(mimetype: String) -> Bool {
        guard let mimetypes else { return true }
        let type = mimetype.lowercased()
        if mimetypes.contains(type) { return true }
        guard let slash = type.firstIndex(of: "/") else { return false }
        return mimetypes.contains(type[..<slash] + "/*")
    }
}
