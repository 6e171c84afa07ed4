import FerryTestSupport
@testable import FerryStore
import Foundation
import GRDB
import NIOConcurrencyHelpers
import Testing

/// The storage's read connections (``Readers``): never more than the maximum, a read waits for a
/// free one rather than failing, a snapshot read sees one state of the database, and closing
/// fails the reads still waiting with the error the storage retries on.
@Suite struct ReadersTests {
    /// A WAL database with a table `t` of one row, and readers of it (at most `count`).
    private func database(readers count: Int) throws -> (DatabasePool, Readers) {
        let path = try temporaryDirectory() + "/readers.sqlite"
        var configuration = GRDB.Configuration()
        configuration.maximumReaderCount = count
        let pool = try DatabasePool(path: path, configuration: configuration)
        try pool.write { db in
            try db.execute(sql: "CREATE TABLE t (n INTEGER NOT NULL); INSERT INTO t VALUES (1)")
        }
        return (pool, Readers(path: path, configuration: configuration))
    }

    @Test func aReadWaitsForAFreeReaderAndNoMoreThanTheMaximumOpen() async throws {
        let (pool, readers) = try database(readers: 2)
        let gate = DispatchSemaphore(value: 0)
        let seen = NIOLockedValueBox<[String]>([])
        for name in ["first", "second"] {
            readers.read(snapshot: false) { result in
                let n = (try? result.get()).flatMap { try? Int.fetchOne($0, sql: "SELECT n FROM t") }
                seen.withLockedValue { $0.append("\(name) \(n.map(String.init) ?? "failed")") }
                gate.wait()  // holds this reader (on its own queue, not a task's thread)
            }
        }
        #expect(await eventually { seen.withLockedValue { $0.count } == 2 })
        readers.read(snapshot: true) { result in
            let n = (try? result.get()).flatMap { try? Int.fetchOne($0, sql: "SELECT n FROM t") }
            seen.withLockedValue { $0.append("third \(n.map(String.init) ?? "failed")") }
        }
        try await Task.sleep(for: .milliseconds(200))
        #expect(seen.withLockedValue { $0.count } == 2, "a third read ran while both readers were held")
        gate.signal()
        #expect(await eventually { seen.withLockedValue { $0.count } == 3 })
        gate.signal()
        #expect(Set(seen.withLockedValue { $0 }) == ["first 1", "second 1", "third 1"])
        try readers.close()
        try pool.close()
    }

    @Test func aSnapshotReadSeesOneStateWhileAWriteCommits() async throws {
        let (pool, readers) = try database(readers: 2)
        let wrote = DispatchSemaphore(value: 0)
        let counts = NIOLockedValueBox<[Int]>([])
        let done = NIOLockedValueBox(false)
        for snapshot in [true, false] {
            done.withLockedValue { $0 = false }
            readers.read(snapshot: snapshot) { result in
                guard let db = try? result.get() else { return }
                let before = (try? Int.fetchOne(db, sql: "SELECT count(*) FROM t")) ?? -1
                DispatchQueue.global().async {
                    try? pool.write { db in try db.execute(sql: "INSERT INTO t VALUES (2)") }
                    wrote.signal()
                }
                wrote.wait()
                let after = (try? Int.fetchOne(db, sql: "SELECT count(*) FROM t")) ?? -1
                counts.withLockedValue { $0.append(after - before) }
                done.withLockedValue { $0 = true }
            }
            #expect(await eventually { done.withLockedValue { $0 } })
        }
        // In a snapshot the second statement sees what the first saw; outside one it sees the commit.
        #expect(counts.withLockedValue { $0 } == [0, 1])
        try readers.close()
        try pool.close()
    }

    @Test func closingFailsTheWaitingReadsWithTheClosedError() async throws {
        let (pool, readers) = try database(readers: 1)
        let gate = DispatchSemaphore(value: 0)
        let held = NIOLockedValueBox(false)
        readers.read(snapshot: false) { _ in
            held.withLockedValue { $0 = true }
            gate.wait()
        }
        #expect(await eventually { held.withLockedValue { $0 } })
        let waiting = NIOLockedValueBox<Result<Int, any Error>?>(nil)
        readers.read(snapshot: false) { result in
            waiting.withLockedValue { $0 = result.map { _ in 1 } }
        }
        // Close on another thread: it waits for the held read to finish.
        let closed = NIOLockedValueBox(false)
        DispatchQueue.global().async {
            try? readers.close()
            closed.withLockedValue { $0 = true }
        }
        #expect(await eventually { waiting.withLockedValue { $0 } != nil })
        gate.signal()
        #expect(await eventually { closed.withLockedValue { $0 } })
        guard case .failure(let error)? = waiting.withLockedValue({ $0 }) else {
            Issue.record("the waiting read ran on a closed reader")
            return
        }
        #expect(ReopeningPool.isClosed(error))
        // And a read after the close fails the same way.
        let after = NIOLockedValueBox<(any Error)?>(nil)
        readers.read(snapshot: true) { result in
            if case .failure(let error) = result { after.withLockedValue { $0 = error } }
        }
        #expect(await eventually { after.withLockedValue { $0 } != nil })
        #expect(after.withLockedValue { $0 }.map(ReopeningPool.isClosed) == true)
        try pool.close()
    }
}
