import FerryCore
import FerryTestSupport
import Foundation
import GRDB
import Testing
@testable import FerrySync

/// Reads as sequences of batches (``SourceBatches``): the engine stops by leaving its loop at a
/// batch boundary, and a read left early lets go of what it held.
@Suite struct BatchReadTests {
    func job(_ dir: TempDir, _ source: String, _ target: String, _ mode: SyncMode) -> SyncJob {
        var job = SyncJob(source: source, target: target)
        job.mode = mode
        job.statePath = dir.file("state/state.db")
        job.batchSize = 7
        return job
    }

    /// The checkpoints a SQLite target keeps with its data.
    func checkpoints(_ path: String) throws -> [String] {
        let queue = try DatabaseQueue(path: path)
        defer { try? queue.close() }
        return try queue.read { try String.fetchAll($0, sql: "SELECT cursor FROM _ferry_checkpoints") }
    }

    /// An engine whose stop signal closes once `after` records were read (the progress after a committed batch).
    func stoppingEngine(after records: Int) -> SyncEngine {
        let engine = SyncEngine()
        let stop = WakeSignal()
        engine.stop = stop
        engine.onProgress = { read, _ in if read >= records { stop.close() } }
        return engine
    }

    @Test func stoppingEndsAnIncrementalRunAtABatchBoundaryWithThatBatchsCursorSaved() async throws {
        let dir = try TempDir()
        try writeUsersTable(dir.file("src.db"), count: 100)  // ten records per updated_at value
        var j = job(dir, "sqlite:\(dir.file("src.db"))#users", "sqlite:\(dir.file("dst.db"))#users", .incremental)
        j.cursorField = "updated_at"
        // Stops after the third batch of 7: rows u0000000…u0000020, the last with updated_at 1000002.
        let stopped = try await stoppingEngine(after: 21).run(j)
        #expect(stopped.stopped && stopped.read == 21 && stopped.created == 21, "\(stopped.json.serialized())")
        #expect(try countRows(dir.file("dst.db")) == 21)
        #expect(stopped.cursorAfter == .compound(value: .int(1_000_002), key: .string("u0000020")), "\(String(describing: stopped.cursorAfter))")
        let saved = try checkpoints(dir.file("dst.db"))
        #expect(saved.count == 1 && saved.first?.contains("1000002") == true && saved.first?.contains("u0000020") == true, "\(saved)")
        // The next run goes on from there: exactly the other 79 rows.
        let rest = try await SyncEngine().run(j)
        #expect(!rest.stopped && rest.read == 79 && rest.created == 79, "\(rest.json.serialized())")
        #expect(try countRows(dir.file("dst.db")) == 100)
    }

    @Test func stoppingEndsAFullRunAtABatchBoundary() async throws {
        let dir = try TempDir()
        try writeUsersTable(dir.file("src.db"), count: 100)
        let j = job(dir, "sqlite:\(dir.file("src.db"))#users", "sqlite:\(dir.file("dst.db"))#users", .full)
        let stopped = try await stoppingEngine(after: 14).run(j)
        #expect(stopped.stopped && stopped.read == 14 && stopped.created == 14, "\(stopped.json.serialized())")
        #expect(try countRows(dir.file("dst.db")) == 14)
        let rest = try await SyncEngine().run(j)
        #expect(!rest.stopped && rest.read == 100 && rest.created == 86)
    }

    /// The file descriptors of this process open on `path`.
    func openDescriptors(_ path: String) -> Int {
        let resolved = URL(fileURLWithPath: path).resolvingSymlinksInPath().path
        let names = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd")) ?? []
        return names.filter { name in
            let target = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/fd/" + name)) ?? ""
            return target == path || target == resolved
        }.count
    }

