import FerryCore
import FerryTestSupport
@testable import FerryServer
import HTTPTypes
@testable import FerryStore
import Foundation
import Logging

/// A server's parts on a fresh SQLite file, driven in-process through ``KintoAPI``.
struct TestServer {
    let directory: String
    let configuration: ServerConfiguration
    let parts: FerryServerApp.Parts

    init(_ configure: (inout ServerConfiguration) -> Void = { _ in }) throws {
        try self.init(storage: nil, configure)
    }

    /// The same on `storage` (PostgreSQL) instead of a fresh SQLite file.
    init(storage: (any Storage)?, _ configure: (inout ServerConfiguration) -> Void = { _ in }) throws {
        directory = try temporaryDirectory()
        var configuration = ServerConfiguration()
        configuration.dataDirectory = directory
        configuration.port = 0
        configure(&configuration)
        self.configuration = configuration
        var logger = Logger(label: "ferry.test")
        logger.logLevel = .critical
        if let storage {
            parts = try FerryServerApp.makeParts(configuration, storage: storage, logger: logger)
        } else {
            parts = try FerryServerApp.makeParts(configuration, logger: logger)
        }
    }

    static func basic(_ user: String, _ password: String = "secret") -> String {
        "Basic " + Data("\(user):\(password)".utf8).base64EncodedString()
    }

    /// Sends one request as `user` (nil: anonymous).
    @discardableResult
    func request(_ method: String, _ path: String, json: JSON? = nil, body: String? = nil, user: String? = "alice",
                 password: String = "secret", authorization: String? = nil, headers: [String: String] = [:],
                 through api: KintoAPI? = nil) async throws -> APIResponse {
        var allHeaders: [String: String] = [:]
        for (k, v) in headers { allHeaders[k.lowercased()] = v }
        let identity: Identity
        do {
            identity = try await parts.api.authenticate(authorization: authorization ?? user.map { Self.basic($0, password) })
        } catch {
            return APIResponse(error: error)
        }
        var pathOnly = path
        var query: [(String, String)] = []
        if let q = path.firstIndex(of: "?") {
            pathOnly = String(path[..<q])
            query = APIRequest.parseQuery(path[path.index(after: q)...])
        }
        let bytes = json.map { $0.serializedBytes() } ?? body.map { Array($0.utf8) } ?? []
        return await (api ?? parts.api).handle(APIRequest(method: HTTPRequest.Method(method)!, path: pathOnly, query: query, headers: allHeaders, body: bytes, identity: identity))
    }

    func userID(_ user: String) -> String { parts.api.authenticator!.basic.userID(credentials: "\(user):secret") }

    /// Creates bucket `main` and collection `users` owned by alice.
    func seedUsers() async throws {
        try await request("PUT", "/buckets/main")
        try await request("PUT", "/buckets/main/collections/users")
    }

    func dump() async throws -> [String] { try await (parts.storage as! any DumpableStorage).dump() }
}

extension APIResponse {
    var json: JSON { jsonBody ?? .null }
    var data: JSON { json["data"] ?? .null }
    var etag: Int64? { header("ETag").flatMap { Int64($0.trimmingCharacters(in: CharacterSet(charactersIn: "\""))) } }
}
