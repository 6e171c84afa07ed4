import FerryCore
import FerryTestSupport
import Foundation
import GRDB
import Testing
@testable import FerrySync

/// A connector added from outside the engine: its own scheme, registered in a registry the
/// engine is given, and capabilities the engine learns from conformances, not from types.
@Suite struct ConnectorRegistryTests {
    /// `lines:PATH`: a JSON Lines file under another scheme, which says it retried 3 requests
    /// and checks its file before a run writes. It is not a ``ByteCountingSource``.
    struct LinesConnector: Connector {
        var schemes: [String] { ["lines"] }
        var usage: [String] { ["lines:PATH"] }
        func endpoint(_ url: String, options: EndpointOptions, context: ConnectorContext) throws(SyncError) -> any Endpoint {
            LinesEndpoint(file: FileEndpoint(path: String(url.dropFirst("lines:".count)), format: .jsonl, options: options))
        }
    }

    final class LinesEndpoint: Endpoint, RetryingEndpoint, ValidatingSource {
        let file: FileEndpoint
        init(file: FileEndpoint) { self.file = file }
        var displayName: String { "lines:" + file.path }
        var retries: Int { 3 }
        func validate() async throws { try await file.validate() }
        func open(forWriting: Bool) async throws { try await file.open(forWriting: forWriting) }
        func estimatedCount() async throws -> Int? { try await file.estimatedCount() }
        func readAll(batchSize: Int) throws -> SourceBatches { try file.readAll(batchSize: batchSize) }
        func readChanges(after cursor: FerrySync.Cursor?, batchSize: Int) throws -> SourceBatches {
            try file.readChanges(after: cursor, batchSize: batchSize)
        }
        func makeWriter(job: String) async throws -> any TargetWriter { try await file.makeWriter(job: job) }
        func close() async { await file.close() }
    }

    var registry: ConnectorRegistry {
        var registry = ConnectorRegistry.standard
        registry.register(LinesConnector())
        return registry
    }

    /// A full run of `text` as `lines:DIR/in.jsonl` into `sqlite:DIR/out.db#t`.
    func linesJob(_ dir: TempDir, _ text: String) throws -> SyncJob {
        try text.write(toFile: dir.file("in.jsonl"), atomically: true, encoding: .utf8)
        var job = SyncJob(source: "lines:" + dir.file("in.jsonl"), target: "sqlite:" + dir.file("out.db") + "#t")
        job.mode = .full
        job.statePath = dir.file("state.db")
        return job
    }

    @Test func aRegisteredConnectorRunsThroughTheEngineWithItsCapabilities() async throws {
        let dir = try TempDir()
        let job = try linesJob(dir, "{\"id\":\"a\",\"n\":1}\n{\"id\":\"b\",\"n\":2}\n")
        let report = try await SyncEngine(connectors: registry).run(job)
        #expect(report.created == 2)
        #expect(report.retries == 3)  // RetryingEndpoint, read by the engine without knowing the type
        #expect(report.bytesRead == nil)  // not a ByteCountingSource
        let rows = try await DatabaseQueue(path: dir.file("out.db")).read { try String.fetchAll($0, sql: "SELECT id || '=' || n FROM t ORDER BY id") }
        #expect(rows == ["a=1", "b=2"])

        // The standard registry does not know the scheme, and says what it takes.
        await #expect(throws: SyncError.self) { try await SyncEngine().run(job) }
        do {
            _ = try ConnectorRegistry.standard.endpoint(job.source, options: EndpointOptions())
            Issue.record("lines: was taken without being registered")
        } catch {
            #expect(error.message.contains("unknown endpoint \"lines\"; use file:PATH.jsonl"))
            #expect(!error.message.contains("lines:PATH"))
        }
    }

    @Test func aValidatingSourceStopsAMalformedRunBeforeTheTargetExists() async throws {
        let dir = try TempDir()
        let job = try linesJob(dir, "{\"id\":\"a\"}\n{\"id\": oops}\n")
        await #expect(throws: SyncError.self) { try await SyncEngine(connectors: registry).run(job) }
        #expect(!FileManager.default.fileExists(atPath: dir.file("out.db")))
    }

    @Test func theUsageListsEveryRegisteredConnectorAndRedactionIsTheConnectors() throws {
        #expect(ConnectorRegistry.standard.usage == "file:PATH.jsonl, file:PATH.csv, sqlite:PATH#TABLE, postgres://USER:PASSWORD@HOST/DB#TABLE, http(s)://HOST/v1/buckets/B/collections/C or rest+http(s)://HOST/PATH")
        #expect(registry.usage.hasSuffix("rest+http(s)://HOST/PATH or lines:PATH"))
        #expect(ConnectorRegistry().usage == "no connector is registered")
        #expect(registry.redacted("rest+https://ada:pw@api.example/v1/x") == "rest+https://ada:***@api.example/v1/x")
        // PostgreSQL's own rule: the credentials end at the last @.
        #expect(registry.redacted("postgres://ada:a/b?c@h/d#t") == "postgres://ada:***@h/d#t")
        #expect(registry.connector(for: "ftp://x") == nil)
        #expect(registry.connector(for: "no scheme") == nil)
    }
}
