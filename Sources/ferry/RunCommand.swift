import ArgumentParser
import FerryCore
import FerryJobs
import FerrySync
import Foundation

/// `ferry run ferry.yml`: the jobs of a file, each under its schedule, as one service.
struct RunCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Run the jobs of a YAML file (its jobs: section), each under its schedule, as one service.",
        discussion: """
            Each job takes source, target, mode, delete, key, cursor_field, batch_size, \
            transform (rename, drop, set, cast, filter), verify, strict, dead_letter, \
            source_auth, target_auth (use ${ENV_VAR} for secrets), source_rest, target_rest (the \
            --source-rest/--target-rest settings as a mapping), retries, dry_run, reconcile \
            (false: --no-reconcile) and schedule.

            schedule: once (the default) runs the job once, first; every INTERVAL (every 30s) and \
            cron EXPRESSION (cron */5 * * * *) run it at those times; follow keeps its target in \
            sync in real time (follow 10s: poll every 10 s when the source has no event stream); \
            webhook runs it when a Ferry server's webhook delivers to --listen-port (the secret in \
            FERRY_WEBHOOK_SECRET). A job's runs never overlap; different jobs run side by side. \
            With only once jobs, the command ends when they are done; otherwise it runs until \
            SIGTERM or SIGINT, which finish each running batch and save its checkpoint first.

            --status-port serves GET / (a page: each job's figures, charts of its last runs, its \
            health model as a state diagram), GET /status (each job's state, last run, lag, error, \
            as JSON) and GET /metrics (records moved, failures, retries and lag per job, Prometheus).

            Every --model-interval, each job that is not once has its health state (in sync, \
            catching up, failing; stopped when the service ends) recorded in the state database; \
            ferry status --model estimates a Markov chain from it, and /status and /metrics show \
            its key figures.
            """
    )

    @Argument(help: ArgumentHelp("The jobs file (ferry init writes one).", valueName: "FILE")) var file: String
    @Option(name: .customLong("job"), help: ArgumentHelp("Run only this job (repeatable).", valueName: "NAME")) var only: [String] = []
    @Option(name: .long, help: ArgumentHelp("The engine's state database: checkpoints and run history.", valueName: "FILE")) var state: String = ".ferry/state.db"
    @Flag(name: .long, help: "Print one JSON report per run on stdout.") var json = false
    @Option(name: .long, help: ArgumentHelp("Stop after each scheduled or webhook job ran this many times.", valueName: "N")) var maxRuns: Int?
    @Option(name: .long, help: ArgumentHelp("Serve GET / (the jobs page), GET /status and GET /metrics on this port (0: any free port).", valueName: "PORT")) var statusPort: Int?
    @Option(name: .long, help: ArgumentHelp("Receive webhook deliveries on this port, for jobs with schedule: webhook.", valueName: "PORT")) var listenPort: Int?
    @Option(name: .long, help: ArgumentHelp("The address of the status and webhook ports.", valueName: "ADDRESS")) var host: String = "127.0.0.1"
    @Option(name: .long, help: ArgumentHelp("Record each scheduled, follow and webhook job's health state this often, for ferry status --model (30s, 5m, ...).", valueName: "INTERVAL")) var modelInterval: String = "60s"

    /// `--model-interval` in seconds.
    var modelSeconds: Double {
        get throws(SyncError) {
            guard case .every(let seconds) = try Schedule(every: modelInterval) else { return 60 }
            return seconds
        }
    }

    func validate() throws {
        do { _ = try modelSeconds } catch { throw ValidationError("--model-interval: \(error.message)") }
        if let maxRuns, maxRuns < 1 { throw ValidationError("--max-runs must be at least 1, not \(maxRuns)") }
        for (flag, port) in [("--status-port", statusPort), ("--listen-port", listenPort)] {
            if let port, !(0...65_535).contains(port) { throw ValidationError("\(flag) must be between 0 and 65535, not \(port)") }
        }
    }

    func run() async throws {
        let environment = ProcessInfo.processInfo.environment
        var jobs: [(job: SyncJob, trigger: JobTrigger)] = []
        var secret: String?
        do {
            for entry in try JobsFile.load(file, only: only, environment: environment) {
                var job = entry.job
                job.statePath = state
                jobs.append((job, entry.spec.trigger))
            }
            let webhookJobs = jobs.filter { $0.trigger == .webhook }.map { $0.job.name ?? $0.job.id }
            if !webhookJobs.isEmpty {
                guard listenPort != nil else {
                    throw SyncError.badInput("\(file): \(webhookJobs.joined(separator: ", ")) run on webhook deliveries: give --listen-port (and the secret in FERRY_WEBHOOK_SECRET)")
                }
                guard let given = environment["FERRY_WEBHOOK_SECRET"], !given.isEmpty else {
                    throw SyncError.badInput("no webhook secret for \(webhookJobs.joined(separator: ", ")): set FERRY_WEBHOOK_SECRET")
                }
                secret = given
            } else if listenPort != nil {
                throw SyncError.badInput("--listen-port is for jobs with schedule: webhook, and \(file) has none")
            }
        } catch {
            throw CommandLine.fail(error)
        }

        let service = JobService(jobs: jobs, output: .printing(json: json), maxRuns: maxRuns, modelInterval: (try? modelSeconds) ?? 60)
        let ports = ServicePorts(label: "ferry run")
        var servers: [@Sendable () async -> Bool?] = []
        if let statusPort {
            let app = ports.statusApplication(service.status, host: host, port: statusPort)
            servers.append { await ports.serve(app, what: "the status port") }
        }
        if let listenPort, let secret {
            let webhook = WebhookReceiver(configuration: .init(secret: secret), log: { ports.note($0) }) { delivery in
                service.delivered(bucket: delivery.bucket, collection: delivery.collection)
            }
            let app = ports.application(webhook, host: host, port: listenPort, what: "webhook deliveries at", path: "/")
            servers.append { await ports.serve(app, what: "the webhook port") }
        }
        let failed = try await GracefulShutdown.run(stop: { service.stop() }) { [servers] in await ServicePorts.run(service, servers: servers) }
        if failed { throw ExitCode(1) }
    }
}
