import FerryCore
import HTTPTypes

/// The OpenAPI 3.1 document of this server's HTTP API, served at `GET /v1/__api__`.
///
/// Its paths are ``Route/all`` — the table ``Route/init(_:)`` parses into — less the routes this
/// server does not serve (``KintoAPI/serves(_:)``), and each path's operations are exactly the
/// route's ``Route/allowedMethods``: the document cannot list what the server does not answer,
/// nor leave out what it does (`APIDocumentTests` checks both against every path the parser accepts).
struct APIDocument {
    let api: KintoAPI

    /// The document, with `baseURL` (`scheme://host/v1`) as its one server.
    func json(baseURL: String) -> JSON {
        var paths: [String: JSON] = [:]
        let served = Route.all.filter { api.serves($0) }
        for route in served {
            var item: [String: JSON] = [:]
            let parameters = Self.pathParameters(route.template)
            if !parameters.isEmpty { item["parameters"] = .array(parameters) }
            for method in route.allowedMethods {
                item[method.rawValue.lowercased()] = Self.linking(operation(route, method), Self.links(route, method, served: served))
            }
            paths[route.template] = .object(item)
        }
        return [
            "openapi": "3.1.0",
            "info": [
                "title": "Ferry (Kinto HTTP API 1.x)",
                "version": .string(api.settings.version),
                "description": .string(Self.description),
                "license": ["name": "Apache-2.0", "identifier": "Apache-2.0"],
            ],
            "servers": [["url": .string(baseURL)]],
            "security": [["basicAuth": []], ["bearerAuth": []], [:]],
            "paths": .object(paths),
            "components": components,
        ]
    }

    static let description = """
        The Kinto HTTP API 1.x as Ferry serves it, with Ferry's extensions: event streams \
        (GET a records list with `Accept: text/event-stream`), long-polls (`_wait`), webhooks, \
        accounts, attachments. Lists take filters as query parameters named `<prefix><field>=<value>`, \
        where the prefix is one of \(ListParameters.prefixes.map(\.0).joined(separator: ", ")) or none \
        (equality); see `x-filter-prefixes` on the list operations. Every error answers Kinto's error \
        object (`#/components/schemas/Error`); 503 and 429 carry `Retry-After`, and any answer may carry \
        `Backoff` (seconds a client should wait before its next request).
        """

    // MARK: Operations

