import FerryCore
import Foundation
@testable import FerryServer
import HTTPTypes
import Testing

/// `GET /v1/__api__`: the OpenAPI document lists exactly the routes the server dispatches on.
/// (`Tests/python/test_openapi.py` validates it with openapi-spec-validator and runs Schemathesis on it.)
@Suite struct APIDocumentTests {
    /// Every literal segment ``Route/init(_:)`` knows, and an id.
    static let vocabulary = ["buckets", "collections", "groups", "records", "webhooks", "deliveries", "attachment", "reconcile", "accounts",
                             "batch", "permissions", "__heartbeat__", "__lbheartbeat__", "__version__", "__flush__", "__api__", "x1"]

    /// Every path of up to eight segments the route parser accepts, grown from the ones it
    /// accepts (each route's parent path is a route too, which the walk checks as it goes).
    static func parsedPaths() -> [(path: String, route: Route)] {
        var found: [(String, Route)] = [("/", .hello)]
        var frontier = [""]
        for _ in 0..<8 {
            var next: [String] = []
            for prefix in frontier {
                for word in vocabulary {
                    let path = prefix + "/" + word
                    if let route = try? Route(path) {
                        found.append((path, route))
                        next.append(path)
                    }
                }
            }
            frontier = next
        }
        return found
    }

    static func document(_ server: TestServer) -> JSON {
        APIDocument(api: server.parts.api).json(baseURL: "http://localhost/v1")
    }

    static func methods(_ item: JSON) -> Set<String> {
        guard case .object(let members) = item else { return [] }
        return Set(members.keys.filter { ["get", "head", "post", "put", "patch", "delete"].contains($0) })
    }

    @Test func everyRouteTheServerParsesIsDocumentedWithItsMethods() throws {
        let server = try TestServer { $0.flushEndpoint = true }
        let paths = Self.document(server)["paths"]
        let parsed = Self.parsedPaths()
        #expect(parsed.count > 20)
        var templates = Set<String>()
        for (path, route) in parsed {
            let item = try #require(paths?[route.template], "\(path) parses to \(route.template), which the document lacks")
            #expect(Self.methods(item) == Set(route.allowedMethods.map { $0.rawValue.lowercased() }), "methods of \(route.template)")
            templates.insert(route.template)
        }
        // And nothing more: every documented path is one the parser reached.
        guard case .object(let documented)? = paths else { Issue.record("no paths"); return }
        #expect(Set(documented.keys) == templates)
    }

    @Test func everyDocumentedPathParsesBackToItsTemplate() throws {
        let server = try TestServer { $0.flushEndpoint = true }
        guard case .object(let paths)? = Self.document(server)["paths"] else { Issue.record("no paths"); return }
        for template in paths.keys {
            let path = template.split(separator: "/").map { $0.hasPrefix("{") ? "x1" : String($0) }.joined(separator: "/")
            let route = try Route("/" + path)
            #expect(route.template == template)
            // Every path parameter is declared.
            let declared = (paths[template]?["parameters"]?.arrayValue ?? []).compactMap { $0["name"]?.stringValue }
            let named = template.split(separator: "/").filter { $0.hasPrefix("{") }.map { String($0.dropFirst().dropLast()) }
            #expect(declared == named, "parameters of \(template)")
        }
    }

    @Test func routesThisServerDoesNotServeAreLeftOut() async throws {
        let server = try TestServer { $0.attachmentsEnabled = false }
        guard case .object(let paths)? = Self.document(server)["paths"] else { Issue.record("no paths"); return }
        #expect(paths["/__flush__"] == nil)
        #expect(paths["/buckets/{bid}/collections/{cid}/records/{rid}/attachment"] == nil)
        #expect(paths["/buckets"] != nil)
        // and the server indeed does not answer them.
        #expect(try await server.request("POST", "/__flush__").status == 404)
        #expect(try await server.request("POST", "/buckets/b/collections/c/records/r/attachment").status == 404)
    }

    @Test func servedAtAPIWithHeadAndNoOtherMethod() async throws {
        let server = try TestServer()
        let get = try await server.request("GET", "/__api__", user: nil)
        #expect(get.status == 200)
        #expect(get.json["openapi"] == "3.1.0")
        #expect(get.json["servers"]?[0]?["url"]?.stringValue?.hasSuffix("/v1") == true)
        #expect(get.json["components"]?["schemas"]?["Error"]?["required"] == ["code", "errno", "error", "message"])
        #expect(try await server.request("HEAD", "/__api__").status == 200)
        let post = try await server.request("POST", "/__api__", body: "{}")
        #expect(post.status == 405)
        #expect(post.json["errno"] == 115)
        // Below it, nothing.
        let below = try await server.request("GET", "/__api__/x")
        #expect(below.status == 404)
        #expect(below.json["errno"] == 111)
    }

