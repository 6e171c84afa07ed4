import ArgumentParser
import FerryCore
import FerryJobs
import FerrySync
import Foundation

/// `ferry listen --port P JOB…`: run jobs when a Ferry server's webhook says a collection changed.
struct ListenCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "listen",
        abstract: "Receive a Ferry server's webhook deliveries and run jobs of a jobs file on each.",
        discussion: """
            Each delivery must be signed with the webhook's secret (Ferry-Signature: t=<unix seconds>,\
            sha256=<HMAC-SHA256 of "<t>.<delivery id>.<body>">) and dated within --tolerance seconds. \
            Answers: 202 accepted, 200 duplicate (a delivery id already accepted: no second run), \
            401 bad or stale signature, 400 bad body, 404 other paths than / and /webhook, \
            405 other methods than POST, 413 over 10 MB.

            Each accepted delivery runs the named jobs whose source is the delivery's collection (and \
            every named job whose source is not a server collection), with their own settings \
            (webhook jobs normally say mode: incremental; their schedule: is not used). A job's runs \
            never overlap: deliveries that come during a run make exactly one more run after it; \
            different jobs run side by side. A failed run is reported on stderr and the listener \
            keeps going. SIGTERM finishes running batches, saves their checkpoints and exits.

            Give the secret in FERRY_WEBHOOK_SECRET rather than --secret, which other users see in ps.
            """
    )

    @Argument(help: ArgumentHelp("The jobs to run on each delivery.", valueName: "JOB")) var names: [String] = []
    @Option(name: .long, help: ArgumentHelp("Port to listen on (0 picks a free port).", valueName: "PORT")) var port: Int
    @Option(name: .long, help: ArgumentHelp("Address to listen on.", valueName: "ADDRESS")) var host: String = "127.0.0.1"
    @Option(name: .long, help: ArgumentHelp("The webhook's secret (default: FERRY_WEBHOOK_SECRET, which ps does not show).", valueName: "SECRET")) var secret: String?
    @Option(name: .customLong("jobs"), help: ArgumentHelp("The jobs file.", valueName: "FILE")) var file: String = "ferry.yml"
    @Option(name: .long, help: ArgumentHelp("The engine's state database: checkpoints and run history.", valueName: "FILE")) var state: String = ".ferry/state.db"
    @Option(name: .long, help: ArgumentHelp("Most seconds a signature's time may be from this clock, either way.", valueName: "SECONDS")) var tolerance: Int = WebhookSignature.defaultTolerance
    @Flag(name: .long, help: "Print one JSON report per run on stdout.") var json = false
    @Option(name: .long, help: ArgumentHelp("Stop after every job ran this many times.", valueName: "N")) var maxRuns: Int?

    func validate() throws {
        guard (0...65_535).contains(port) else { throw ValidationError("--port must be between 0 and 65535, not \(port)") }
        guard (1...86_400).contains(tolerance) else { throw ValidationError("--tolerance must be between 1 and 86400 seconds, not \(tolerance)") }
        if let maxRuns, maxRuns < 1 { throw ValidationError("--max-runs must be at least 1, not \(maxRuns)") }
    }

    func run() async throws {
        let environment = ProcessInfo.processInfo.environment
        let secret: String
        let jobs: [SyncJob]
        do {
            guard let given = self.secret ?? environment["FERRY_WEBHOOK_SECRET"], !given.isEmpty else {
                throw SyncError.badInput("no webhook secret: set FERRY_WEBHOOK_SECRET (or give --secret)")
            }
            secret = given
            guard !names.isEmpty else {
                let all = try JobsFile.load(file, only: [], environment: environment).compactMap(\.job.name)
                throw SyncError.badInput("name the jobs to run on each delivery (\(file) has: \(all.joined(separator: ", ")))")
            }
            jobs = try JobsFile.load(file, only: names, environment: environment).map { entry in
                var job = entry.job
                job.statePath = state
                return job
            }
        } catch {
            throw CommandLine.fail(error)
        }

        let service = JobService(jobs: jobs.map { ($0, .webhook) }, output: .printing(json: json), maxRuns: maxRuns)
        let ports = ServicePorts(label: "ferry listen")
        let receiver = WebhookReceiver(configuration: .init(secret: secret, tolerance: tolerance), log: { ports.note($0) }) { delivery in
            service.delivered(bucket: delivery.bucket, collection: delivery.collection)
        }
        let app = ports.application(receiver, host: host, port: port, what: "listening on", path: "/")
        let failed = try await GracefulShutdown.run(stop: { service.stop() }) {
            await ServicePorts.run(service, servers: [{ await ports.serve(app, what: "cannot listen on \(host):\(port)") }])
        }
        if failed { throw ExitCode(1) }
    }
}