    func operation(_ route: Route, _ method: HTTPRequest.Method) -> JSON {
        var op: [String: JSON] = ["operationId": .string(Self.operationID(route, method)), "tags": [.string(Self.tag(route))]]
        var parameters: [JSON] = []
        var responses: [String: JSON] = [:]
        let isHead = method == .head
        func ok(_ status: String, _ schema: String, headers: [String] = [], description: String = "Success") {
            responses[status] = Self.response(description, schema: isHead ? nil : schema, headers: headers)
        }
        switch route {
        case .hello: ok("200", "Hello")
        case .heartbeat:
            ok("200", "Heartbeat")
            responses["503"] = Self.response("The storage does not answer", schema: isHead ? nil : "Heartbeat")
        case .lbheartbeat: ok("200", "Empty")
        case .version: ok("200", "Version")
        case .api: ok("200", "Document", description: "This document")
        case .flush: ok("202", "Empty", description: "Everything was deleted")
        case .permissions:
            ok("200", "PermissionList")
        case .batch:
            op["requestBody"] = Self.body("BatchRequest")
            parameters.append(Self.header("Prefer", "`return=minimal` (RFC 7240): each write that succeeds answers without its `body`"))
            ok("200", "BatchResponse")
        case .accounts(nil):
            if method == .post {
                op["requestBody"] = Self.body("AccountCreate")
                parameters.append(Self.idempotencyKey)
                ok("201", "AccountResponse")
                ok("200", "AccountResponse", description: "The account exists already with this password")
            } else {
                ok("200", "ObjectList")
            }
        case .accounts:
            switch method {
            case .put, .patch:
                op["requestBody"] = Self.body("AccountWrite")

                ok("200", "AccountResponse")
                if method == .put { ok("201", "AccountResponse", description: "Created") }
            case .delete: ok("200", "Deleted")
            default: ok("200", "AccountResponse", headers: ["ETag"])
            }
        case .webhooks(_, _, let id, let log):
            switch (id, log, method) {
            case (_, true, _): ok("200", "DeliveryLog")
            case (nil, _, _): ok("200", "WebhookList")
            case (_, _, .put):
                op["requestBody"] = Self.body("WebhookWrite")
                ok("200", "WebhookResponse", description: "Replaced")
                ok("201", "WebhookResponse", description: "Registered")
            case (_, _, .delete): ok("200", "Deleted")
            default: ok("200", "WebhookResponse")
            }
        case .attachment:
            if method == .post {
                op["requestBody"] = [
                    "required": true,
                    "content": ["multipart/form-data": ["schema": [
                        "type": "object", "required": ["attachment"],
                        "properties": ["attachment": ["type": "string", "contentMediaType": "application/octet-stream"],
                                       "data": ["type": "string", "description": "The record's fields, as JSON"],
                                       "permissions": ["type": "string", "description": "The record's permissions, as JSON"]],
                    ]]],
                ]
                ok("201", "ObjectResponse", description: "Uploaded, record created")
                ok("200", "ObjectResponse", description: "Uploaded, record updated")
            } else {
                responses["204"] = ["description": "The attachment is gone"]
            }
        case .reconcile:
            // A binary message (ReconcileMessage): its grammar is the protocol's, not a JSON Schema's.
            let message: JSON = ["schema": ["type": "string", "contentMediaType": .string(ReconcileMessage.mediaType)]]
            op["requestBody"] = ["required": true, "content": .object([ReconcileMessage.mediaType: message])]
            responses["200"] = ["description": "The answer: the next message of the exchange (no ranges left: the sets agree)",
                                "content": .object([ReconcileMessage.mediaType: message])]
        case .plural(let path):
            switch method {
            case .get, .head:
                parameters += Self.listParameters() + [Self.ifNoneMatch(write: false)]
                if path.kind == .record {
                    parameters.append(Self.query("_wait", ["type": "number", "minimum": 0, "maximum": .int(Int64(KintoAPI.maxWaitSeconds))],
                                                 "Long-poll: with `_since`, answer as soon as a change exists (at most this many seconds)",
                                                 extensions: ["x-long-poll": true]))
                    op["x-event-stream"] = "With `Accept: text/event-stream` the answer is every change of the collection as Server-Sent Events (resume with `_since` or `Last-Event-ID`)."
                }
                op["x-filter-prefixes"] = .array(ListParameters.prefixes.map { .string($0.0) })
                let horizon = path.kind == .record ? [KintoAPI.tombstoneHorizonHeader] : []
                ok("200", "ObjectList", headers: ["ETag", "Last-Modified", "Next-Page", "Total-Objects", "Total-Records", "Cache-Control"] + horizon)
                if path.kind == .record {
                    responses["410"] = Self.response("Gone (errno 124): the change feed starts (`_since`, `gt_`/`min_last_modified`, `Last-Event-ID`) before the collection's tombstone horizon, so deletes would be missing; read in full or reconcile, then resume from the ETag",
                                                     schema: "Error", headers: [KintoAPI.tombstoneHorizonHeader])
                }
                responses["304"] = Self.response("Not modified since the `If-None-Match` ETag", schema: nil, headers: ["ETag", "Last-Modified"])
            case .post:
                op["requestBody"] = Self.body(Self.writeSchema(path.kind), required: false)
                parameters += [Self.ifMatch, Self.ifNoneMatch(write: true), Self.idempotencyKey]
                ok("201", "ObjectResponse", headers: ["ETag", "Last-Modified"], description: "Created")
                ok("200", "ObjectResponse", headers: ["ETag", "Last-Modified"], description: "Exists already with the same fields")
            default:
                parameters += Self.listParameters()
                parameters.append(Self.ifMatch)
                ok("200", "DeletedList", headers: ["Next-Page"])
            }
        case .object(let path):
            let conditional = [Self.ifMatch, Self.ifNoneMatch(write: !request(method))]
            switch method {
            case .get, .head:
                parameters.append(Self.query("_fields", Self.fieldsSchema, "Comma-separated fields to return (id and last_modified always come)"))
                parameters += conditional
                ok("200", "ObjectResponse", headers: ["ETag", "Last-Modified", "Cache-Control"] + (path.kind == .collection ? [KintoAPI.tombstoneHorizonHeader] : []))
                responses["304"] = Self.response("Not modified since the `If-None-Match` ETag", schema: nil, headers: ["ETag", "Last-Modified"])
            case .put, .patch:
                parameters += conditional
                if method == .patch {
                    // A PATCH without a body changes nothing and is refused (400, "Provide at least
                    // one of data or permissions"), as Kinto refuses it.
                    op["requestBody"] = [
                        "required": true,
                        "content": [
                            "application/json": ["schema": Self.ref(Self.writeSchema(path.kind, patch: true))],
                            "application/merge-patch+json": ["schema": Self.ref(Self.writeSchema(path.kind, patch: true, merge: true))],
                            "application/json-patch+json": ["schema": ["type": "array", "items": [
                                "type": "object", "required": ["op", "path"],
                                "properties": ["op": ["enum": ["add", "remove", "replace", "move", "copy", "test"]], "path": ["type": "string"], "from": ["type": "string"], "value": [:]],
                            ]]],
                        ],
                    ]
                } else {
                    op["requestBody"] = Self.body(Self.writeSchema(path.kind), required: false)
                }
                ok("200", "ObjectResponse", headers: ["ETag", "Last-Modified"], description: "Replaced or changed")
                if method == .put { ok("201", "ObjectResponse", headers: ["ETag", "Last-Modified"], description: "Created") }
            default:
                parameters += conditional
                ok("200", "Deleted", headers: ["ETag", "Last-Modified"])
            }
        }
        responses["default"] = Self.errorResponse
        op["responses"] = .object(responses)
        if !parameters.isEmpty { op["parameters"] = .array(parameters) }
        return .object(op)
    }

