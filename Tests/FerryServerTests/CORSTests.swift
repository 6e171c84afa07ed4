import FerryCore
@testable import FerryServer
import FerryTestSupport
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import NIOCore
import Testing

/// CORS as Kinto does it (`cors_origins`, `cors_max_age_seconds`): preflights on every route,
/// `Access-Control-Allow-Origin` on every answer to an allowed origin, and nothing for the others.
@Suite struct CORSTests {
    @Test func corsPolicyMatchesOriginsAndPatterns() {
        let policy = CORSPolicy(origins: ["https://app.example.com", "https://*.example.org", "http://localhost:*"])
        #expect(policy.allows("https://app.example.com") && policy.allows("HTTPS://APP.EXAMPLE.COM"))
        #expect(policy.allows("https://a.b.example.org") && policy.allows("http://localhost:3000"))
        for refused in ["https://app.example.com.evil.net", "http://app.example.com", "https://example.org", "null", "",
                        "https://x.example.org/path", "https://evil.net?.example.org", "https://app.example.com "] {
            #expect(!policy.allows(refused), "\(refused)")
        }
        #expect(CORSPolicy().allows("https://anything.example") && !CORSPolicy(origins: []).allows("https://a.example"))
        #expect(CORSPolicy.glob("a*b*c", matches: "aXXbYc") && !CORSPolicy.glob("a*b", matches: "aXbY") && CORSPolicy.glob("*", matches: ""))

        #expect(CORSPolicy().verdict(origin: nil) == .noOrigin)
        #expect(CORSPolicy().verdict(origin: "https://a.example") == .allowed([
            ("Access-Control-Allow-Origin", "*"), ("Access-Control-Expose-Headers", CORSPolicy.exposedHeaders)]))
        #expect(policy.verdict(origin: "https://app.example.com") == .allowed([
            ("Access-Control-Allow-Origin", "https://app.example.com"), ("Vary", "Origin"),
            ("Access-Control-Expose-Headers", CORSPolicy.exposedHeaders)]))
        #expect(policy.verdict(origin: "https://evil.net") == .refused(origin: "https://evil.net"))
        for name in ["ETag", "Last-Modified", "Next-Page", "Total-Objects", "Backoff", "Retry-After", "Alert", "Content-Length"] {
            #expect(CORSPolicy.exposedHeaders.contains(name))
        }
    }

    @Test(arguments: [
        ("example.com", "is not an origin such as"), ("ftp://files.example.com", "is not an origin"),
        ("https://app.example.com/", "an origin has no path (write https://app.example.com)"),
        ("https://app.example.com/path", "is not an origin"), ("https://a.example https://b.example", "separate origins with commas"),
        ("null", "is not an origin"), ("https://", "is not an origin"), ("https://bad_host.example", "is not an origin"),
    ])
    func badCorsOriginsAreConfigurationErrors(value: String, message: String) {
        var c = ServerConfiguration()
        #expect {
            try c.set("cors_origins", value, source: "ferry.yml:4")
        } throws: { error in
            let text = (error as? ServerConfiguration.Error)?.description ?? ""
            return text.hasPrefix("ferry.yml:4: cors_origins:") && text.contains(message)
        }
        #expect(c == ServerConfiguration())
    }

    @Test func preflightsAreAnsweredForEveryRoute() async throws {
        let server = try TestServer { $0.flushEndpoint = true }
        let preflight = Wire.fields(["Origin": "https://app.example", "Access-Control-Request-Method": "PUT",
                                     "Access-Control-Request-Headers": "authorization, content-type, x-trace-id"])
        try await server.application.test(.router) { client in
            for uri in ["/v1/buckets/b", "/v1/buckets/b/collections/c/records/r", "/v1/accounts/user", "/buckets/b"] {
                try await client.execute(uri: uri, method: .options, headers: preflight) { response in
                    #expect(response.status == .ok, "\(uri)")
                    #expect(response.headers[.accessControlAllowOrigin] == "*")
                    let methods = response.headers[.accessControlAllowMethods] ?? ""
                    #expect(methods.contains("PUT") && methods.contains("PATCH") && methods.contains("DELETE"), "\(uri): \(methods)")
                    let allowed = (response.headers[.accessControlAllowHeaders] ?? "").lowercased()
                    for name in ["authorization", "content-type", "if-match", "if-none-match", "x-trace-id"] {
                        #expect(allowed.contains(name), "\(uri): \(allowed)")
                    }
                    #expect(response.headers[.accessControlMaxAge] == "3600")
                }
            }
            let post = Wire.fields(["Origin": "https://app.example", "Access-Control-Request-Method": "POST"])
            for uri in ["/v1/batch", "/v1/buckets", "/v1/__flush__", "/__flush__"] {
                try await client.execute(uri: uri, method: .options, headers: post) { response in
                    #expect(response.status == .ok, "\(uri)")
                    #expect(response.headers[.accessControlAllowMethods]?.contains("POST") == true)
                }
            }
            // A method the route does not take, a header that is no header name: 400, saying which.
            try await client.execute(uri: "/v1/buckets", method: .options, headers: preflight) { response in
                #expect(response.status == .badRequest)
                #expect(Wire.json(response)["message"]?.stringValue?.contains("PUT is not allowed here") == true)
            }
            try await client.execute(uri: "/v1/buckets", method: .options,
                                     headers: Wire.fields(["Origin": "https://app.example", "Access-Control-Request-Method": "GET",
                                                           "Access-Control-Request-Headers": "x-ok, bad header"])) { response in
                #expect(response.status == .badRequest)
                #expect(Wire.json(response)["message"]?.stringValue?.contains("\"bad header\" is not a header name") == true)
            }
            // Not a preflight: OPTIONS says what it is for.
            try await client.execute(uri: "/v1/buckets", method: .options) { response in
                #expect(response.status == .badRequest && response.headers[.accessControlAllowOrigin] == nil)
                #expect(Wire.json(response)["message"]?.stringValue?.contains("Origin is missing") == true)
                #expect(response.headers[.allow]?.contains("GET") == true)
            }
            // No route: 404 (the CORS header lets the page read why).
            try await client.execute(uri: "/v1/nowhere", method: .options, headers: preflight) { response in
                #expect(response.status == .notFound && response.headers[.accessControlAllowOrigin] == "*")
            }
        }
    }

    @Test func answersCarryCorsHeadersErrorsIncluded() async throws {
        let server = try TestServer()
        try await server.seedUsers()
        let origin: HTTPFields = [.origin: "https://app.example", .authorization: TestServer.basic("alice")]
        try await server.application.test(.router) { client in
            for (uri, status) in [("/v1/buckets/main/collections/users/records", HTTPResponse.Status.ok), ("/v1/buckets/nothing", .forbidden),
                                  ("/v1/nowhere", .notFound), ("/buckets", .temporaryRedirect)] {
                try await client.execute(uri: uri, method: .get, headers: origin) { response in
                    #expect(response.status == status, "\(uri)")
                    #expect(response.headers[.accessControlAllowOrigin] == "*", "\(uri)")
                    #expect(response.headers[.accessControlExposeHeaders]?.contains("Next-Page") == true, "\(uri)")
                }
            }
            // Without Origin: no CORS header.
            try await client.execute(uri: "/v1/buckets", method: .get, headers: [.authorization: TestServer.basic("alice")]) { response in
                #expect(response.status == .ok && response.headers[.accessControlAllowOrigin] == nil)
            }
        }
    }

    @Test func originsNotAllowedGetNoCorsHeadersAndChangeNothing() async throws {
        let server = try TestServer { $0.corsOrigins = ["https://app.example.com"] }
        try await server.seedUsers()
        let before = try await server.dump()
        try await server.application.test(.router) { client in
            // Allowed: its own origin comes back, with Vary.
            try await client.execute(uri: "/v1/buckets", method: .options,
                                     headers: Wire.fields(["Origin": "https://app.example.com", "Access-Control-Request-Method": "GET"])) { response in
                #expect(response.status == .ok && response.headers[.accessControlAllowOrigin] == "https://app.example.com")
                #expect(response.headers[.vary] == "Origin")
            }
            // A preflight from elsewhere: a clear 400 and no allow header.
            try await client.execute(uri: "/v1/buckets", method: .options,
                                     headers: Wire.fields(["Origin": "https://evil.example", "Access-Control-Request-Method": "GET"])) { response in
                #expect(response.status == .badRequest)
                #expect(response.headers[.accessControlAllowOrigin] == nil && response.headers[.accessControlAllowMethods] == nil)
                #expect(Wire.json(response)["message"]?.stringValue?.contains("https://evil.example is not allowed") == true)
            }
            // A write from elsewhere is refused before it runs.
            for (method, uri) in [(HTTPRequest.Method.put, "/v1/buckets/main/collections/users/records/r1"), (.delete, "/v1/buckets/main"),
                                  (.post, "/v1/batch")] {
                try await client.execute(uri: uri, method: method, headers: [.origin: "https://evil.example", .authorization: TestServer.basic("alice")],
                                         body: ByteBuffer(string: #"{"data": {"v": 1}}"#)) { response in
                    #expect(response.status == .badRequest && response.headers[.accessControlAllowOrigin] == nil)
                    #expect(Wire.json(response)["errno"] == 107)
                }
            }
        }
        #expect(try await server.dump() == before)
    }
}
