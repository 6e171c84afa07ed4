import FerryCore
import FerryPostgres
@testable import FerryStore
import FerryTestSupport
import Foundation
import Logging
import PostgresNIO
import Testing

/// The storage contract on PostgreSQL (a throwaway cluster, a fresh database per test), and
/// what only several processes on one database can show.
@Suite(.enabled(if: PostgresCluster.enabled, "PostgreSQL is not installed: its tests are skipped (CI sets FERRY_REQUIRE_POSTGRES=1 and runs them)"))
struct PostgresStorageTests {
    static func makeStorage(pool: Int = 10) async throws -> (PostgresStorage, String) {
        let url = try PostgresCluster.shared().createDatabase("store")
        var configuration = try PostgresStorage.Configuration(url: url)
        configuration.poolSize = pool
        return (try await PostgresStorage(configuration: configuration), url)
    }

    /// The database name in a URL of ``makeStorage(pool:)``.
    static func database(_ url: String) -> String {
        String(url.split(separator: "/").last!.split(separator: "?").first!)
    }

    @Test(arguments: StorageContract.names)
    func contract(_ name: String) async throws {
        let (storage, _) = try await Self.makeStorage()
        defer { try? storage.close() }
        try await StorageContract.run(name, storage)
    }

    /// The batched backfill over rows whose hash is missing (as a row written by an older
    /// process on a shared database would be).
    @Test func backfillFillsRowsWithoutAHash() async throws {
        let (storage, _) = try await Self.makeStorage()
        defer { try? storage.close() }
        try await StorageContract.backfillFillsRowsWithoutAHash(storage) {
            try await storage.write { s in try (s as! PostgresSession).execute("UPDATE objects SET content_hash = NULL") }
        }
    }

    /// A database made before content hashes were stored (the column and its migration undone
    /// here) gets them when a process opens it: the migration adds the column and fills it in.
    @Test func migrationBackfillsContentHashes() async throws {
        let (storage, url) = try await Self.makeStorage()
        let key = StorageContract.records
        _ = try await storage.write { s in
            for i in 0..<1_200 { _ = try s.put(key, id: "r\(i)", data: ["i": .int(Int64(i)), "n": .null], requestedTimestamp: nil) }
            _ = try s.delete(key, id: "r7", requestedTimestamp: nil)
        }
        try await storage.write { s in
            let session = s as! PostgresSession
            try session.execute("ALTER TABLE objects DROP COLUMN content_hash")
            try session.execute("DELETE FROM ferry_migrations WHERE version = '\(PostgresSession.contentHashMigration)'")
        }
        try storage.close()
        let reopened = try await PostgresStorage(configuration: try .init(url: url))
        defer { try? reopened.close() }
        let ids = try await StorageContract.hashesAgree(reopened, key)
        #expect(ids.count == 1_199 && !ids.contains("r7"))
        let r1 = try await reopened.read { s in var found: RecordHash?; try s.contentHashes(key, ids: ["r1"]) { found = $1 }; return found }
        #expect(r1 == RecordHash(fields: ["i": 1], keyField: "id", keyText: "r1"))
    }

    /// Two storages on one database stand for two server processes: with writers on both, a poller
    /// on either sees every change exactly once, and timestamps never repeat.
    @Test func changeFeedIsGapFreeAcrossTwoStoragesOnOneDatabase() async throws {
        let (first, url) = try await Self.makeStorage()
        let second = try await PostgresStorage(configuration: try .init(url: url))
        defer {
            try? first.close()
            try? second.close()
        }
        let perWriter = 100
        let seen = try await StorageContract.pollWhileWriting(writers: [first, second, first, second], poller: second, perWriter: perWriter)
        #expect(seen.count == 4 * perWriter)
        #expect(Set(seen.map(\.id)).count == 4 * perWriter)
        let stamps = seen.map(\.lastModified)
        #expect(Set(stamps).count == stamps.count)
    }