    private func request(_ method: HTTPRequest.Method) -> Bool { method == .get || method == .head }

    // MARK: Links

    /// OpenAPI links from the answer of a write that creates a bucket, collection, group or record
    /// (`POST` on its list, `PUT` on it) to the operations on that same object and on the lists
    /// right below it: the answer's `data.id` and the request's other path parameters flow into
    /// them. Schemathesis's stateful phase follows them (create, then read, change, delete what it
    /// created; create a bucket, then a collection in it, then a record in that). Keyed by the
    /// target's operation id; nil for any other operation.
    static func links(_ route: Route, _ method: HTTPRequest.Method, served: [Route]) -> JSON? {
        let object: String
        switch (route, method) {
        case (.plural, .post):
            guard let found = served.first(where: { if case .object = $0 { $0.template.hasPrefix(route.template + "/{") } else { false } }) else { return nil }
            object = found.template
        case (.object, .put): object = route.template
        default: return nil
        }
        let names = pathParameters(object).compactMap { $0["name"]?.stringValue }
        var parameters: [String: JSON] = [:]
        for name in names {
            parameters[name] = .string(name == names.last ? "$response.body#/data/id" : "$request.path.\(name)")
        }
        var links: [String: JSON] = [:]
        for target in served {
            let methods: [HTTPRequest.Method]
            switch target {
            case .object where target.template == object: methods = [.get, .put, .patch, .delete]
            case .plural where target.template.hasPrefix(object + "/") && target.template.dropFirst(object.count + 1).contains("/") == false:
                methods = [.get, .post]
            default: continue
            }
            for linked in methods where target.allowedMethods.contains(linked) {
                let id = operationID(target, linked)
                links[id] = ["operationId": .string(id), "parameters": .object(parameters),
                             "description": .string("The \(linked.rawValue) of what this created")]
            }
        }
        return links.isEmpty ? nil : .object(links)
    }

