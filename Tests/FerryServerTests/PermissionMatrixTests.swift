import FerryCore
import FerryTestSupport
import Foundation
import HTTPTypes
import HummingbirdTesting
import NIOCore
import Testing

/// Every object kind × operation × principal against a real `ferry serve` over loopback,
/// with Kinto's expected status. Each cell runs on a fresh bucket set up the same way:
///
/// - alice owns bucket `bN` and everything in it;
/// - group `readers` holds bob, and has `read` on collection `c`;
/// - carol is authenticated and granted nothing; anonymous sends no credentials.
@Suite(.serialized) struct PermissionMatrixTests {
    enum Who: String, CaseIterable { case owner, member, other, anonymous }

    static func headers(_ who: Who) -> HTTPFields {
        let user: String
        switch who {
        case .owner: user = "alice"
        case .member: user = "bob"
        case .other: user = "carol"
        case .anonymous: return [:]
        }
        return [.authorization: "Basic " + Data("\(user):secret".utf8).base64EncodedString(), .contentType: "application/json"]
    }

    /// (method, path after /v1/buckets/bN, body, expected status for owner, member, other, anonymous)
    static let cells: [(String, String, String?, [Int])] = [
        // bucket
        ("GET", "", nil, [200, 403, 403, 401]),
        ("PUT", "", #"{"data": {"x": 1}}"#, [200, 403, 403, 401]),
        ("PATCH", "", #"{"data": {"x": 2}}"#, [200, 403, 403, 401]),
        ("DELETE", "", nil, [200, 403, 403, 401]),
        // collection: the group may read it
        ("GET", "/collections/c", nil, [200, 200, 403, 401]),
        ("PUT", "/collections/c", #"{"data": {"x": 1}}"#, [200, 403, 403, 401]),
        ("PATCH", "/collections/c", #"{"data": {"x": 2}}"#, [200, 403, 403, 401]),
        ("DELETE", "/collections/c", nil, [200, 403, 403, 401]),
        ("PUT", "/collections/new", nil, [201, 403, 403, 401]),
        ("GET", "/collections", nil, [200, 200, 403, 401]),
        // group: membership gives no right on the group itself
        ("GET", "/groups/readers", nil, [200, 403, 403, 401]),
        ("PUT", "/groups/readers", #"{"data": {"members": []}}"#, [200, 403, 403, 401]),
        ("PATCH", "/groups/readers", #"{"data": {"members": []}}"#, [200, 403, 403, 401]),
        ("DELETE", "/groups/readers", nil, [200, 403, 403, 401]),
        ("PUT", "/groups/new", #"{"data": {"members": []}}"#, [201, 403, 403, 401]),
        // records: read inherited from the collection
        ("GET", "/collections/c/records/r", nil, [200, 200, 403, 401]),
        ("GET", "/collections/c/records", nil, [200, 200, 403, 401]),
        ("PUT", "/collections/c/records/r", #"{"data": {"x": 1}}"#, [200, 403, 403, 401]),
        ("PATCH", "/collections/c/records/r", #"{"data": {"x": 2}}"#, [200, 403, 403, 401]),
        ("DELETE", "/collections/c/records/r", nil, [200, 403, 403, 401]),
        ("POST", "/collections/c/records", #"{"data": {"x": 3}}"#, [201, 403, 403, 401]),
        ("PUT", "/collections/c/records/new", #"{"data": {"x": 3}}"#, [201, 403, 403, 401]),
        ("DELETE", "/collections/c/records", nil, [200, 403, 403, 401]),
        // missing objects: only who may read the parent learns they are missing
        ("GET", "/collections/c/records/missing", nil, [404, 404, 403, 401]),
        ("GET", "/collections/missing", nil, [404, 403, 403, 401]),
        ("GET", "/groups/missing", nil, [404, 403, 403, 401]),
    ]

    @Test func everyKindOperationAndPrincipal() async throws {
        let data = try temporaryDirectory("matrix")
        let server = try ServeProcess(data: data)
        defer { server.kill(SIGKILL) }
        let client = server.client()
        defer { Task { try? await client.shutdown() } }
        let bob = try await client.get("/v1/", headers: Self.headers(.member))
        let bobID = try JSON.parse(bytes: Array(bob.body!.readableBytesView))["user"]!["id"]!.stringValue!
        var n = 0
        var failures: [String] = []
        for (method, path, body, expected) in Self.cells {
            for (who, status) in zip(Who.allCases, expected) {
                n += 1
                let bucket = "/v1/buckets/b\(n)"
                let owner = Self.headers(.owner)
                // The same fixture for every cell.
                for (setupPath, setupBody) in [
                    (bucket, "{}"),
                    (bucket + "/groups/readers", #"{"data": {"members": ["\#(bobID)"]}}"#),
                    (bucket + "/collections/c", #"{"permissions": {"read": ["/buckets/b\#(n)/groups/readers"]}}"#),
                    (bucket + "/collections/c/records/r", #"{"data": {"x": 0}}"#),
                ] {
                    let r = try await client.put(setupPath, headers: owner, body: ByteBuffer(string: setupBody))
                    guard r.status == .created else { throw MatrixError("setup \(setupPath) answered \(r.status)") }
                }
                let response = try await client.execute(.init(bucket + path, method: HTTPRequest.Method(method)!, headers: Self.headers(who),
                                                               body: body.map { ByteBuffer(string: $0) }))
                if Int(response.status.code) != status {
                    failures.append("\(method) /buckets/bN\(path) as \(who): \(response.status.code), expected \(status)")
                }
            }
        }
        #expect(failures.isEmpty, Comment(rawValue: "\(failures.count) of \(n) cells:\n" + failures.joined(separator: "\n")))
    }

    struct MatrixError: Error, CustomStringConvertible {
        let description: String
        init(_ description: String) { self.description = description }
    }
}
