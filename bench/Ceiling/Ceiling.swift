import FerryCore
import Foundation  // exit
import HTTPTypes
import Hummingbird
import Logging
import NIOCore

/// `ferry-ceiling --port P`: a bare Hummingbird 2 server doing the routing and JSON
/// work of the `bench/run.sh` lines with no storage, no authentication and no
/// middleware — the most this framework can give on this machine, measured in the
/// same run as Ferry so Ferry's numbers can be read as a percentage of it.
///
/// - `GET /v1/` and `GET /v1/__heartbeat__`: a small JSON answer (the second is what
///   `wait_ready` in `bench/lib.sh` polls);
/// - `GET /v1/buckets/{bid}/collections/{cid}/records/{rid}`: a seeded-looking record
///   built from `rid`, with `ETag` and `Last-Modified`;
/// - `GET …/records` (any query): the same page of 100 records every time, built once;
/// - `PUT …/records/{rid}`, `POST …/records`: the body parsed with FerryCore's parser,
///   400 unless it is an object with a `data` object, else 201 with the record given
///   its id and `last_modified`;
/// - anything else: 404.
@main
struct Ceiling {
    static let records: RouterPath = "/v1/buckets/:bid/collections/:cid/records"
    static let record = records.appendingPath(":rid")

    static func main() async throws {
        let arguments = Array(CommandLine.arguments.dropFirst())
        guard arguments.count == 2, arguments[0] == "--port", let port = Int(arguments[1]),
              (0...65535).contains(port) else {
            FileHandle.standardError.write(Data("usage: ferry-ceiling --port P   (binds 127.0.0.1)\n".utf8))
            exit(64)  // EX_USAGE
        }
        var logger = Logger(label: "ferry-ceiling")
        logger.logLevel = .warning
        let app = Application(
            router: makeRouter(bodies: CeilingBodies()),
            configuration: .init(address: .hostname("127.0.0.1", port: port), serverName: "ferry-ceiling"),
            logger: logger
        )
        try await app.runService()
    }

    static func makeRouter(bodies: CeilingBodies) -> Router<BasicRequestContext> {
        let router = Router()
        let hello = ByteBuffer(string: #"{"project_name":"ferry-ceiling","url":"http://127.0.0.1/v1/"}"#)
        router.get("/v1") { _, _ in json(.ok, hello) }
        router.get("/v1/__heartbeat__") { _, _ in json(.ok, ByteBuffer(string: "{}")) }
        router.get(record) { _, context in
            let id = try context.parameters.require("rid")
            return json(.ok, bodies.record(id: id), etag: bodies.etag, lastModified: bodies.lastModified)
        }
        router.get(records) { _, _ in
            json(.ok, bodies.page, etag: bodies.etag, lastModified: bodies.lastModified)
        }
        router.put(record) { request, context in
            try await write(request, context: context, id: context.parameters.require("rid"))
        }
        router.post(records) { request, context in
            try await write(request, context: context, id: ObjectID.generate())
        }
        return router
    }

    /// PUT and POST: collect, parse, check, stamp, serialize.
    static func write(_ request: Request, context: BasicRequestContext, id: String) async throws -> Response {
        var request = request
        let body = try await request.collectBody(upTo: context.maxUploadSize)
        guard case .object(var root)? = try? JSON.parse(bytes: body.readableBytesView),
              case .object(var data)? = root["data"] else {
            return json(.badRequest, ByteBuffer(string:
                #"{"code":400,"errno":107,"error":"Invalid parameters","message":"body: expected an object with a data object"}"#))
        }
        let timestamp = Timestamp.now()
        data["id"] = .string(id)
        data["last_modified"] = .int(timestamp)
        root["data"] = .object(data)
        root["permissions"] = .object([:])
        return json(.created, ByteBuffer(bytes: JSON.object(root).serializedBytes()),
                    etag: "\"\(timestamp)\"", lastModified: Timestamp.httpDate(timestamp))
    }

    static func json(_ status: HTTPResponse.Status, _ body: ByteBuffer,
                     etag: String? = nil, lastModified: String? = nil) -> Response {
        var headers = HTTPFields()
        headers[.contentType] = "application/json"
        if let etag { headers[.eTag] = etag }
        if let lastModified { headers[.lastModified] = lastModified }
        return Response(status: status, headers: headers, body: .init(byteBuffer: body))
    }
}