    /// `operation` with `links` on its success answers (200 and 201).
    static func linking(_ operation: JSON, _ links: JSON?) -> JSON {
        guard let links, case .object(var op) = operation, case .object(var responses)? = op["responses"] else { return operation }
        for status in ["200", "201"] {
            guard case .object(var response)? = responses[status] else { continue }
            response["links"] = links
            responses[status] = .object(response)
        }
        op["responses"] = .object(responses)
        return .object(op)
    }

    static func ref(_ schema: String) -> JSON { ["$ref": .string("#/components/schemas/\(schema)")] }

    /// The body schema of a write of `kind` (a PATCH needs data or permissions).
    static func writeSchema(_ kind: ResourceKind, patch: Bool = false, merge: Bool = false) -> String {
        kind.rawValue.prefix(1).uppercased() + kind.rawValue.dropFirst() + (merge ? "MergePatch" : patch ? "Patch" : "Write")
    }

    /// What ``ResourceHandler/preconditionHeader(_:)`` reads: `*`, or a timestamp, quoted or not,
    /// weak (`W/`) or not; an empty value is no precondition.
    static let etag: JSON = ["type": "string", "pattern": "^(|\\*|(W/)?\"*[+-]?[0-9]{1,18}\"*)$"]

    static let ifMatch = header("If-Match", "An ETag (`\"<timestamp>\"`): 412 unless the object's (or list's) matches; `*`: 412 unless it exists",
                                schema: etag)

    static func ifNoneMatch(write: Bool) -> JSON {
        write ? header("If-None-Match", "`*`: 412 if the object exists; an ETag: 412 if it matches", schema: etag)
              : header("If-None-Match", "An ETag: 304 while unchanged; `*`: 412 if the object exists", schema: etag)
    }

    /// Every other query parameter of a list is a filter: `<prefix><field>=<value>` (see
    /// ``ListParameters/parseFilter(name:value:)``); `last_modified` filters take timestamps only.
    static let filters: JSON = {
        let prefixes = ListParameters.prefixes.map(\.0).joined(separator: "|")
        return [
            "name": "filters", "in": "query", "required": false, "style": "form", "explode": true,
            "description": .string("Filters, one query parameter each: `<prefix><field>=<value>` with a prefix among \(ListParameters.prefixes.map(\.0).joined(separator: ", ")) or none (equality); `in_`, `exclude_`, `contains_`, `contains_any_` take comma-separated values; values are JSON where they parse, text otherwise"),
            "schema": [
                "type": "object",
                "propertyNames": ["pattern": .string("^(?!(\(prefixes))?last_modified$)(\(prefixes))?[A-Za-z0-9][A-Za-z0-9_-]*(\\.[A-Za-z0-9_][A-Za-z0-9_-]*)*$"),
                                  "maxLength": 200],
                // A value holding NUL is refused (400), as in names.
                "additionalProperties": ["type": "string", "pattern": "^[^\\u0000]*$"],
            ],
        ]
    }()

    static func operationID(_ route: Route, _ method: HTTPRequest.Method) -> String {
        let words = route.template.split(separator: "/").map { $0.hasPrefix("{") ? "by-" + $0.dropFirst().dropLast() : String($0) }
        return ([method.rawValue.lowercased()] + (words.isEmpty ? ["root"] : words)).joined(separator: "-")
    }

    static func tag(_ route: Route) -> String {
        switch route {
        case .hello, .heartbeat, .lbheartbeat, .version, .api, .flush: "server"
        case .batch: "batch"
        case .permissions: "permissions"
        case .accounts: "accounts"
        case .webhooks: "webhooks"
        case .attachment: "attachments"
        case .reconcile: "reconcile"
        case .plural(let p), .object(let p): p.kind.plural
        }
    }

