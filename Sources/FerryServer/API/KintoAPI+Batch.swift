import FerryCore
import FerryStore

extension KintoAPI {
    /// `POST /v1/batch`: up to `batch_max_requests` sub-requests in one transaction.
    /// Each sub-request runs in a savepoint: one that fails answers its error and
    /// changes nothing, the others still apply (as in Kinto).
    func batch(_ request: APIRequest) async throws -> APIResponse {
        let json: JSON
        do {
            json = try JSON.parse(bytes: request.body)
        } catch let error as JSONParseError {
            throw KintoError.badJSON(error.description)
        }
        guard case .object(let top) = json else {
            throw KintoError.invalidParameters(location: "body", description: "The body must be a JSON object")
        }
        let defaults = top["defaults"] ?? .object([:])
        guard case .object = defaults else {
            throw KintoError.invalidParameters(location: "body", name: "defaults", description: "defaults must be an object")
        }
        guard let requests = top["requests"] else {
            throw KintoError.invalidParameters(location: "body", name: "requests", description: "requests is missing")
        }
        guard case .array(let items) = requests, !items.isEmpty else {
            throw KintoError.invalidParameters(location: "body", name: "requests", description: "requests must be a non-empty list")
        }
        guard items.count <= settings.batchMaxRequests else {
            throw KintoError.invalidParameters(location: "body", name: "requests",
                                               description: "Number of requests is limited to \(settings.batchMaxRequests)")
        }
        var subrequests: [APIRequest] = []
        for (i, item) in items.enumerated() {
            guard case .object = item else {
                throw KintoError.invalidParameters(location: "body", name: "requests.\(i)", description: "requests.\(i) must be an object")
            }
            let merged = Self.mergeDefaults(defaults, into: item)
            subrequests.append(try subrequest(merged, index: i, parent: request))
        }
        let subs = subrequests
        // Other processes hear of what the writes among them may change, not of everything.
        let writes = subs.filter { $0.method != "GET" && $0.method != "HEAD" }
        let announcements = Set(writes.flatMap { Self.announcements(for: $0.path) }).sorted()
        let responses: [JSON] = try await storage.write(announcing: announcements) { session in
            var out: [JSON] = []
            for sub in subs {
                let response: APIResponse
                do {
                    let route = try Self.route(sub.path)
                    if case .batch = route {
                        throw KintoError.invalidParameters(location: "body", name: "requests", description: "Recursive batch requests are not allowed")
                    }
                    guard route.allowedMethods.contains(sub.method) else {
                        throw KintoError.methodNotAllowed(sub.method, allowed: route.allowedMethods)
                    }
                    if self.settings.readonly && sub.method != "GET" && sub.method != "HEAD" {
                        throw KintoError.methodNotAllowed(sub.method, allowed: ["GET", "HEAD"])
                    }
                    response = try session.savepoint { try self.respond(sub, route: route, session: session) }
                } catch let error as KintoError {
                    response = APIResponse(error: error)
                }
                var headers: [String: JSON] = [:]
                for (name, value) in response.headers { headers[name] = .string(value) }
                out.append([
                    "status": .int(Int64(response.status)),
                    "path": .string(sub.path),
                    "body": response.jsonBody ?? .null,
                    "headers": .object(headers),
                ])
            }
            return out
        }
        if let authenticator, writes.contains(where: { Self.mayChangeAccountsOrGroups($0.path) }) {
            authenticator.accountsOrGroupsChanged()
        }
        return APIResponse(body: .json(["responses": .array(responses)]))
    }

    /// Kinto merges `defaults` into each request recursively; the request's values win.
    static func mergeDefaults(_ defaults: JSON, into item: JSON) -> JSON {
        guard case .object(let d) = defaults, case .object(var members) = item else { return item }
        for (key, value) in d {
            if let existing = members[key] {
                if case .object = existing, case .object = value { members[key] = mergeDefaults(value, into: existing) }
            } else {
                members[key] = value
            }
        }
        return .object(members)
    }

    func subrequest(_ item: JSON, index i: Int, parent: APIRequest) throws -> APIRequest {
        let method = (item["method"] ?? "GET").stringValue?.uppercased()
        guard let method, ["GET", "HEAD", "PUT", "PATCH", "POST", "DELETE"].contains(method) else {
            throw KintoError.invalidParameters(location: "body", name: "requests.\(i).method", description: "requests.\(i).method must be one of GET, HEAD, PUT, PATCH, POST, DELETE")
        }
        guard let rawPath = item["path"]?.stringValue, rawPath.hasPrefix("/"), rawPath.utf8.count <= 4096 else {
            throw KintoError.invalidParameters(location: "body", name: "requests.\(i).path", description: "requests.\(i).path must be a path starting with /")
        }
        var headers = parent.headers
        headers["content-length"] = nil
        if let subHeaders = item["headers"] {
            guard case .object(let members) = subHeaders else {
                throw KintoError.invalidParameters(location: "body", name: "requests.\(i).headers", description: "requests.\(i).headers must be an object")
            }
            for (name, value) in members {
                guard let s = value.stringValue else {
                    throw KintoError.invalidParameters(location: "body", name: "requests.\(i).headers", description: "header values must be strings")
                }
                headers[name.lowercased()] = s
            }
        }
        var body: [UInt8] = []
        if let subBody = item["body"], subBody != .null {
            guard case .object = subBody else {
                throw KintoError.invalidParameters(location: "body", name: "requests.\(i).body", description: "requests.\(i).body must be an object")
            }
            body = subBody.serializedBytes()
        }
        var path = rawPath
        var query: [(String, String)] = []
        if let q = rawPath.firstIndex(of: "?") {
            path = String(rawPath[..<q])
            query = APIRequest.parseQuery(rawPath[rawPath.index(after: q)...])
        }
        if path.hasPrefix("/v1/") || path == "/v1" { path = String(path.dropFirst(3)) }
        return APIRequest(method: method, path: path, query: query, headers: headers, body: body, identity: parent.identity, baseURL: parent.baseURL)
    }
}