    /// Writers of one collection no longer wait for each other's COMMIT: a later timestamp can
    /// commit first. Until the earlier one's write ends, readers stop below it (its timestamp
    /// and lists), so a poller that goes on from the timestamp it was given misses nothing; a
    /// claim whose transaction aborted holds nobody back.
    @Test func readersStopBelowATimestampStillHeld() async throws {
        let (storage, url) = try await Self.makeStorage()
        defer { try? storage.close() }
        let key = StorageContract.records
        let before = try await storage.write { s in try s.put(key, id: "before", data: [:], requestedTimestamp: nil) }
        func view() async throws -> (timestamp: Int64, ids: [String]) {
            try await storage.read { s in
                var ids: [String] = []
                try s.list(key, query: ListQuery(filters: [Filter("last_modified", .gt, .int(0))], sort: [Sort("last_modified")],
                                                 includeDeleted: true)) { ids.append($0.id); return true }
                return (try s.timestamp(key), ids)
            }
        }

        // A write allocates, then waits; a second one allocates after it and commits first.
        let held = DispatchSemaphore(value: 0)
        let allocated = LockedStrings()
        let slow = Task {
            try await storage.write { s in
                let late = try s.put(key, id: "late", data: [:], requestedTimestamp: nil)
                allocated.append(String(late.lastModified))
                held.wait()
                return late
            }
        }
        #expect(await allocated.eventually { $0.count == 1 })
        let early = try await storage.write { s in try s.put(key, id: "early", data: [:], requestedTimestamp: nil) }
        let lateStamp = try #require(Int64(allocated.values[0]))
        #expect(early.lastModified > lateStamp)
        let during = try await view()
        #expect(during.timestamp == lateStamp - 1, "the timestamp stops below the one still held")
        #expect(during.ids == ["before"], "the list stops there too")
        let plain = try await storage.read(.oneStatement) { s in try s.timestampAndList(key, query: ListQuery()) { _ in true } }
        #expect(plain == lateStamp - 1)

        held.signal()
        let late = try await slow.value
        #expect(late.lastModified == lateStamp)
        let after = try await view()
        #expect(after.timestamp == early.lastModified)
        #expect(after.ids == ["before", "late", "early"])

        // A claim of a transaction that aborted (a process that died mid-write) holds nobody back.
        let cluster = try PostgresCluster.shared()
        let database = Self.database(url)
        struct Abort: Error { let xid: String }
        let aborted: String
        do {
            _ = try await storage.write { s in throw Abort(xid: try (s as! PostgresSession).transactionID()) }
            Issue.record("the write did not abort")
            return
        } catch let abort as Abort {
            aborted = abort.xid
        }
        try cluster.psql(database, """
            INSERT INTO timestamp_claims SELECT parent_id, resource_name, last_modified + 1, '\(aborted)'::xid8 FROM timestamps
            WHERE parent_id = '\(key.parentID)' AND resource_name = '\(key.resourceName)'
            """)
        #expect(try cluster.psql(database, "SELECT count(*) FROM timestamp_claims") == "1")
        let ignored = try await view()
        #expect(ignored.timestamp == early.lastModified)
    }

    /// A write that rolls back after another committed between two of its allocations leaves the
    /// kind's timestamp at the other's, not below it (the next write goes on after it).
    @Test func aRollbackAfterAnInterleavedCommitKeepsTheOthersTimestamp() async throws {
        let (storage, url) = try await Self.makeStorage()
        defer { try? storage.close() }
        let key = StorageContract.records
        _ = try await storage.write { s in try s.put(key, id: "first", data: [:], requestedTimestamp: nil) }
        let step = DispatchSemaphore(value: 0)
        let allocated = LockedStrings()
        struct Boom: Error {}
        let failing = Task {
            try await storage.write { s -> Void in
                _ = try s.put(key, id: "a", data: [:], requestedTimestamp: nil)
                allocated.append("a")
                step.wait()
                _ = try s.put(key, id: "c", data: [:], requestedTimestamp: nil)
                throw Boom()
            }
        }
        #expect(await allocated.eventually { $0 == ["a"] })
        let other = try await storage.write { s in try s.put(key, id: "b", data: [:], requestedTimestamp: nil) }
        step.signal()
        await #expect(throws: Boom.self) { try await failing.value }
        #expect(try await storage.read { s in try s.timestamp(key) } == other.lastModified)
        let next = try await storage.write { s in try s.put(key, id: "d", data: [:], requestedTimestamp: nil) }
        #expect(next.lastModified > other.lastModified)
        let claims = try PostgresCluster.shared().psql(Self.database(url), "SELECT count(*) FROM timestamp_claims")
        #expect(claims == "0", "the rolled-back write's claims are gone")
    }