    // MARK: Parameters

    static func pathParameters(_ template: String) -> [JSON] {
        template.split(separator: "/").filter { $0.hasPrefix("{") }.map { segment in
            let name = String(segment.dropFirst().dropLast())
            let schema: JSON = name == "uid"
                ? accountID
                : ["type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9_-]*$", "maxLength": .int(Int64(ObjectID.maxLength))]
            return ["name": .string(name), "in": "path", "required": true, "schema": schema]
        }
    }

    static func query(_ name: String, _ schema: JSON, _ description: String, extensions: [String: JSON] = [:]) -> JSON {
        var parameter: [String: JSON] = ["name": .string(name), "in": "query", "required": false, "schema": schema, "description": .string(description)]
        parameter.merge(extensions) { $1 }
        return .object(parameter)
    }

    static func header(_ name: String, _ description: String, schema: JSON = ["type": "string"]) -> JSON {
        ["name": .string(name), "in": "header", "required": false, "schema": schema, "description": .string(description)]
    }

    static let idempotencyKey: JSON = [
        "name": "Idempotency-Key", "in": "header", "required": false, "schema": ["type": "string", "pattern": "^(\"[\\x20\\x21\\x23-\\x5B\\x5D-\\x7E]{1,255}\"|[\\x21\\x23-\\x7E]{1,255})$"],
        "description": "The IETF httpapi draft's key: a retried POST with the same key and body answers as the first time without creating twice; the same key with another body answers 422",
    ]

    /// A field name as ``FieldName/isValid(_:)`` takes it.
    static let field = "[A-Za-z0-9_][A-Za-z0-9_-]*(\\.[A-Za-z0-9_][A-Za-z0-9_-]*)*"
    /// `_fields`: comma-separated, blanks around a name and empty items ignored.
    /// Each name is at most ``FieldName/maxLength`` bytes; a regex cannot say that of every item
    /// of a list short of look-aheads its generators choke on, so the whole value is bounded by it.
    static let fieldsSchema: JSON = ["type": "string", "pattern": .string("^[ \\t]*(\(field))?[ \\t]*(,[ \\t]*(\(field))?[ \\t]*)*$"),
                                     "maxLength": .int(Int64(FieldName.maxLength))]

    static func listParameters() -> [JSON] {
        let timestamp: JSON = ["type": "integer", "minimum": .int(Int64.min), "maximum": .int(Int64.max)]
        return [
            query("_since", timestamp, "Objects changed after this timestamp (tombstones included)"),
            query("_before", timestamp, "Objects changed before this timestamp"),
            query("_to", timestamp, "Objects changed before this timestamp (alias of _before)"),
            query("_sort", ["type": "string", "pattern": .string("^[+-]?\(field)(,[+-]?\(field))*$"), "maxLength": .int(Int64(FieldName.maxLength))],
                  "Comma-separated fields, `-` for descending"),
            query("_fields", Self.fieldsSchema, "Comma-separated fields to return (id and last_modified always come)"),
            query("_limit", ["type": "integer", "minimum": 0, "maximum": .int(Int64.max)], "At most this many objects on the page (0: the server's page size)"),
            query("_token", ["type": "string"], "The continuation of a `Next-Page` link (opaque: only a value the server wrote)",
                  extensions: ["x-server-issued": true]),
            filters,
        ]
    }

    // MARK: Bodies and responses

    static func body(_ schema: String, required: Bool = true) -> JSON {
        ["required": .bool(required), "content": ["application/json": ["schema": ["$ref": .string("#/components/schemas/\(schema)")]]]]
    }

    static func response(_ description: String, schema: String?, headers: [String] = []) -> JSON {
        var response: [String: JSON] = ["description": .string(description)]
        if let schema { response["content"] = ["application/json": ["schema": ["$ref": .string("#/components/schemas/\(schema)")]]] }
        let all = headers + ["Backoff"]
        response["headers"] = .object(Dictionary(uniqueKeysWithValues: all.map { ($0, ["$ref": .string("#/components/headers/\($0)")]) }))
        return .object(response)
    }

