import Crypto
import FerryCore
@testable import FerryServer
import FerryTestSupport
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import NIOCore
import Testing

/// The kinto-attachment API through the server's responder: uploads, the files on disk, serving them, and
/// every bad upload refused with a clear error that leaves the storage and the folder as they were.
@Suite struct AttachmentTests {
    static let record = "/v1/buckets/main/collections/users/records/r1"
    /// Hummingbird's in-memory client, not `.live`: the live test client gives up on an answer
    /// after a fixed 20 s, and in the full suite other tests block Swift's cooperative pool (they
    /// wait for child processes synchronously) for longer than that, which failed these tests in
    /// CI with nothing wrong on the server. The same uploads cross real sockets in
    /// AttachmentSyncTests (two `ferry serve` processes), in the raw-socket test of a huge
    /// declared length, in the two-process PostgreSQL test and in kinto-http's own suite.
    static let framework: TestingSetup = .router

    /// A multipart body: fields as (name, filename, content type, content).
    static func multipart(_ parts: [(String, String?, String?, [UInt8])], boundary: String = "XyZ-boundary") -> [UInt8] {
        var body: [UInt8] = []
        for (name, filename, type, content) in parts {
            var head = "--\(boundary)\r\nContent-Disposition: form-data; name=\"\(name)\""
            if let filename { head += "; filename=\"\(filename)\"" }
            head += "\r\n"
            if let type { head += "Content-Type: \(type)\r\n" }
            head += "\r\n"
            body += Array(head.utf8) + content + Array("\r\n".utf8)
        }
        body += Array("--\(boundary)--\r\n".utf8)
        return body
    }

    static func headers(user: String? = "alice", contentType: String? = "multipart/form-data; boundary=XyZ-boundary",
                        extra: [String: String] = [:]) -> HTTPFields {
        var pairs = extra
        if let user { pairs["Authorization"] = TestServer.basic(user) }
        if let contentType { pairs["Content-Type"] = contentType }
        return Wire.fields(pairs)
    }

    /// Every file under the attachments folder, relative, sorted.
    static func files(_ server: TestServer) -> [String] {
        let root = server.directory + "/attachments"
        guard let walker = FileManager.default.enumerator(atPath: root) else { return [] }
        var found: [String] = []
        while let next = walker.nextObject() as? String {
            var isFolder: ObjCBool = false
            if FileManager.default.fileExists(atPath: root + "/" + next, isDirectory: &isFolder), !isFolder.boolValue { found.append(next) }
        }
        return found.sorted()
    }

    static func sha256(_ bytes: [UInt8]) -> String { SHA256.hash(data: bytes).map { String(format: "%02x", $0) }.joined() }

