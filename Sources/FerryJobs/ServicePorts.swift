import FerryCore
import Foundation
import HTTPTypes
public import Hummingbird
import Logging

/// The HTTP ports of a long-lived command (`ferry run`, `ferry listen`): the status and metrics
/// port and the webhook receiver, served beside a ``JobService``.
public struct ServicePorts: Sendable {
    /// How the command names itself in its notes (`ferry run`).
    let label: String

    public init(label: String) {
        self.label = label
    }

    public func note(_ line: String) {
        FileHandle.standardError.write(Data("\(label): \(line)\n".utf8))
    }

    /// Runs the jobs and serves the ports until the jobs end (done, `--max-runs`, or a signal).
    /// A port that cannot be served stops the jobs. A port that closes by itself (at a graceful
    /// shutdown, which reaches the servers too) leaves the jobs to end their current batch.
    /// - Returns: whether any run failed, or a port could not be served.
    public static func run(_ service: JobService, servers: [@Sendable () async -> Bool?]) async -> Bool {
        enum Ended { case jobs(failed: Bool), server(failed: Bool) }
        return await withTaskGroup(of: Ended.self) { group in
            for server in servers { group.addTask { .server(failed: await server() == nil) } }
            group.addTask { .jobs(failed: await service.run()) }
            var failed = false
            while let next = await group.next() {
                switch next {
                case .server(failed: true):
                    service.stop()
                    failed = true
                case .server(failed: false):
                    continue
                case .jobs(let jobsFailed):
                    failed = failed || jobsFailed
                    group.cancelAll()
                }
            }
            return failed
        }
    }

    /// Serves until cancelled. - Returns: nil when the server could not start (or failed).
    public func serve<Responder: HTTPResponder>(_ app: Application<Responder>, what: String) async -> Bool? {
        do {
            try await app.run()
            return false
        } catch is CancellationError {
            return false
        } catch {
            note("error: \(what): \(error)")
            return Task.isCancelled ? false : nil
        }
    }

    public func application<Responder: HTTPResponder>(_ responder: Responder, host: String, port: Int, what: String, path: String) -> Application<Responder> {
        var logger = Logger(label: "ferry")
        logger.logLevel = .warning
        let shown = host.contains(":") ? "[\(host)]" : host
        return Application(
            responder: responder,
            configuration: .init(address: .hostname(host, port: port), serverName: "ferry"),
            onServerRunning: { channel in note("\(what) http://\(shown):\(channel.localAddress?.port ?? port)\(path)") },
            logger: logger
        )
    }

    /// GET / (the jobs page), GET /status (JSON) and GET /metrics (Prometheus).
    public func statusApplication(_ status: JobStatus, host: String, port: Int) -> Application<RouterResponder<BasicRequestContext>> {
        let router = Router()
        router.get("/") { _, _ -> Response in
            var headers = HTTPFields()
            headers[.contentType] = "text/html; charset=utf-8"
            headers[HTTPField.Name("Content-Security-Policy")!] = StatusPage.contentSecurityPolicy
            headers[.cacheControl] = "no-store"
            let page = StatusPage.render(status.snapshot, modelInterval: status.modelInterval)
            return Response(status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(string: page)))
        }
        router.get("status") { _, _ -> Response in
            var headers = HTTPFields()
            headers[.contentType] = "application/json"
            return Response(status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: status.json.serializedBytes() + [0x0A])))
        }
        router.get("metrics") { _, _ -> Response in
            var headers = HTTPFields()
            headers[.contentType] = "text/plain; version=0.0.4"
            return Response(status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(string: status.prometheus)))
        }
        return application(router.buildResponder(), host: host, port: port, what: "status at", path: "/status")
    }
}