    static let errorResponse: JSON = [
        "description": "Kinto's error object (400 invalid, 401 unauthenticated, 403 forbidden, 404 missing, 405 method, 406/415 media type, 409 conflict, 410 before the tombstone horizon, 412 precondition, 413 too large, 422 idempotency key reused, 429 rate limited, 503 storage unavailable)",
        "content": ["application/json": ["schema": ["$ref": "#/components/schemas/Error"]]],
        "headers": ["Retry-After": ["$ref": "#/components/headers/Retry-After"], "Backoff": ["$ref": "#/components/headers/Backoff"]],
    ]

    /// The permissions a write of `kind` may set: principals by permission name, or null to clear one.
    static func permissions(_ kind: ResourceKind) -> JSON {
        ["type": "object", "propertyNames": ["enum": .array(kind.permissionNames.map { .string($0) })],
         "additionalProperties": ["oneOf": [["type": "null"], ["type": "array", "items": ["type": "string", "minLength": 1, "maxLength": 512]]]]]
    }

    /// The body of a write of `kind`: its data (with the kind's own rules) and permissions.
    /// - Parameter merge: a JSON merge patch (RFC 7396), where null removes a field.
    static func write(_ kind: ResourceKind, patch: Bool, merge: Bool = false) -> JSON {
        func orNull(_ schema: JSON) -> JSON { merge ? ["oneOf": [["type": "null"], schema]] : schema }
        var properties: [String: JSON] = ["last_modified": ["type": ["integer", "null"], "minimum": .int(Int64.min), "maximum": .int(Timestamp.maxRequested),
                                                            "description": "A timestamp to keep (only when newer than the current one)"]]
        switch kind {
        case .group: properties["members"] = orNull(["type": "array", "items": ["type": "string"]])
        case .collection:
            // null is no schema and no unique fields (CollectionRules), in a merge patch or not.
            properties["schema"] = ["type": ["object", "null"], "description": "A JSON Schema (draft 2020-12 subset) every record must meet"]
            // At most 16 top-level names (no dots), not `id` (unique already) nor `last_modified`.
            properties["unique_fields"] = ["type": ["array", "null"], "maxItems": 16,
                                           "items": ["type": "string", "pattern": "^[A-Za-z0-9_][A-Za-z0-9_-]*$", "maxLength": .int(Int64(FieldName.maxLength)),
                                                     "not": ["enum": ["id", "last_modified"]]]]
        case .bucket, .record: break
        }
        let data: JSON = ["type": "object", "properties": .object(properties)]
        var body: [String: JSON] = ["type": "object", "properties": ["data": data, "permissions": permissions(kind)]]
        if patch { body["anyOf"] = [["required": ["data"]], ["required": ["permissions"]]] }
        return .object(body)
    }

    /// An account's permissions are fixed: a body may only name none.
    static let accountPermissions: JSON = ["oneOf": [["type": "null"], ["type": "object", "maxProperties": 0]]]

    /// An account id as ``Authenticator/isValidAccountID(_:)`` takes it.
    static let accountID: JSON = ["type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9+.@_-]*$", "maxLength": 256]