    @Test func uploadCreatesTheRecordStoresTheFileAndServesIt() async throws {
        let server = try TestServer()
        try await server.seedUsers()
        let file = Array("hello, attachment".utf8)
        let body = Self.multipart([
            ("attachment", "notes.txt", "text/plain", file),
            ("data", nil, nil, Array(#"{"kind": "note"}"#.utf8)),
            ("permissions", nil, nil, Array(#"{"read": ["system.Everyone"]}"#.utf8)),
        ])
        try await server.application.test(Self.framework) { client in
            let hello = try await client.execute(uri: "/v1/", method: .get)
            let base = try #require(Wire.json(hello)["capabilities"]?["attachments"]?["base_url"]?.stringValue)
            #expect(base.hasSuffix("/attachments/"))

            let upload = try await client.execute(uri: Self.record + "/attachment", method: .post, headers: Self.headers(), body: ByteBuffer(bytes: body))
            #expect(upload.status == .created, "\(Wire.json(upload).serialized())")
            let metadata = Wire.json(upload)
            let hash = Self.sha256(file)
            #expect(metadata["hash"]?.stringValue == hash)
            #expect(metadata["size"] == .int(Int64(file.count)))
            #expect(metadata["filename"] == "notes.txt" && metadata["mimetype"] == "text/plain")
            let location = try #require(metadata["location"]?.stringValue)
            #expect(location == "main/users/r1/\(hash)")
            #expect(upload.headers[.location]?.hasSuffix("/v1/buckets/main/collections/users/records/r1") == true)
            #expect(Self.files(server) == [location])

            let record = try await client.execute(uri: Self.record, method: .get, headers: Self.headers(contentType: nil))
            #expect(Wire.json(record)["data"]?["kind"] == "note")
            #expect(Wire.json(record)["data"]?["attachment"] == metadata)
            #expect(Wire.json(record)["permissions"]?["read"] == ["system.Everyone"])

            // Served under the base URL, with its type, hash as ETag, and length.
            let served = try await client.execute(uri: "/attachments/" + location, method: .get)
            #expect(served.status == .ok)
            #expect(Array(served.body.readableBytesView) == file)
            #expect(served.headers[.contentType] == "text/plain")
            #expect(served.headers[.eTag] == "\"\(hash)\"")
            #expect(served.headers[.contentLength] == String(file.count))
            // A page of another origin may fetch it (with its credentials, after a preflight).
            let preflight = try await client.execute(uri: "/attachments/" + location, method: .options, headers: Wire.fields([
                "Origin": "https://app.example", "Access-Control-Request-Method": "GET", "Access-Control-Request-Headers": "authorization"]))
            #expect(preflight.status == .ok && preflight.headers[.accessControlAllowMethods]?.contains("GET") == true)
            let fromPage = try await client.execute(uri: "/attachments/" + location, method: .get, headers: Wire.fields(["Origin": "https://app.example"]))
            #expect(fromPage.headers[.accessControlAllowOrigin] == "*")
            let head = try await client.execute(uri: "/attachments/" + location, method: .head)
            #expect(head.status == .ok && head.headers[.contentLength] == String(file.count) && head.body.readableBytes == 0)

            // Replacing the file removes the old one.
            let second = Array("second version".utf8)
            let replaced = try await client.execute(uri: Self.record + "/attachment", method: .post, headers: Self.headers(),
                                                    body: ByteBuffer(bytes: Self.multipart([("attachment", "notes.txt", "text/plain", second)])))
            #expect(replaced.status == .created)
            #expect(Self.files(server) == ["main/users/r1/\(Self.sha256(second))"])
            let kept = try await client.execute(uri: Self.record, method: .get, headers: Self.headers(contentType: nil))
            #expect(Wire.json(kept)["data"]?["kind"] == "note", "an upload without data keeps the record's fields")

            // DELETE …/attachment: 204, the field is null (as kinto-attachment), the file is gone.
            let removed = try await client.execute(uri: Self.record + "/attachment", method: .delete, headers: Self.headers(contentType: nil))
            #expect(removed.status == .noContent)
            let after = try await client.execute(uri: Self.record, method: .get, headers: Self.headers(contentType: nil))
            #expect(Wire.json(after)["data"]?["attachment"] == .null && Wire.json(after)["data"]?["kind"] == "note")
            #expect(Self.files(server).isEmpty)
            let gone = try await client.execute(uri: "/attachments/" + location, method: .get)
            #expect(gone.status == .notFound)
        }
    }

    @Test func filesAreServedOnlyToReadersUnlessPublic() async throws {
        for publicRead in [false, true] {
            let server = try TestServer { $0.attachmentPublic = publicRead }
            try await server.seedUsers()
            let body = Self.multipart([("attachment", "secret.bin", "application/octet-stream", [1, 2, 3])])
            try await server.application.test(Self.framework) { client in
                let upload = try await client.execute(uri: Self.record + "/attachment", method: .post, headers: Self.headers(), body: ByteBuffer(bytes: body))
                let location = try #require(Wire.json(upload)["location"]?.stringValue)
                let anonymous = try await client.execute(uri: "/attachments/" + location, method: .get)
                #expect(anonymous.status == (publicRead ? .ok : .unauthorized))
                let bob = try await client.execute(uri: "/attachments/" + location, method: .get, headers: Self.headers(user: "bob", contentType: nil))
                #expect(bob.status == (publicRead ? .ok : .forbidden))
                let alice = try await client.execute(uri: "/attachments/" + location, method: .get, headers: Self.headers(contentType: nil))
                #expect(alice.status == .ok && Array(alice.body.readableBytesView) == [1, 2, 3])
                // Paths that are not a stored file's: traversal, other names.
                for bad in ["../ferry.sqlite", "main/users/r1/..%2F..%2F..%2Fferry.sqlite", "main/users/r1/" + String(repeating: "g", count: 64),
                            "main/users/../../secret", "main/users/r1", "%2e%2e/%2e%2e/secret"] {
                    let answer = try await client.execute(uri: "/attachments/" + bad, method: .get, headers: Self.headers(contentType: nil))
                    #expect(answer.status == .notFound, "\(bad)")
                }
                let put = try await client.execute(uri: "/attachments/" + location, method: .put, headers: Self.headers(contentType: nil), body: ByteBuffer(bytes: [9]))
                #expect(put.status == .methodNotAllowed)
            }
        }
    }

    @Test func filesGoWithTheirRecordCollectionBucketOrFlush() async throws {
        let server = try TestServer { $0.flushEndpoint = true }
        let upload: @Sendable (any TestClientProtocol, String, String) async throws -> Void = { client, collection, id in
            let body = Self.multipart([("attachment", "\(id).txt", "text/plain", Array("\(collection)/\(id)".utf8))])
            let answer = try await client.execute(uri: "/v1/buckets/main/collections/\(collection)/records/\(id)/attachment", method: .post,
                                                  headers: Self.headers(), body: ByteBuffer(bytes: body))
            #expect(answer.status == .created)
        }
        try await server.application.test(Self.framework) { client in
            for path in ["/v1/buckets/main", "/v1/buckets/main/collections/a", "/v1/buckets/main/collections/b"] {
                _ = try await client.execute(uri: path, method: .put, headers: Self.headers(contentType: nil))
            }
            for (c, id) in [("a", "r1"), ("a", "r2"), ("a", "r3"), ("b", "r1")] { try await upload(client, c, id) }
            #expect(Self.files(server).count == 4)
            // A record delete, then one in a batch, then the collection, then the bucket.
            _ = try await client.execute(uri: "/v1/buckets/main/collections/a/records/r1", method: .delete, headers: Self.headers(contentType: nil))
            #expect(!Self.files(server).contains { $0.hasPrefix("main/a/r1/") } && Self.files(server).count == 3)
            let batch = #"{"requests": [{"method": "DELETE", "path": "/buckets/main/collections/a/records/r2"}]}"#
            _ = try await client.execute(uri: "/v1/batch", method: .post, headers: Self.headers(contentType: "application/json"), body: ByteBuffer(string: batch))
            #expect(Self.files(server).count == 2)
            // A PUT that replaces the data without the attachment leaves the file without a record.
            _ = try await client.execute(uri: "/v1/buckets/main/collections/a/records/r3", method: .put,
                                         headers: Self.headers(contentType: "application/json"), body: ByteBuffer(string: #"{"data": {"x": 1}}"#))
            #expect(Self.files(server).map { String($0.prefix(7)) } == ["main/b/"])
            try await upload(client, "a", "r4")
            _ = try await client.execute(uri: "/v1/buckets/main/collections/a", method: .delete, headers: Self.headers(contentType: nil))
            #expect(Self.files(server).map { String($0.prefix(7)) } == ["main/b/"])
            _ = try await client.execute(uri: "/v1/buckets/main", method: .delete, headers: Self.headers(contentType: nil))
            #expect(Self.files(server).isEmpty)
            _ = try await client.execute(uri: "/v1/buckets/other", method: .put, headers: Self.headers(contentType: nil))
            _ = try await client.execute(uri: "/v1/buckets/other/collections/c", method: .put, headers: Self.headers(contentType: nil))
            let body = Self.multipart([("attachment", "x.txt", "text/plain", [1])])
            _ = try await client.execute(uri: "/v1/buckets/other/collections/c/records/x/attachment", method: .post, headers: Self.headers(), body: ByteBuffer(bytes: body))
            #expect(Self.files(server).count == 1)
            _ = try await client.execute(uri: "/v1/__flush__", method: .post)
            #expect(Self.files(server).isEmpty)
        }
    }

    @Test func keepOldFilesKeepsThem() async throws {
        let server = try TestServer { $0.attachmentKeepOldFiles = true }
        try await server.seedUsers()
        try await server.application.test(Self.framework) { client in
            for content in ["one", "two"] {
                let body = Self.multipart([("attachment", "f.txt", "text/plain", Array(content.utf8))])
                _ = try await client.execute(uri: Self.record + "/attachment", method: .post, headers: Self.headers(), body: ByteBuffer(bytes: body))
            }
            _ = try await client.execute(uri: Self.record, method: .delete, headers: Self.headers(contentType: nil))
            #expect(Self.files(server).count == 2)
        }
    }

    struct BadUpload: Sendable, CustomTestStringConvertible {
        let name: String
        var contentType: String? = "multipart/form-data; boundary=XyZ-boundary"
        let body: [UInt8]
        var user: String? = "alice"
        var headers: [String: String] = [:]
        var path = AttachmentTests.record + "/attachment"
        let status: HTTPResponse.Status
        let errno: Int
        let message: String
        var testDescription: String { name }
    }

    static let file: (String, String?, String?, [UInt8]) = ("attachment", "a.txt", "text/plain", Array("content".utf8))

    static let badUploads: [BadUpload] = [
        BadUpload(name: "not multipart", contentType: "application/json", body: Array(#"{"data": {}}"#.utf8),
                  status: .badRequest, errno: 107, message: "Content-Type should be multipart/form-data"),
        BadUpload(name: "no content type", contentType: nil, body: multipart([file]),
                  status: .badRequest, errno: 107, message: "Content-Type should be multipart/form-data"),
        BadUpload(name: "no boundary", contentType: "multipart/form-data", body: multipart([file]),
                  status: .badRequest, errno: 107, message: "needs a boundary"),
        BadUpload(name: "no attachment field", body: multipart([("data", nil, nil, Array("{}".utf8))]),
                  status: .badRequest, errno: 109, message: "Attachment missing."),
        BadUpload(name: "attachment without filename", body: multipart([("attachment", nil, nil, [1])]),
                  status: .badRequest, errno: 109, message: "Filename is required."),
        BadUpload(name: "path traversal in filename", body: multipart([("attachment", "../../etc/passwd", "text/plain", [1])]),
                  status: .badRequest, errno: 109, message: "Invalid filename"),
        BadUpload(name: "backslash in filename", body: multipart([("attachment", "..\\\\evil.txt", "text/plain", [1])]),
                  status: .badRequest, errno: 109, message: "Invalid filename"),
        BadUpload(name: "dot-dot filename", body: multipart([("attachment", "..", "text/plain", [1])]),
                  status: .badRequest, errno: 109, message: "Invalid filename"),
        BadUpload(name: "over the size limit", body: multipart([("attachment", "big.txt", "text/plain", [UInt8](repeating: 65, count: 2048))]),
                  status: .contentTooLarge, errno: 113, message: "the limit is 1024 bytes"),
        BadUpload(name: "forbidden extension", body: multipart([("attachment", "run.exe", "text/plain", [1])]),
                  status: .badRequest, errno: 109, message: "File extension is not allowed."),
        BadUpload(name: "no extension", body: multipart([("attachment", "README", "text/plain", [1])]),
                  status: .badRequest, errno: 109, message: "File extension is not allowed."),
        BadUpload(name: "forbidden media type", body: multipart([("attachment", "a.txt", "application/x-msdownload", [1])]),
                  status: .badRequest, errno: 109, message: "File type is not allowed."),
        BadUpload(name: "malformed media type", body: multipart([("attachment", "a.txt", "text/plain/evil", [1])]),
                  status: .badRequest, errno: 109, message: "Invalid Content-Type of the file"),
        BadUpload(name: "cut-short multipart", body: Array(multipart([file]).dropLast(30)),
                  status: .badRequest, errno: 109, message: "Malformed multipart body"),
        BadUpload(name: "no boundary in body", body: Array("just some bytes".utf8),
                  status: .badRequest, errno: 109, message: "Malformed multipart body"),
        BadUpload(name: "bad data JSON", body: multipart([file, ("data", nil, nil, Array("{oops".utf8))]),
                  status: .badRequest, errno: 109, message: "data is not valid JSON"),
        BadUpload(name: "data not an object", body: multipart([file, ("data", nil, nil, Array("[1]".utf8))]),
                  status: .badRequest, errno: 109, message: "data must be a JSON object"),
        BadUpload(name: "bad permissions", body: multipart([file, ("permissions", nil, nil, Array(#"{"delete": ["x"]}"#.utf8))]),
                  status: .badRequest, errno: 107, message: "'delete' is not a permission"),
        BadUpload(name: "unknown field", body: multipart([file, ("evil", nil, nil, Array("1".utf8))]),
                  status: .badRequest, errno: 109, message: "'evil' not in"),
        BadUpload(name: "field twice", body: multipart([file, file]),
                  status: .badRequest, errno: 109, message: "given more than once"),
        BadUpload(name: "a record the caller may not write", body: multipart([file]), user: "bob",
                  status: .forbidden, errno: 121, message: "cannot access this resource"),
        BadUpload(name: "anonymous", body: multipart([file]), user: nil,
                  status: .unauthorized, errno: 104, message: "Please authenticate"),
        BadUpload(name: "missing collection", body: multipart([file]), path: "/v1/buckets/main/collections/nope/records/r1/attachment",
                  status: .notFound, errno: 110, message: "collection 'nope' does not exist"),
        BadUpload(name: "bad record id", body: multipart([file]), path: "/v1/buckets/main/collections/users/records/..%2F..%2Fx/attachment",
                  status: .badRequest, errno: 107, message: "Invalid object id"),
        BadUpload(name: "If-Match mismatch", body: multipart([file]), headers: ["If-Match": "\"123\""],
                  status: .preconditionFailed, errno: 114, message: "Resource was modified meanwhile"),
    ]

    @Test(arguments: badUploads)
    func badUploadsAreRefusedAndStoreNothing(_ bad: BadUpload) async throws {
        let server = try TestServer {
            $0.attachmentMaxSize = 1024
            $0.attachmentExtensions = ["txt", "bin"]
            $0.attachmentMimetypes = ["text/*", "application/octet-stream"]
        }
        try await server.seedUsers()
        // An existing record, which a refused upload must leave as it is.
        try await server.request("PUT", "/buckets/main/collections/users/records/r1", json: ["data": ["name": "ada"]])
        let before = try await server.dump()
        try await server.application.test(Self.framework) { client in
            var headers = Self.headers(user: bad.user, contentType: bad.contentType)
            for (name, value) in bad.headers { headers[HTTPField.Name(name)!] = value }
            let answer = try await client.execute(uri: bad.path, method: .post, headers: headers, body: ByteBuffer(bytes: bad.body))
            let json = Wire.json(answer)
            #expect(answer.status == bad.status, "\(json.serialized())")
            #expect(json["errno"] == .int(Int64(bad.errno)), "\(json.serialized())")
            #expect(json["code"] == .int(Int64(bad.status.code)))
            #expect(json["message"]?.stringValue?.contains(bad.message) == true, "\(json.serialized())")
        }
        #expect(try await server.dump() == before)
        #expect(Self.files(server).isEmpty)
        #expect(((try? FileManager.default.contentsOfDirectory(atPath: server.directory + "/attachments/.incoming")) ?? []).isEmpty)
    }

    /// One request written to a real socket as it is (headers that announce more than is sent);
    /// returns what the server answered before closing or within 10 s.
    static func rawExchange(port: Int, _ request: String) throws -> String {
        let connection = try RawConnection(port: port)  // its reads time out after 10 s
        connection.send(request)
        var answer: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = buffer.withUnsafeMutableBytes { recv(connection.fd, $0.baseAddress, $0.count, 0) }
            if n <= 0 { break }
            answer += buffer[..<n]
            if let text = String(bytes: answer, encoding: .utf8), let split = text.range(of: "\r\n\r\n"),
               let length = text[..<split.lowerBound].split(separator: "\r\n").first(where: { $0.lowercased().hasPrefix("content-length:") })
                .flatMap({ Int($0.split(separator: ":")[1].trimmingCharacters(in: .whitespaces)) }),
               text.utf8.count - text[..<split.upperBound].utf8.count >= length {
                break
            }
        }
        return String(decoding: answer, as: UTF8.self)
    }

    /// A declared length over the limit is refused before any of the body is read: the body is
    /// never sent, and the answer comes all the same. A `ferry serve` process and a raw socket:
    /// an in-process server shares the test process's cooperative pool with every CPU-heavy test
    /// running meanwhile, and once (in CI) did not answer within the socket's 10 s.
    @Test func aHugeDeclaredLengthIsRefusedBeforeTheBodyIsRead() async throws {
        let data = try temporaryDirectory("attachment-limit")
        let server = try ServeProcess(data: data, environment: ["FERRY_ATTACHMENT_MAX_SIZE": "1024"])
        defer { server.kill(SIGKILL) }
        let client = server.client()
        defer { Task { try? await client.shutdown() } }
        let alice: HTTPFields = [.authorization: TestServer.basic("alice")]
        #expect(try await client.put("/v1/buckets/main", headers: alice, body: ByteBuffer()).status == .created)
        #expect(try await client.put("/v1/buckets/main/collections/users", headers: alice, body: ByteBuffer()).status == .created)
        let answer = try Self.rawExchange(port: server.port, "POST \(Self.record)/attachment HTTP/1.1\r\nHost: 127.0.0.1\r\n" +
            "Authorization: \(TestServer.basic("alice"))\r\nContent-Type: multipart/form-data; boundary=XyZ-boundary\r\n" +
            "Content-Length: 99999999999\r\n\r\n--XyZ-boundary\r\n")
        #expect(answer.hasPrefix("HTTP/1.1 413"), "\(answer)")
        #expect(answer.contains("\"errno\":113") && answer.contains("the limit is 1024 bytes (attachment_max_size)"), "\(answer)")
        // Nothing changed: no record, no file.
        #expect(try await client.get(Self.record, headers: alice).status == .notFound)
        #expect(try await client.get("/v1/buckets/main/collections/users/records", headers: alice).body.map { String(buffer: $0) } == #"{"data":[]}"#)
        #expect(((try? FileManager.default.subpathsOfDirectory(atPath: data + "/attachments")) ?? []).isEmpty)
    }

    @Test func uploadsInABatchOrToAReadonlyServerAreRefused() async throws {
        let server = try TestServer()
        try await server.seedUsers()
        let batch = try await server.request("POST", "/batch", json: ["requests": [["method": "POST", "path": "/buckets/main/collections/users/records/r1/attachment"]]])
        #expect(batch.json["responses"]?[0]?["status"] == 400)
        let readonly = try TestServer { $0.readonly = true }
        try await readonly.application.test(Self.framework) { client in
            let answer = try await client.execute(uri: Self.record + "/attachment", method: .post, headers: Self.headers(),
                                                  body: ByteBuffer(bytes: Self.multipart([Self.file])))
            #expect(answer.status == .methodNotAllowed)
        }
        #expect(Self.files(readonly).isEmpty)
    }

    @Test func configurationKeysAreChecked() throws {
        var c = ServerConfiguration()
        try c.set("attachment_extensions", ".PDF, txt", source: "ferry.yml")
        #expect(c.attachmentExtensions == ["pdf", "txt"])
        try c.set("attachment_extensions", "any", source: "ferry.yml")
        #expect(c.attachmentExtensions == nil)
        try c.set("attachment_mimetypes", "image/*, text/plain", source: "ferry.yml")
        #expect(c.attachmentMimetypes == ["image/*", "text/plain"])
        try c.set("attachment_max_size", "1000", source: "ferry.yml")
        #expect(c.attachmentMaxSize == 1000)
        for (key, value) in [("attachment_extensions", "../x"), ("attachment_mimetypes", "text"), ("attachment_max_size", "-1"),
                             ("attachment_base_url", "ftp://x"), ("attachment_public", "perhaps")] {
            #expect(throws: ServerConfiguration.Error.self, "\(key)=\(value)") { try c.set(key, value, source: "ferry.yml") }
        }
    }
}
