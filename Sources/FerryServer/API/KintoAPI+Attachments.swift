import FerryCore
import FerryStore
import Foundation
import HTTPTypes
import NIOPosix

/// The kinto-attachment plugin's API: `POST …/records/{id}/attachment` (a multipart upload that
/// creates or updates the record) and `DELETE …/records/{id}/attachment`. The permission rules
/// are the record's: `record:create` on the collection for a new record, `write` on it otherwise.
extension KintoAPI {
    /// A parsed upload: the file and what goes into the record with it.
    struct AttachmentUpload: Sendable {
        var file: [UInt8]
        var filename: String
        var mimetype: String
        var data: [String: JSON]
        var permissions: JSON?
    }

    /// The error of a bad upload: 400, Kinto's `invalid posted data`, located in the body.
    static func badUpload(_ name: String, _ description: String) -> KintoError {
        KintoError(status: 400, errno: KintoError.Errno.invalidPostedData, error: "Invalid parameters",
                   message: "body: \(description)",
                   details: .array([.object(["location": "body", "name": .string(name), "description": .string(description)])]))
    }

    /// 413 for a file over `attachment_max_size` (or a body that cannot fit under it).
    static func attachmentTooLarge(_ limit: Int) -> KintoError {
        KintoError(status: 413, errno: KintoError.Errno.requestTooLarge, error: "Request Entity Too Large",
                   message: "The attachment is too large: the limit is \(limit) bytes (attachment_max_size)")
    }

    /// The largest body an upload may send: the file, plus the `data` and `permissions` fields
    /// (each under the ordinary body limit) and the multipart framing.
    var attachmentBodyLimit: Int {
        (settings.attachments?.maxSize ?? 0) + settings.maxBodySize + 64 * 1024
    }

    /// The checks that need no body: the media type of the request, the declared length, and
    /// whether the caller may write the record. Run before the body is read.
    func attachmentPrecheck(_ request: APIRequest, path: ObjectPath) async -> APIResponse? {
        do {
            try refuseWriteIfReadonly(request)
            if request.method == .post {
                do {
                    _ = try MultipartFormData.boundary(contentType: request.header("Content-Type"))
                } catch {
                    throw KintoError.invalidParameters(location: "header", name: "Content-Type", description: error.description)
                }
                if let length = request.header("Content-Length").flatMap(Int.init), length > attachmentBodyLimit {
                    throw Self.attachmentTooLarge(settings.attachments?.maxSize ?? 0)
                }
            }
            try await storage.read { session in
                let handler = ResourceHandler(api: self, request: request, path: path, session: session)
                if try session.get(path.storageKey, id: path.id!, includeDeleted: false) != nil {
                    try handler.authorize("write", id: path.id!)
                } else if request.method == .delete {
                    _ = try handler.existingObject(permission: "write")
                } else {
                    try handler.authorize(path.createPermission, id: nil)
                    try handler.ensureParents()
                }
            }
            return nil
        } catch {
            return errorResponse(error)
        }
    }

    /// Parses and checks an upload's body: the fields kinto-attachment takes (`attachment`, and
    /// optional `data` and `permissions` as JSON text), the file's name, type and size.
    func parseUpload(_ request: APIRequest) throws(KintoError) -> AttachmentUpload {
        guard let limits = settings.attachments else { throw KintoError.missingResource }
        let boundary: String
        let parts: [MultipartFormData.Part]
        do {
            boundary = try MultipartFormData.boundary(contentType: request.header("Content-Type"))
        } catch {
            throw .invalidParameters(location: "header", name: "Content-Type", description: error.description)
        }
        do {
            parts = try MultipartFormData.parse(request.body, boundary: boundary)
        } catch {
            throw Self.badUpload("attachment", "Malformed multipart body: \(error.description)")
        }
        var upload = AttachmentUpload(file: [], filename: "", mimetype: "application/octet-stream", data: [:])
        var file: MultipartFormData.Part?
        for part in parts {
            switch part.name {
            case "attachment":
                file = part
            case "data", "permissions":
                guard part.filename == nil else { throw Self.badUpload(part.name, "\(part.name) must be a form field, not a file") }
                guard part.content.count <= settings.maxBodySize else { throw .tooLarge(limit: settings.maxBodySize) }
                let json: JSON
                do {
                    json = try JSON.parse(bytes: part.content)
                } catch {
                    throw Self.badUpload(part.name, "\(part.name) is not valid JSON (\(error))")
                }
                guard case .object(let members) = json else {
                    throw Self.badUpload(part.name, "\(part.name) must be a JSON object, not \(json.typeName)")
                }
                if part.name == "data" { upload.data = members } else { upload.permissions = json }
            default:
                throw Self.badUpload(part.name, "'\(part.name)' not in ('attachment', 'data', 'permissions')")
            }
        }
        guard let file else { throw Self.badUpload("attachment", "Attachment missing.") }
        guard let filename = file.filename, !filename.isEmpty else {
            throw Self.badUpload("attachment", "Filename is required.")
        }
        guard Self.isSafeFilename(filename) else {
            throw Self.badUpload("attachment", "Invalid filename: a file name without folders (no / or \\), dots alone or control characters, at most 255 bytes")
        }
        guard file.content.count <= limits.maxSize else { throw Self.attachmentTooLarge(limits.maxSize) }
        guard limits.allows(filename: filename) else { throw Self.badUpload("attachment", "File extension is not allowed.") }
        let mimetype = (file.contentType ?? "application/octet-stream").split(separator: ";").first.map { $0.trimmingCharacters(in: .whitespaces) } ?? ""
        guard Self.isMediaType(mimetype) else {
            throw Self.badUpload("attachment", "Invalid Content-Type of the file: \(mimetype.prefix(100)) (expected type/subtype)")
        }
        guard limits.allows(mimetype: mimetype) else { throw Self.badUpload("attachment", "File type is not allowed.") }
        if upload.data["attachment"] != nil {
            throw Self.badUpload("data", "data.attachment is set by the upload itself")
        }
        upload.file = file.content
        upload.filename = filename
        upload.mimetype = mimetype
        return upload
    }