    /// The links from each create (POST on a list, PUT on an object) lead to operations the document
    /// has, fill exactly their path parameters, and, followed as a client would (Schemathesis's
    /// stateful phase does), reach the object just created and the lists below it.
    @Test func linksFromACreateReachTheCreatedObject() async throws {
        let server = try TestServer()
        let document = Self.document(server)
        guard case .object(let paths)? = document["paths"] else { Issue.record("no paths"); return }
        var operations: [String: (template: String, method: String)] = [:]
        for (template, item) in paths {
            for (method, op) in item.objectValue ?? [:] {
                if let id = op["operationId"]?.stringValue { operations[id] = (template, method) }
            }
        }
        var linked: [String: Set<String>] = [:]
        for (template, item) in paths {
            for (method, op) in item.objectValue ?? [:] {
                for status in ["200", "201"] {
                    for (name, link) in op["responses"]?[status]?["links"]?.objectValue ?? [:] {
                        let target = try #require(operations[link["operationId"]?.stringValue ?? ""], "\(name) in \(method) \(template)")
                        let named = target.template.split(separator: "/").filter { $0.hasPrefix("{") }.map { String($0.dropFirst().dropLast()) }
                        #expect(Set(link["parameters"]?.objectValue?.keys.map { $0 } ?? []) == Set(named), "\(name) in \(method) \(template)")
                        linked["\(method) \(template)", default: []].insert("\(target.method) \(target.template)")
                    }
                }
            }
        }
        #expect(linked["post /buckets"] == ["get /buckets/{bid}", "put /buckets/{bid}", "patch /buckets/{bid}", "delete /buckets/{bid}",
                                           "get /buckets/{bid}/collections", "post /buckets/{bid}/collections",
                                           "get /buckets/{bid}/groups", "post /buckets/{bid}/groups"])
        #expect(linked["put /buckets/{bid}/collections/{cid}"]?.contains("post /buckets/{bid}/collections/{cid}/records") == true)
        #expect(linked["post /buckets/{bid}/collections/{cid}/records"] == [
            "get /buckets/{bid}/collections/{cid}/records/{rid}", "put /buckets/{bid}/collections/{cid}/records/{rid}",
            "patch /buckets/{bid}/collections/{cid}/records/{rid}", "delete /buckets/{bid}/collections/{cid}/records/{rid}"])
        #expect(linked["post /buckets/{bid}/groups"]?.contains("delete /buckets/{bid}/groups/{gid}") == true)
        // No links from reads, deletes, or anything but the four kinds.
        #expect(Set(linked.keys).allSatisfy { $0.hasPrefix("post ") || $0.hasPrefix("put ") })
        #expect(linked.keys.contains { $0.contains("accounts") || $0.contains("webhooks") || $0 == "post /batch" } == false)

        // Followed: a bucket, a collection in it, a record in that, each read back through its link.
        func follow(_ link: JSON?, request: [String: String], answer: JSON) throws -> String {
            let target = try #require(operations[link?["operationId"]?.stringValue ?? ""])
            var path = target.template
            for (name, expression) in link?["parameters"]?.objectValue ?? [:] {
                let value = try #require(expression.stringValue == "$response.body#/data/id" ? answer["data"]?["id"]?.stringValue
                                         : request[String(expression.stringValue!.dropFirst("$request.path.".count))])
                path = path.replacingOccurrences(of: "{\(name)}", with: value)
            }
            return path
        }
        func links(_ template: String, _ method: String) -> JSON? { paths[template]?[method]?["responses"]?["201"]?["links"] }
        let bucket = try await server.request("POST", "/buckets", json: ["data": [:]])
        #expect(bucket.status == 201)
        let bucketPath = try follow(links("/buckets", "post")?["get-buckets-by-bid"], request: [:], answer: bucket.json)
        #expect(try await server.request("GET", bucketPath).json["data"]?["id"] == bucket.json["data"]?["id"])
        let bid = try #require(bucket.json["data"]?["id"]?.stringValue)
        let collections = try follow(links("/buckets", "post")?["post-buckets-by-bid-collections"], request: [:], answer: bucket.json)
        #expect(collections == "/buckets/\(bid)/collections")
        let collection = try await server.request("POST", collections, json: ["data": [:]])
        #expect(collection.status == 201)
        let cid = try #require(collection.json["data"]?["id"]?.stringValue)
        let records = try follow(links("/buckets/{bid}/collections", "post")?["post-buckets-by-bid-collections-by-cid-records"],
                                 request: ["bid": bid], answer: collection.json)
        let record = try await server.request("POST", records, json: ["data": ["n": 1]])
        #expect(record.status == 201)
        let recordPath = try follow(links("/buckets/{bid}/collections/{cid}/records", "post")?["get-buckets-by-bid-collections-by-cid-records-by-rid"],
                                    request: ["bid": bid, "cid": cid], answer: record.json)
        let read = try await server.request("GET", recordPath)
        #expect(read.status == 200)
        #expect(read.json["data"]?["n"] == 1)
    }
}
