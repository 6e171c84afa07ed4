import Crypto
public import FerryCore
import Foundation
import NIOHTTP1

/// An endpoint that can hand over the file of a record's `attachment` (kinto-attachment's
/// `{location, hash, size, filename, mimetype}`), checked against its hash.
public protocol AttachmentSource: AnyObject {
    /// The file's bytes, after checking their SHA-256 (and size) against `attachment`.
    /// - Throws: ``SyncError`` saying which file could not be fetched or did not match.
    func attachmentFile(_ attachment: [String: JSON]) async throws -> [UInt8]
}

/// A writer that copies attachments along with their records, from the source it is given.
public protocol AttachmentReceiving: AnyObject {
    var attachmentSource: (any AttachmentSource)? { get set }
}

extension KintoEndpoint: AttachmentSource {
    public func attachmentFile(_ attachment: [String: JSON]) async throws -> [UInt8] {
        guard let location = attachment["location"]?.stringValue, let hash = attachment["hash"]?.stringValue?.lowercased() else {
            throw SyncError(.protocolError, "\(displayName): an attachment without location or hash")
        }
        // kinto-attachment before 6 wrote absolute URLs; later ones are relative to base_url.
        let url: String
        if location.hasPrefix("http://") || location.hasPrefix("https://") {
            url = location
        } else {
            guard let base = attachmentBaseURL else {
                throw SyncError(.protocolError, "\(displayName): the record has an attachment at \(location), but the server announces no capabilities.attachments.base_url")
            }
            url = base + location
        }
        // Credentials go only to the server itself, never to another origin (a CDN).
        let sameOrigin = url.hasPrefix(http.origin + "/")
        let response = try await http.send(.GET, url, accept: "*/*", anonymous: !sameOrigin)
        guard response.status == 200 else {
            throw HTTPTransport.failure(status: response.status, endpoint: displayName, peer: "server", context: "fetching the attachment \(url)", said: nil)
        }
        let actual = Hex.encode(SHA256.hash(data: response.body))
        guard actual == hash else {
            throw SyncError(.protocolError, "\(displayName): the attachment \(url) has SHA-256 \(actual), but its record says \(hash)")
        }
        if let size = attachment["size"]?.intValue, Int(size) != response.body.count {
            throw SyncError(.protocolError, "\(displayName): the attachment \(url) is \(response.body.count) bytes, but its record says \(size)")
        }
        return response.body
    }
}

extension KintoWriter: AttachmentReceiving {}

extension KintoWriter {
    /// Whether a change carries a file to copy: an upsert whose `attachment` names a hash.
    func carriesAttachment(_ change: Change) -> Bool {
        guard attachmentSource != nil, case .upsert(let record) = change,
              case .object(let attachment)? = record.fields["attachment"] else { return false }
        return attachment["hash"]?.stringValue != nil
    }

    /// Copies one record with its attachment: the file from the source (hash checked), the
    /// record's data by `PUT`, then the file by `POST …/attachment`, whose answer must name the
    /// same hash. Any failure is a refused change (a dead letter), never a silent success.
    func applyWithAttachment(_ change: Change, into outcome: inout ApplyOutcome) async {
        guard let source = attachmentSource, case .upsert(let record) = change,
              case .object(let attachment)? = record.fields["attachment"] else { return }
        let recordURL = endpoint.recordsURL + "/" + KintoEndpoint.escape(change.key.text)
        do {
            let file = try await source.attachmentFile(attachment)
            var data = record.fields
            if endpoint.options.keyField == "id" { data.removeValue(forKey: "id") }
            data.removeValue(forKey: "last_modified")
            data.removeValue(forKey: "attachment")
            let put = try await endpoint.http.send(.PUT, recordURL, body: JSON.object(["data": .object(data)]).serializedBytes())
            guard put.status == 200 || put.status == 201 else {
                throw KintoEndpoint.failure(put, endpoint.displayName, "writing record \(change.key.text)")
            }
            let filename = attachment["filename"]?.stringValue ?? "file"
            let mimetype = attachment["mimetype"]?.stringValue ?? "application/octet-stream"
            let (body, contentType) = Self.multipart(file: file, filename: filename, mimetype: mimetype)
            let post = try await endpoint.http.send(.POST, recordURL + "/attachment", body: body, headers: [("Content-Type", contentType)])
            guard post.status == 201 || post.status == 200 else {
                throw KintoEndpoint.failure(post, endpoint.displayName, "uploading the attachment of record \(change.key.text)")
            }
            let written = try KintoEndpoint.json(post, endpoint.displayName, "POST attachment")["hash"]?.stringValue
            guard written == attachment["hash"]?.stringValue?.lowercased() else {
                throw SyncError(.protocolError, "\(endpoint.displayName): the attachment of record \(change.key.text) was stored with hash \(written ?? "none"), not the source's")
            }
            if put.status == 201 { outcome.created += 1 } else { outcome.updated += 1 }
        } catch {
            let reason = (error as? SyncError)?.message ?? "\(error)"
            outcome.rejected.append((change, reason))
        }
    }

    /// A `multipart/form-data` body holding one file in the field `attachment`.
    static func multipart(file: [UInt8], filename: String, mimetype: String) -> (body: [UInt8], contentType: String) {
        let boundary = "ferry-" + UUID().uuidString
        // A name with quotes or line breaks cannot go in the header as it is.
        let safeName = String(filename.unicodeScalars.filter { $0 != "\"" && $0 != "\\" && $0.value >= 0x20 && $0.value != 0x7F }.map(Character.init))
        let safeType = mimetype.unicodeScalars.allSatisfy({ $0.value > 0x20 && $0.value < 0x7F }) ? mimetype : "application/octet-stream"
        var body = Array("--\(boundary)\r\nContent-Disposition: form-data; name=\"attachment\"; filename=\"\(safeName.isEmpty ? "file" : safeName)\"\r\nContent-Type: \(safeType)\r\n\r\n".utf8)
        body += file
        body += Array("\r\n--\(boundary)--\r\n".utf8)
        return (body, "multipart/form-data; boundary=\(boundary)")
    }
}