    /// A plain file name: no folder separators, not `.` or `..`, no control characters.
    static func isSafeFilename(_ name: String) -> Bool {
        guard !name.isEmpty, name.utf8.count <= 255, name != ".", name != ".." else { return false }
        return !name.unicodeScalars.contains { $0 == "/" || $0 == "\\" || $0.value < 0x20 || $0.value == 0x7F }
    }

    /// `type/subtype` of RFC 6838 token characters.
    static func isMediaType(_ text: String) -> Bool {
        let halves = text.split(separator: "/", omittingEmptySubsequences: false)
        guard halves.count == 2, text.utf8.count <= 255 else { return false }
        let allowed = Set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!#$&-^_.+".utf8)
        return halves.allSatisfy { !$0.isEmpty && $0.utf8.allSatisfy(allowed.contains) }
    }

    /// `POST …/attachment`: stores the file (atomically, before the transaction), then creates
    /// or updates the record in one write transaction; a refused write removes the new file.
    func uploadAttachment(_ request: APIRequest, path: ObjectPath, effects: WriteEffects) async throws -> APIResponse {
        guard let store = attachments else { throw KintoError.missingResource }
        try refuseWriteIfReadonly(request)
        let upload = try parseUpload(request)
        let recordFolder = AttachmentStore.recordFolder(bucket: path.bucket, collection: path.collection!, record: path.id!)
        let hash = AttachmentStore.sha256(upload.file)
        store.beginUpload(recordFolder)
        defer { store.endUpload(recordFolder) }
        let stored: (location: String, created: Bool)
        do {
            // Written and fsynced on NIO's blocking-I/O threads: an fsync on a busy disk takes
            // seconds, and on Swift's cooperative pool (as many threads as cores) it would stall
            // every other request of the process meanwhile.
            let file = upload.file
            stored = try await NIOThreadPool.singleton.runIfActive { try store.store(file, hash: hash, recordFolder: recordFolder) }
        } catch {
            throw KintoError.backend("Cannot store the attachment in \(store.folder): \(error). Retry later.", retryAfter: settings.retryAfterSeconds)
        }
        let metadata: JSON = .object([
            "location": .string(stored.location), "hash": .string(hash), "size": .int(Int64(upload.file.count)),
            "filename": .string(upload.filename), "mimetype": .string(upload.mimetype),
        ])
        var data = upload.data
        data["attachment"] = metadata
        var body: [String: JSON] = ["data": .object(data)]
        if let permissions = upload.permissions { body["permissions"] = permissions }
        var prepared = request
        prepared.path = path.uri
        prepared.body = []
        prepared.headers["content-type"] = "application/json"
        prepared.parsedBody = .object(body)
        let recordBase = prepared
        let response: APIResponse
        do {
            response = try await storage.write(announcing: effects.announcements) { session in
                let exists = try session.get(path.storageKey, id: path.id!, includeDeleted: false) != nil
                var recordRequest = recordBase
                recordRequest.method = exists ? .patch : .put
                var handler = ResourceHandler(api: self, request: recordRequest, path: path, session: session)
                if exists { return try handler.patch() }
                return try handler.put()
            }
        } catch {
            if stored.created { store.remove(stored.location) }
            throw error
        }
        if response.status >= 400 {
            if stored.created { store.remove(stored.location) }
            return response
        }
        // The record's earlier file, if it had another, goes once this upload is over (KintoAPI.handle).
        var answer = APIResponse(status: 201, body: .json(metadata))
        answer.headers.append(("Location", request.baseURL + path.uri))
        return answer
    }