    /// Announcements go with the commit: the other storage hears of a committed write (also of one
    /// that allocated no timestamp), never of one rolled back, and never of its own.
    @Test func announcementsArriveExactlyWithCommits() async throws {
        let (first, url) = try await Self.makeStorage()
        let second = try await PostgresStorage(configuration: try .init(url: url))
        defer {
            first.stopListening()
            second.stopListening()
            try? first.close()
            try? second.close()
        }
        let heard = LockedStrings()
        second.listenForChanges { heard.append($0 ?? "*") }
        // Listening: the first thing a new listener does is wake everyone ("*"; twice more a few
        // seconds later, which a loaded machine may let in anywhere below).
        #expect(await heard.eventually { $0.first == "*" })
        first.listenForChanges { heard.append("own: " + ($0 ?? "*")) }
        #expect(await heard.eventually { $0.contains("own: *") })

        struct Refused: Error {}
        let key = StorageContract.records
        await #expect(throws: Refused.self) {
            try await first.write(announcing: ["/rolled-back"]) { s in
                _ = try s.put(key, id: "gone", data: [:], requestedTimestamp: nil)
                throw Refused()
            }
        }
        _ = try await first.write(announcing: ["/buckets/b/collections/c", "#accounts"]) { s in
            try s.put(key, id: "kept", data: [:], requestedTimestamp: nil)
        }
        _ = try await first.write(announcing: ["/no-timestamp"]) { s in try s.timestamp(key) }
        let announced = { (values: [String]) in values.filter { $0 != "*" && $0 != "own: *" } }
        #expect(await heard.eventually { announced($0).count == 3 })
        try await Task.sleep(for: .milliseconds(300))  // nothing more comes
        #expect(announced(heard.values) == ["/buckets/b/collections/c", "#accounts", "/no-timestamp"])
    }

    /// A process alone on the database announces no changed collection (a NOTIFY makes commits
    /// queue on its lock, and would wake no one), but still accounts and webhooks. Once another
    /// process listens, its writes are announced again: one that began while none listened, and
    /// commits after another started, sends what it held back.
    @Test func changedCollectionsAreAnnouncedOnlyWhileAnotherProcessListens() async throws {
        let (first, url) = try await Self.makeStorage()
        defer {
            first.stopListening()
            try? first.close()
        }
        // An observer of the channel that is not a Ferry process (it holds no listener's lock).
        let observer = try await PostgresConnection.connect(configuration: try PostgresStorage.Configuration(url: url).address.connectionConfiguration(),
                                                            id: 99, logger: Logger(label: "test"))
        defer { Task { try? await observer.close() } }
        let observed = LockedStrings()
        let notifications = try await observer.listen(PostgresStorage.channel)
        let reading = Task {
            for try await notification in notifications {
                observed.append(String(notification.payload.split(separator: " ", maxSplits: 1).last ?? ""))
            }
        }
        defer { reading.cancel() }
        let own = LockedStrings()
        first.listenForChanges { own.append($0 ?? "*") }
        #expect(await own.eventually { $0.first == "*" })
        // A process listening on another database of the same server is not a listener of this one.
        let (elsewhere, _) = try await Self.makeStorage()
        defer {
            elsewhere.stopListening()
            try? elsewhere.close()
        }
        let elsewhereHeard = LockedStrings()
        elsewhere.listenForChanges { elsewhereHeard.append($0 ?? "*") }
        #expect(await elsewhereHeard.eventually { $0.first == "*" })

        let key = StorageContract.records
        // (A write whose answer ages before it commits announces all the same: on a loaded
        // machine this one may take longer than the half second.)
        first.otherListeners.setMaximumAge(.seconds(60))
        _ = try await first.write(announcing: ["/buckets/b/collections/c"]) { s in try s.put(key, id: "alone", data: [:], requestedTimestamp: nil) }
        _ = try await first.write(announcing: ["#accounts"]) { s in try s.put(key, id: "account", data: [:], requestedTimestamp: nil) }
        #expect(await observed.eventually { $0.contains("#accounts") })
        #expect(observed.values == ["#accounts"], "a lone process announced a changed collection")
        first.otherListeners.setMaximumAge(.milliseconds(500))

        // A write that begins while none listens, and commits once another process does.
        let second = try await PostgresStorage(configuration: try .init(url: url))
        defer {
            second.stopListening()
            try? second.close()
        }
        let heard = LockedStrings()
        let began = LockedStrings()
        let late = Task {
            try await first.write(announcing: ["/buckets/b/collections/late"]) { s in
                _ = try s.put(key, id: "late", data: [:], requestedTimestamp: nil)
                began.append("began")
                // Until the second process listens and the first's answer has aged.
                Thread.sleep(forTimeInterval: 0.1)
                while heard.values.isEmpty { Thread.sleep(forTimeInterval: 0.05) }
                Thread.sleep(forTimeInterval: 0.7)
            }
        }
        #expect(await began.eventually { !$0.isEmpty })
        second.listenForChanges { heard.append($0 ?? "*") }
        _ = try await late.value
        #expect(await heard.eventually { $0.contains("/buckets/b/collections/late") })

        // And a write after it is announced.
        _ = try await first.write(announcing: ["/buckets/b/collections/after"]) { s in try s.put(key, id: "after", data: [:], requestedTimestamp: nil) }
        #expect(await heard.eventually { $0.contains("/buckets/b/collections/after") })
        #expect(await observed.eventually { $0.contains("/buckets/b/collections/after") })
        #expect(observed.values.filter { $0.hasPrefix("/") } == ["/buckets/b/collections/late", "/buckets/b/collections/after"])
    }

    @Test func committedWritesSurviveReconnecting() async throws {
        let (storage, url) = try await Self.makeStorage()
        let key = StorageContract.records
        _ = try await storage.write { s in try s.put(key, id: "kept", data: ["v": 1], requestedTimestamp: nil) }
        try storage.close()
        let reopened = try await PostgresStorage(configuration: try .init(url: url))
        defer { try? reopened.close() }
        let object = try await reopened.read { s in try s.get(key, id: "kept", includeDeleted: false) }
        #expect(object?.json.contains("\"v\":1") == true)
    }

    /// The server reads its --database URL with the sync connector's parser (FerryPostgres): the
    /// same passwords work in both, however they are written.
    @Test func databaseURLsParseAsTheConnectorsDo() throws {
        let raw = try PostgresStorage.Configuration(url: "postgres://ada:a/b?c#d@db.local:6543/crm?pool=3&sslmode=require")
        #expect(raw.address.user == "ada" && raw.address.password == "a/b?c#d" && raw.address.host == "db.local" && raw.address.port == 6543)
        #expect(raw.address.database == "crm" && raw.address.sslMode == .require && raw.poolSize == 3)
        #expect(raw.address.statementTimeoutMilliseconds == 30_000, "the server's default statement_timeout")
        let encoded = try PostgresStorage.Configuration(url: "postgresql://ada:p%40ss%2Fw%3Frd@[::1]/crm?statement_timeout=0")
        #expect(encoded.address.password == "p@ss/w?rd" && encoded.address.host == "::1" && encoded.address.statementTimeoutMilliseconds == 0)
        #expect(encoded.address.displayName == "postgres://ada@[::1]:5432/crm")
        for (url, mention) in [
            ("postgres://u:p@h/db?pool=1&pool=2", "given twice"), ("postgres://u:p@h:0/db", "port must be a number from 1 to 65535"),
            ("postgres://u:p@h/db#t", "is not a database name"), ("postgres://u:p@h/db?connect_timeout=0", "connect_timeout"),
        ] {
            #expect { _ = try PostgresStorage.Configuration(url: url) } throws: { error in
                "\(error)".contains(mention) && !"\(error)".contains(":p@")
            }
        }
    }

    @Test func badURLsAndCredentialsAreClearErrors() async throws {
        let cluster = try PostgresCluster.shared()
        for (url, mention) in [
            ("mysql://u:p@127.0.0.1/db", "postgres://"), ("postgres://127.0.0.1/db", "user"), ("postgres://u:p@127.0.0.1/", "database"),
            ("postgres://u:p@127.0.0.1/db?pool=0", "pool"), ("postgres://u:p@127.0.0.1/db?colour=red", "unknown setting \"colour\""),
            ("postgres://u:p@127.0.0.1/db?sslmode=maybe", "sslmode"),
        ] {
            #expect { _ = try PostgresStorage.Configuration(url: url) } throws: { error in
                "\(error)".contains(mention) && !"\(error)".contains(":p@")
            }
        }
        let wrong = cluster.url(database: "postgres", password: "wrong-password")
        await #expect { _ = try await PostgresStorage(configuration: try .init(url: wrong)) } throws: { error in
            "\(error)".contains("password authentication failed") && !"\(error)".contains("wrong-password")
        }
        let unreachable = "postgres://ferry:x@127.0.0.1:1/db?connect_timeout=2"
        await #expect { _ = try await PostgresStorage(configuration: try .init(url: unreachable)) } throws: { error in
            "\(error)".contains("cannot connect to postgres://ferry@127.0.0.1:1/db")
        }
    }
}

/// Strings collected from another thread.
final class LockedStrings: @unchecked Sendable {
    private let lock = NSLock()
    private var list: [String] = []
    var values: [String] { lock.withLock { list } }
    func append(_ value: String) { lock.withLock { list.append(value) } }

    /// Whether `condition` holds within 10 s.
    func eventually(_ condition: ([String]) -> Bool) async -> Bool {
        for _ in 0..<200 {
            if condition(values) { return true }
            try? await Task.sleep(for: .milliseconds(50))
        }
        return condition(values)
    }
}
