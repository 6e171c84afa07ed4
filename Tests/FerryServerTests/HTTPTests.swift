import FerryCore
@testable import FerryServer
import FerryTestSupport
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Logging
import NIOCore
import Testing

@Suite struct HTTPTests {
    func app(_ server: TestServer) -> Application<FerryResponder> {
        var logger = Logger(label: "ferry.test")
        logger.logLevel = .critical
        return try! FerryServerApp.makeApplication(server.configuration, parts: server.parts, logger: logger)
    }

    func headers(_ user: String? = "alice", _ extra: [HTTPField.Name: String] = [:]) -> HTTPFields {
        var fields = HTTPFields()
        if let user { fields[.authorization] = TestServer.basic(user) }
        for (k, v) in extra { fields[k] = v }
        return fields
    }

    /// `X-Forwarded-Proto` and `Forwarded: proto=` count only from a trusted proxy, and only
    /// for http or https: anyone else gets links in the scheme the server serves.
    @Test func forwardedSchemeOnlyFromTrustedProxies() {
        let proxies = TrustedProxies(["10.0.0.0/8", "::1"])
        func scheme(_ from: String?, _ headers: [String: String], served: String = "http") -> String {
            proxies.scheme(served: served, remoteAddress: from) { headers[$0] }
        }
        #expect(scheme("10.1.2.3", ["x-forwarded-proto": "https"]) == "https")
        #expect(scheme("::1", ["x-forwarded-proto": "HTTPS, http"]) == "https")
        #expect(scheme("10.1.2.3", ["forwarded": "for=1.2.3.4;proto=\"https\";by=x, proto=http"]) == "https")
        #expect(scheme("192.168.1.1", ["x-forwarded-proto": "https"]) == "http")  // not a trusted proxy
        #expect(scheme(nil, ["x-forwarded-proto": "https"]) == "http")
        #expect(scheme("10.1.2.3", ["x-forwarded-proto": "javascript"]) == "http")  // neither http nor https
        #expect(scheme("10.1.2.3", [:], served: "https") == "https")
        #expect(TrustedProxies([]).scheme(served: "http", remoteAddress: "10.1.2.3") { _ in "https" } == "http")
    }