    /// `DELETE …/attachment`: the record's `attachment` becomes null (as kinto-attachment), in a
    /// write transaction; the file goes once it committed.
    func deleteAttachmentOperation(_ request: APIRequest, path: ObjectPath) throws -> Operation {
        try refuseWriteIfReadonly(request)
        var recordRequest = request
        recordRequest.method = .patch
        recordRequest.path = path.uri
        recordRequest.headers["content-type"] = "application/json"
        recordRequest.parsedBody = .object(["data": .object(["attachment": .null])])
        let prepared = recordRequest
        return Operation(.write, session: { session in
            var handler = ResourceHandler(api: self, request: prepared, path: path, session: session)
            let response = try handler.patch()
            return APIResponse(status: 204, headers: response.headers.filter { $0.0 == "ETag" || $0.0 == "Last-Modified" }, body: .empty)
        })
    }

    // MARK: Removing files with their records

    /// Where files may have lost their record: a record, a collection, a bucket, or everything.
    enum AttachmentScope: Hashable, Sendable {
        case all
        case bucket(String)
        case collection(bucket: String, id: String)
        case record(bucket: String, collection: String, id: String)
    }

    /// The scope a successful write on `route` with `method` may have orphaned files in.
    static func attachmentScope(route: Route, method: HTTPRequest.Method) -> AttachmentScope? {
        switch route {
        case .flush: return .all
        case .attachment(let path):
            return .record(bucket: path.bucket, collection: path.collection!, id: path.id!)
        case .object(let path):
            switch path.kind {
            case .record: return .record(bucket: path.bucket, collection: path.collection!, id: path.id!)
            case .collection where method == .delete: return .collection(bucket: path.bucket, id: path.id!)
            case .bucket where method == .delete: return .bucket(path.bucket)
            default: return nil
            }
        case .plural(let path) where method == .delete:
            switch path.kind {
            case .bucket: return .all
            case .collection: return .bucket(path.bucket)
            case .record: return .collection(bucket: path.bucket, id: path.collection!)
            case .group: return nil
            }
        default: return nil
        }
    }

    /// Removes the files no record holds any more in `scopes` (unless `keep_old_files`): the
    /// folders of records, collections and buckets that are gone, and in a record's folder the
    /// files other than its `attachment`'s. Reads the storage; never touches an upload in flight.
    func cleanAttachments(_ scopes: Set<AttachmentScope>, skipUploading: Bool = true) async {
        guard let store = attachments, !store.settings.keepOldFiles, !scopes.isEmpty else { return }
        // Folders first (cheap): most writes have nothing on disk to look at, and the records of
        // a batch share their collection's folder, looked at once.
        var records: [(String, String, String)] = []
        var collections: [(String, String)] = []
        var buckets: [String] = []
        var collectionFolders: [String: Bool] = [:]
        for scope in scopes {
            switch scope {
            case .all: buckets += store.names(in: "")
            case .bucket(let b): if !store.names(in: b).isEmpty { buckets.append(b) }
            case .collection(let b, let c): if !store.names(in: "\(b)/\(c)").isEmpty { collections.append((b, c)) }
            case .record(let b, let c, let r):
                let folder = "\(b)/\(c)"
                if collectionFolders[folder] == nil { collectionFolders[folder] = store.exists(folder) }
                if collectionFolders[folder]!, store.exists(folder + "/" + r) { records.append((b, c, r)) }
            }
        }
        if records.isEmpty && collections.isEmpty && buckets.isEmpty { return }
        let plan = (records, collections, buckets)
        let removals: [(String, String?)]
        do {
            removals = try await storage.read { session in
                var removals: [(String, String?)] = []
                func record(_ b: String, _ c: String, _ r: String) throws {
                    let folder = AttachmentStore.recordFolder(bucket: b, collection: c, record: r)
                    let path = ObjectPath(kind: .record, bucket: b, collection: c, id: r)
                    let object = try session.get(path.storageKey, id: r, includeDeleted: false)
                    let location = try object.flatMap { try $0.parsed()["attachment"]?["location"]?.stringValue }
                    let keep = location.flatMap { $0.hasPrefix(folder + "/") ? String($0.dropFirst(folder.count + 1)) : nil }
                    removals.append((folder, keep))
                }
                func collection(_ b: String, _ c: String) throws {
                    let path = ObjectPath(kind: .collection, bucket: b, id: c)
                    if try session.get(path.storageKey, id: c, includeDeleted: false) == nil {
                        removals.append(("\(b)/\(c)", nil))
                    } else {
                        for r in store.names(in: "\(b)/\(c)") where ObjectID.isValid(r) { try record(b, c, r) }
                    }
                }
                for (b, c, r) in plan.0 { try record(b, c, r) }
                for (b, c) in plan.1 { try collection(b, c) }
                for b in plan.2 where ObjectID.isValid(b) {
                    let path = ObjectPath(kind: .bucket, bucket: "", id: b)
                    if try session.get(path.storageKey, id: b, includeDeleted: false) == nil {
                        removals.append((b, nil))
                    } else {
                        for c in store.names(in: b) where ObjectID.isValid(c) { try collection(b, c) }
                    }
                }
                return removals
            }
        } catch {
            return  // the storage cannot say: keep every file (the next write there cleans)
        }
        for (folder, keep) in removals {
            if skipUploading && store.isUploading(folder) { continue }
            guard let keep else {
                if !(skipUploading && scopesHoldUpload(store, under: folder)) { store.removeFolder(folder) }
                continue
            }
            for name in store.names(in: folder) where name != keep { store.remove(folder + "/" + name) }
        }
    }