    @Test(arguments: [false, true]) func leavingAFileReadEarlyClosesTheFile(changes: Bool) async throws {
        let dir = try TempDir()
        let path = dir.file("users.jsonl")
        try writeUsers(path, count: 100)
        var options = EndpointOptions()
        options.cursorField = "updated_at"
        let file = FileEndpoint(path: path, format: .jsonl, options: options)
        try await file.open(forWriting: false)
        #expect(openDescriptors(path) == 0)
        let batches = try changes ? file.readChanges(after: nil, batchSize: 10) : file.readAll(batchSize: 10)
        var read = 0
        for try await batch in batches {
            read += batch.items.count
            #expect(openDescriptors(path) == 1)  // the read holds the file between batches
            if read == 20 { break }
        }
        #expect(read == 20)
        #expect(openDescriptors(path) == 0)
        // Read to its end, the file is closed too, and the last batch of changes has the end cursor.
        var last: FerrySync.Cursor? = nil
        read = 0
        for try await batch in batches {
            read += batch.items.count
            last = batch.cursor ?? last
        }
        #expect(read == 100)
        #expect(openDescriptors(path) == 0)
        #expect(changes == (last != nil))
    }

    @Test func leavingATableReadEarlyHoldsNoLock() async throws {
        let dir = try TempDir()
        let path = dir.file("src.db")
        try writeUsersTable(path, count: 100)  // a rollback journal: a write waits for every reader
        var options = EndpointOptions()
        options.cursorField = "updated_at"
        let table = SQLiteEndpoint(path: path, table: "users", options: options)
        try await table.open(forWriting: false)
        for batches in [try table.readAll(batchSize: 10), try table.readChanges(after: nil, batchSize: 10)] {
            var read = 0
            for try await batch in batches {
                read += batch.items.count
                if read == 20 { break }
            }
            #expect(read == 20)
            // Another connection writes at once (no busy timeout): no statement of the read is left open.
            let writer = try DatabaseQueue(path: path)
            try await writer.write { try $0.execute(sql: "UPDATE users SET age = age + 1") }
            try writer.close()
        }
        await table.close()
        // And the read between two batches holds nothing either: the write goes through mid-read.
        try await table.open(forWriting: false)
        var read = 0
        for try await batch in try table.readAll(batchSize: 10) {
            read += batch.items.count
            if read == 10 {
                let writer = try DatabaseQueue(path: path)
                try await writer.write { try $0.execute(sql: "DELETE FROM users WHERE id >= 'u0000050'") }
                try writer.close()
            }
        }
        #expect(read == 50)
        await table.close()
    }
}

/// A PostgreSQL read left early: the rest of its statement is dropped and the connection reads on.
@Suite(.serialized, .enabled(if: PostgresCluster.enabled, "PostgreSQL is not installed"))
struct PostgresBatchReadTests {
    @Test func leavingAReadEarlyLeavesTheConnectionUsable() async throws {
        let cluster = try PostgresCluster.shared()
        let url = try cluster.createDatabase("batches")
        let database = String(url.split(separator: "/").last!)
        try cluster.psql(database, """
            CREATE TABLE users (id text PRIMARY KEY, updated_at bigint NOT NULL);
            INSERT INTO users SELECT 'u' || lpad(i::text, 7, '0'), 1000000 + i / 10 FROM generate_series(0, 9999) AS i;
            """)
        var options = EndpointOptions()
        options.cursorField = "updated_at"
        let endpoint = try ConnectorRegistry.standard.endpoint(url + "#users", options: options)
        try await endpoint.open(forWriting: false)
        for batches in [try endpoint.readAll(batchSize: 100), try endpoint.readChanges(after: nil, batchSize: 100)] {
            var read = 0
            for try await batch in batches {
                read += batch.items.count
                if read == 200 { break }
            }
            #expect(read == 200)
            #expect(try await endpoint.estimatedCount() == 10_000)
        }
        var read = 0
        for try await batch in try endpoint.readAll(batchSize: 100) { read += batch.items.count }
        #expect(read == 10_000)
        await endpoint.close()
    }
}
