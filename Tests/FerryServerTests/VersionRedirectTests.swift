import FerryCore
@testable import FerryServer
import FerryTestSupport
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import NIOCore
import Testing

/// Kinto's version-prefix redirect: a path without `/v1` is answered with a `307` to it under
/// `/v1` (`version_prefix_redirect_enabled`), so clients that call `/accounts/user` or
/// `/__flush__` (the kinto-http suite does) reach the API.
@Suite struct VersionRedirectTests {
    @Test func unversionedPathsRedirectUnderV1KeepingTheQuery() async throws {
        let server = try TestServer()
        try await server.seedUsers()
        let before = try await server.dump()
        try await server.application.test(.router) { client in
            for (uri, location) in [
                ("/accounts/user", "/v1/accounts/user"),
                ("/__flush__", "/v1/__flush__"),
                ("/buckets", "/v1/buckets"),
                ("/buckets/main/collections/users/records?_limit=2&_sort=-age&name=a%20b", "/v1/buckets/main/collections/users/records?_limit=2&_sort=-age&name=a%20b"),
                // What a Location must not hold is encoded; escapes already there stay.
                ("/a b/\"<x>", "/v1/a%20b/%22%3Cx%3E"),
                ("/caf\u{E9}?q=\u{E9}t\u{E9}", "/v1/caf%C3%A9?q=%C3%A9t%C3%A9"),
                ("/bad%zz%2F", "/v1/bad%25zz%2F"),
                // Another host cannot be reached through the redirect: the path stays under /v1.
                ("//evil.example/x", "/v1//evil.example/x"),
                ("/\\evil.example", "/v1/%5Cevil.example"),
                ("/v1x", nil), ("/v2/buckets", nil), ("/v0/", nil),
            ] as [(String, String?)] {
                for method in [HTTPRequest.Method.get, .put, .post, .delete] {
                    try await client.execute(uri: uri, method: method, headers: [.authorization: TestServer.basic("alice")],
                                             body: ByteBuffer(string: #"{"data": {"password": "p4ssw0rd!"}}"#)) { response in
                        if let location {
                            #expect(response.status == .temporaryRedirect, "\(method) \(uri)")
                            #expect(response.headers[.location] == location, "\(method) \(uri)")
                        } else {
                            #expect(response.status == .notFound, "\(method) \(uri)")
                            #expect(Wire.json(response)["errno"] == 111)
                        }
                    }
                }
            }
            // The routes Ferry serves outside /v1 are not redirected.
            try await client.execute(uri: "/metrics", method: .get) { response in
                #expect(response.status == .ok && String(buffer: response.body).contains("ferry_http_requests_total"))
            }
            try await client.execute(uri: "/", method: .get) { #expect($0.headers[.location] == "/v1/") }
        }
        // A redirect runs nothing: not even the PUT of an account or the POST of a flush.
        #expect(try await server.dump() == before)
    }

    @Test func redirectOffAnswers404() async throws {
        let server = try TestServer { $0.versionPrefixRedirect = false }
        try await server.application.test(.router) { client in
            try await client.execute(uri: "/buckets?_limit=1", method: .get) { response in
                #expect(response.status == .notFound && response.headers[.location] == nil)
                #expect(Wire.json(response)["errno"] == 111)
            }
            try await client.execute(uri: "/v1/buckets", method: .get, headers: [.authorization: TestServer.basic("alice")]) { #expect($0.status == .ok) }
        }
    }

    /// Over a real socket: the redirect leaves the connection usable (the unread body is
    /// drained), and the request sent again under /v1 with the same method and body does the work.
    @Test func redirectOverARealSocketKeepsTheConnection() async throws {
        let server = try ServeProcess(data: try temporaryDirectory("redirect"), environment: ["FERRY_AUTH_POLICIES": "account", "FERRY_PASSWORD_ROUNDS": "1000"])
        defer { server.kill(SIGKILL) }
        let client = server.client()
        let auth: HTTPFields = [.authorization: TestServer.basic("user", "p4ssw0rd"), .contentType: "application/json"]
        let body = ByteBuffer(string: #"{"data": {"password": "p4ssw0rd"}}"# + String(repeating: " ", count: 100_000))
        let first = try await client.put("/accounts/user", headers: auth, body: body)
        #expect(first.status == .temporaryRedirect && first.headers[.location] == "/v1/accounts/user")
        let second = try await client.put(first.headers[.location]!, headers: auth, body: body)
        #expect(second.status == .created, "\(Wire.json(second).serialized())")
        let hello = try await client.get("/v1/", headers: auth)
        #expect(Wire.json(hello)["user"]?["id"] == "account:user")
        // Odd paths as they arrive on the wire: encoded in the Location, never leaving /v1.
        for (path, location) in [("/x%zz?q=%", "/v1/x%25zz?q=%25"), ("//evil.example/", "/v1//evil.example/")] {
            let response = try await client.get(path)
            #expect(response.status == .temporaryRedirect && response.headers[.location] == location, "\(path)")
        }
        try await client.shutdown()
    }
}