    /// Whether an upload is in flight in a record folder under `folder`.
    private func scopesHoldUpload(_ store: AttachmentStore, under folder: String) -> Bool {
        store.names(in: folder).contains { store.isUploading(folder + "/" + $0) } ||
            store.names(in: folder).contains { sub in store.names(in: folder + "/" + sub).contains { store.isUploading(folder + "/" + sub + "/" + $0) } }
    }

    // MARK: Serving files

    /// `GET /attachments/<location>`: the file, with the record's read permission (or to anyone
    /// with `attachment_public`), its media type, `ETag` (its hash) and length.
    func attachmentFile(location: String, identity: Identity, method: HTTPRequest.Method) async -> APIResponse {
        guard let store = attachments else { return APIResponse(error: .missingResource) }
        let pieces = location.split(separator: "/", omittingEmptySubsequences: false)
        guard pieces.count == 4, pieces[0...2].allSatisfy({ ObjectID.isValid(String($0)) }), AttachmentStore.isFileName(pieces[3]) else {
            return APIResponse(error: .missingResource)
        }
        let (b, c, r, name) = (String(pieces[0]), String(pieces[1]), String(pieces[2]), String(pieces[3]))
        guard method == .get || method == .head else { return APIResponse(error: .methodNotAllowed(method, allowed: [.get, .head])) }
        let path = ObjectPath(kind: .record, bucket: b, collection: c, id: r)
        let publicRead = store.settings.publicRead
        let request = APIRequest(method: .get, path: path.uri, identity: identity)
        let mimetype: String?
        do {
            mimetype = try await storage.read { session in
                let handler = ResourceHandler(api: self, request: request, path: path, session: session)
                if !publicRead { try handler.authorize("read", id: r) }
                let object = try session.get(path.storageKey, id: r, includeDeleted: false)
                guard let attachment = try object?.parsed()["attachment"], attachment["hash"]?.stringValue == name else { return nil }
                return attachment["mimetype"]?.stringValue
            }
        } catch {
            return errorResponse(error)
        }
        guard let bytes = try? await NIOThreadPool.singleton.runIfActive({ store.read(location) }) else {
            return APIResponse(error: .missingResource)
        }
        // HEAD: the HTTP layer sends the length without the bytes.
        var response = APIResponse(body: .bytes(bytes, contentType: mimetype ?? "application/octet-stream"))
        response.headers = [("ETag", "\"\(name)\""), ("Cache-Control", publicRead ? "public, max-age=31536000, immutable" : "private, no-cache")]
        return response
    }

    /// `capabilities.attachments` of `GET /v1/`, as kinto-attachment announces it.
    func attachmentCapability(_ request: APIRequest) -> JSON? {
        guard let store = attachments else { return nil }
        var capability: [String: JSON] = [
            "description": "Add file attachments to records",
            "url": "https://github.com/Kinto/kinto-attachment/",
            "base_url": .string(attachmentBaseURL(request)),
            "max_size": .int(Int64(store.settings.maxSize)),
        ]
        if let extensions = store.settings.extensions { capability["extensions"] = .array(extensions.sorted().map { .string($0) }) }
        if let mimetypes = store.settings.mimetypes { capability["mimetypes"] = .array(mimetypes.sorted().map { .string($0) }) }
        return .object(capability)
    }

    /// What `location` is relative to: the setting, else this server's `/attachments/`.
    func attachmentBaseURL(_ request: APIRequest) -> String {
        if let base = attachments?.settings.baseURL { return base.hasSuffix("/") ? base : base + "/" }
        let server = request.baseURL.hasSuffix("/v1") ? String(request.baseURL.dropLast(3)) : request.baseURL
        return server + "/attachments/"
    }
}