    @Test func routesThroughHummingbird() async throws {
        let server = try TestServer()
        try await app(server).test(.router) { client in
            try await client.execute(uri: "/v1/", method: .get) { response in
                #expect(response.status == .ok)
                #expect(response.headers[.contentType] == "application/json")
                #expect(response.headers[HTTPField.Name("X-Request-Id")!] != nil)
            }
            try await client.execute(uri: "/v1/buckets/main", method: .put, headers: headers()) { #expect($0.status == .created) }
            try await client.execute(uri: "/v1/buckets/main/collections/users", method: .put, headers: headers()) { #expect($0.status == .created) }
            try await client.execute(uri: "/v1/buckets/main/collections/users/records", method: .post, headers: headers(),
                                     body: ByteBuffer(string: #"{"data": {"username": "ada", "age": 36}}"#)) { response in
                #expect(response.status == .created)
                let json = try JSON.parse(bytes: Array(response.body.readableBytesView))
                #expect(json["data"]?["username"] == "ada")
            }
            try await client.execute(uri: "/v1/buckets/main/collections/users/records?_limit=1", method: .get, headers: headers()) { response in
                #expect(response.status == .ok)
                #expect(response.headers[.eTag] != nil)
            }
            // A push's batch (the record PUTs' own path) counts each record it wrote, and not
            // the one it refused.
            let push = #"{"requests": [{"method": "PUT", "path": "/buckets/main/collections/users/records/a", "body": {"data": {}}},"#
                + #"{"method": "PUT", "path": "/buckets/main/collections/users/records/b", "body": {"data": {}}},"#
                + #"{"method": "PUT", "path": "/buckets/main/collections/users/records/c", "body": {"data": {}}, "headers": {"If-Match": "\"1\""}}]}"#
            try await client.execute(uri: "/v1/batch", method: .post, headers: headers(), body: ByteBuffer(string: push)) { response in
                #expect(response.status == .ok)
                let statuses = try JSON.parse(bytes: Array(response.body.readableBytesView))["responses"]?.arrayValue?.map { $0["status"] }
                #expect(statuses == [201, 201, 412])
            }
            try await client.execute(uri: "/", method: .get) { response in
                #expect(response.status == .temporaryRedirect)
                #expect(response.headers[.location] == "/v1/")
            }
            try await client.execute(uri: "/v1/nowhere", method: .get) { response in
                #expect(response.status == .notFound)
                let json = try JSON.parse(bytes: Array(response.body.readableBytesView))
                #expect(json["errno"] == 111)
            }
            try await client.execute(uri: "/v1/buckets", method: .get, headers: [.authorization: "Basic %%%"]) { response in
                #expect(response.status == .unauthorized)
                #expect(response.headers[.wwwAuthenticate] != nil)
            }
            try await client.execute(uri: "/metrics", method: .get) { response in
                let text = String(buffer: response.body)
                #expect(text.contains("ferry_http_requests_total"))
                #expect(text.contains("ferry_http_request_duration_seconds"))
                #expect(text.contains("ferry_records_written_total 5"))
                // The SQLite file and its log, read at the scrape.
                let size = text.split(separator: "\n").first { $0.hasPrefix("ferry_storage_bytes ") }.flatMap { Double($0.split(separator: " ")[1]) }
                #expect((size ?? 0) > 4096, "\(text)")
                // Memory in use, read at the scrape: the heap holds SQLite's share and more.
                func gauge(_ name: String) -> Double? {
                    text.split(separator: "\n").first { $0.hasPrefix(name + " ") }.flatMap { Double($0.split(separator: " ")[1]) }
                }
                let heap = gauge("ferry_memory_heap_bytes") ?? 0, sqlite = gauge("ferry_memory_sqlite_bytes") ?? 0
                #expect(sqlite > 0 && heap > sqlite && heap < 4e9, "heap \(heap), SQLite \(sqlite)")
            }
        }
    }

    @Test func oversizeBodyIs413AndChangesNothing() async throws {
        let server = try TestServer { $0.maxBodySize = 2048 }
        try await server.seedUsers()
        let before = try await server.dump()
        let big = #"{"data": {"blob": ""# + String(repeating: "x", count: 5000) + #""}}"#
        try await app(server).test(.router) { client in
            try await client.execute(uri: "/v1/buckets/main/collections/users/records", method: .post, headers: headers(),
                                     body: ByteBuffer(string: big)) { response in
                #expect(response.status == .contentTooLarge)
                let json = try JSON.parse(bytes: Array(response.body.readableBytesView))
                #expect(json["errno"] == 113)
                #expect(json["message"]?.stringValue?.contains("2048") == true)
            }
        }
        #expect(try await server.dump() == before)
    }

    /// `ferry serve` over a real socket, with a client that waits up to 90 s for an answer
    /// (HummingbirdTesting's `.live` gives 20 s, which the whole suite's load has exceeded).
    @Test func liveServerOverARealSocket() async throws {
        let server = try ServeProcess(data: try temporaryDirectory("live"))
        defer { server.kill(SIGKILL) }
        let client = server.client()
        #expect(try await client.put("/v1/buckets/live", headers: headers(), body: ByteBuffer()).status == .created)
        #expect(try await client.put("/v1/buckets/live/collections/c", headers: headers(), body: ByteBuffer()).status == .created)
        for i in 0..<20 {
            let response = try await client.put("/v1/buckets/live/collections/c/records/r\(i)", headers: headers(),
                                                body: ByteBuffer(string: #"{"data": {"i": \#(i)}}"#))
            #expect(response.status == .created)
        }
        let page = try await client.get("/v1/buckets/live/collections/c/records?_since=0&_limit=15", headers: headers())
        #expect(page.status == .ok)
        let json = try JSON.parse(bytes: Array(page.body!.readableBytesView))
        #expect(json["data"]?.arrayValue?.count == 15)
        #expect(page.headers[HTTPField.Name("Next-Page")!]?.contains("_token=") == true)
        #expect(try await client.get("/v1/buckets/live/collections/c/records").status == .unauthorized)
        try await client.shutdown()
    }
}