    var components: JSON {
        let object: JSON = ["type": "object", "properties": ["id": ["type": "string"], "last_modified": ["type": "integer"]],
                            "required": ["id", "last_modified"]]
        let passwordMinLength = api.authenticator?.settings.passwordMinLength ?? 1
        func headerSchema(_ description: String, _ schema: JSON = ["type": "string"]) -> JSON {
            ["description": .string(description), "schema": schema]
        }
        return [
            "securitySchemes": [
                "basicAuth": ["type": "http", "scheme": "basic", "description": "An account (`--auth accounts`) or any user:secret with the Basic policy"],
                "bearerAuth": ["type": "http", "scheme": "bearer", "description": "A JWT (OpenID Connect) where configured"],
            ],
            "headers": [
                "ETag": headerSchema("The object's or list's timestamp, quoted"),
                "Last-Modified": headerSchema("The same timestamp as an HTTP date"),
                "Next-Page": headerSchema("The URL of the next page (absent on the last)"),
                "Total-Objects": headerSchema("How many objects match the filters", ["type": "string", "pattern": "^[0-9]+$"]),
                "Total-Records": headerSchema("Kinto's older name of Total-Objects", ["type": "string", "pattern": "^[0-9]+$"]),
                "Backoff": headerSchema("Seconds the client should wait before its next request", ["type": "string", "pattern": "^[0-9]+$"]),
                "Retry-After": headerSchema("Seconds before a retry may succeed", ["type": "string", "pattern": "^[0-9]+$"]),
                "Cache-Control": headerSchema("Caching of the answer"),
                KintoAPI.tombstoneHorizonHeader: headerSchema("The collection's tombstone horizon: tombstones up to this timestamp were purged (0: none), so a change feed from before it is answered 410",
                                                              ["type": "string", "pattern": "^[0-9]+$"]),
            ],
            "schemas": [
                "Error": [
                    "type": "object", "required": ["code", "errno", "error", "message"],
                    "properties": ["code": ["type": "integer"], "errno": ["type": "integer"], "error": ["type": "string"],
                                   "message": ["type": "string"], "info": ["type": "string"], "details": [:]],
                ],
                "Empty": ["type": "object"],
                "Object": object,
                "Permissions": ["type": "object", "additionalProperties": ["type": "array", "items": ["type": "string"]],
                                "description": "Principals by permission (read, write, collection:create, group:create, record:create)"],
                "BucketWrite": Self.write(.bucket, patch: false), "BucketPatch": Self.write(.bucket, patch: true),
                "CollectionWrite": Self.write(.collection, patch: false), "CollectionPatch": Self.write(.collection, patch: true),
                "GroupWrite": Self.write(.group, patch: false), "GroupPatch": Self.write(.group, patch: true),
                "RecordWrite": Self.write(.record, patch: false), "RecordPatch": Self.write(.record, patch: true),
                "BucketMergePatch": Self.write(.bucket, patch: true, merge: true), "CollectionMergePatch": Self.write(.collection, patch: true, merge: true),
                "GroupMergePatch": Self.write(.group, patch: true, merge: true), "RecordMergePatch": Self.write(.record, patch: true, merge: true),
                "ObjectResponse": [
                    "type": "object", "required": ["data"],
                    "properties": ["data": ["$ref": "#/components/schemas/Object"], "permissions": ["$ref": "#/components/schemas/Permissions"]],
                ],
                "ObjectList": ["type": "object", "required": ["data"],
                               "properties": ["data": ["type": "array", "items": ["$ref": "#/components/schemas/Object"]]]],
                "Deleted": ["type": "object", "required": ["data"], "properties": ["data": [
                    "type": "object", "required": ["id", "deleted", "last_modified"],
                    "properties": ["id": ["type": "string"], "deleted": ["const": true], "last_modified": ["type": "integer"]],
                ]]],
                "DeletedList": ["type": "object", "required": ["data"], "properties": ["data": ["type": "array", "items": [
                    "type": "object", "required": ["id", "deleted", "last_modified"],
                ]]]],
                "Hello": ["type": "object", "required": ["project_name", "project_version", "http_api_version", "url", "settings", "capabilities"]],
                "Heartbeat": ["type": "object", "additionalProperties": ["type": "boolean"]],
                "Version": ["type": "object", "required": ["name", "version"],
                            "properties": ["name": ["type": "string"], "version": ["type": "string"], "commit": ["type": "string"], "source": ["type": "string"]]],
                "Document": ["type": "object", "required": ["openapi", "info", "paths"]],
                "PermissionList": ["type": "object", "required": ["data"], "properties": ["data": ["type": "array", "items": [
                    "type": "object", "required": ["id", "uri", "resource_name", "permissions"],
                    "properties": ["id": ["type": "string"], "uri": ["type": "string"], "resource_name": ["type": "string"],
                                   "permissions": ["type": "array", "items": ["type": "string"]]],
                ]]]],
                "BatchRequest": [
                    "type": "object", "required": ["requests"],
                    "properties": [
                        "defaults": ["type": "object", "properties": ["body": ["type": ["object", "null"]], "headers": ["type": "object", "additionalProperties": ["type": "string"]]]],
                        "requests": ["type": "array", "minItems": 1, "maxItems": .int(Int64(api.settings.batchMaxRequests)), "items": [
                            "type": "object", "required": ["path"],
                            "properties": ["method": ["type": "string", "enum": ["GET", "HEAD", "PUT", "PATCH", "POST", "DELETE"]],
                                           "path": ["type": "string", "pattern": "^/", "maxLength": 4096], "headers": ["type": "object", "additionalProperties": ["type": "string"]],
                                           "body": ["type": ["object", "null"]]],
                        ]],
                    ],
                ],
                "BatchResponse": ["type": "object", "required": ["responses"], "properties": ["responses": ["type": "array", "items": [
                    // No `body` for a write that succeeded under `Prefer: return=minimal`.
                    "type": "object", "required": ["status", "path", "headers"],
                    "properties": ["status": ["type": "integer"], "path": ["type": "string"], "body": [:], "headers": ["type": "object"]],
                ]]]],
                "AccountWrite": [
                    "type": "object", "required": ["data"],
                    "properties": ["data": ["type": "object", "required": ["password"], "additionalProperties": false,
                                            "properties": ["password": ["type": "string", "minLength": .int(Int64(passwordMinLength)), "maxLength": .int(Int64(Authenticator.passwordMaxLength))]]],
                                   "permissions": Self.accountPermissions],
                ],
                "AccountCreate": [
                    "type": "object", "required": ["data"],
                    "properties": ["data": ["type": "object", "required": ["id", "password"], "additionalProperties": false,
                                            "properties": ["id": Self.accountID,
                                                           "password": ["type": "string", "minLength": .int(Int64(passwordMinLength)), "maxLength": .int(Int64(Authenticator.passwordMaxLength))]]],
                                   "permissions": Self.accountPermissions],
                ],
                "AccountResponse": ["type": "object", "required": ["data"],
                                    "properties": ["data": ["$ref": "#/components/schemas/Object"], "permissions": ["$ref": "#/components/schemas/Permissions"]]],
                "WebhookWrite": [
                    "type": "object", "required": ["data"],
                    "properties": ["data": ["type": "object", "required": ["url", "secret"], "additionalProperties": false, "properties": [
                        "url": ["type": "string", "maxLength": 2048, "description": "Where deliveries go; internal addresses only where webhook_allow_hosts allows them",
                                "pattern": "^https?://[a-z0-9]([a-z0-9-]{0,30}[a-z0-9])?(\\.[a-z0-9]([a-z0-9-]{0,30}[a-z0-9])?)*(:[1-9][0-9]{0,3})?(/[A-Za-z0-9._~-]*)*$"],
                        "secret": ["type": "string", "minLength": 16, "maxLength": 256],
                        "batch_size": ["type": "integer", "minimum": 1], "since": ["type": "integer", "minimum": 0],
                    ]]],
                ],
                "WebhookResponse": ["type": "object", "required": ["data"], "properties": ["data": ["$ref": "#/components/schemas/Object"]]],
                "WebhookList": ["type": "object", "required": ["data"], "properties": ["data": ["type": "array", "items": ["$ref": "#/components/schemas/Object"]]]],
                "DeliveryLog": ["type": "object", "required": ["data"], "properties": ["data": ["type": "array"]]],
            ],
        ]
    }
}
