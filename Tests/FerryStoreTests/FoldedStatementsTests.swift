import FerryCore
import FerryTestSupport
@testable import FerryStore
import Foundation
import PostgresNIO
import Testing

/// The reads and writes a backend may fold into fewer statements (issue 14): folded, they
/// answer what the separate steps answer; not folded (SQLite), the reads answer nil and read
/// nothing. On PostgreSQL, a write's first upsert also releases its claims and queues its
/// announcements: whatever the transaction does after it, none is left behind and none is lost.
@Suite struct FoldedStatementsTests {
    static let key = StorageContract.records
    static let collections = ResourceKey(parentID: "/buckets/b", resourceName: "collection")
    static let buckets = ResourceKey(parentID: "", resourceName: "bucket")

    /// The storages to run on: SQLite always, PostgreSQL when installed.
    static func storages() async throws -> [(name: String, storage: any DumpableStorage)] {
        var out: [(String, any DumpableStorage)] = [("sqlite", try SQLiteStorage(path: try temporaryDirectory() + "/ferry.sqlite"))]
        if PostgresCluster.enabled {
            out.append(("postgres", try await PostgresStorage(configuration: .init(url: try PostgresCluster.shared().createDatabase("folded")))))
        }
        return out
    }

    @Test func foldedReadsAnswerAsTheSeparateReads() async throws {
        for (name, storage) in try await Self.storages() {
            defer { try? storage.close() }
            let key = Self.key
            let uri = "/buckets/b/collections/c/records/r1"
            _ = try await storage.write { s in
                _ = try s.put(Self.buckets, id: "b", data: [:], requestedTimestamp: nil)
                _ = try s.put(Self.collections, id: "c", data: ["schema": ["type": "object"]], requestedTimestamp: nil)
                _ = try s.put(Self.collections, id: "dropped", data: [:], requestedTimestamp: nil)
                _ = try s.delete(Self.collections, id: "dropped", requestedTimestamp: nil)
                _ = try s.put(key, id: "r1", data: ["n": 1], requestedTimestamp: nil)
                try s.setPermissions(of: uri, ["write": ["alice"], "read": ["bob"]])
                try s.setPermissions(of: "/buckets/b/collections/c", ["record:create": ["carol"]])
            }
            let checks: [String: [(uri: String, permission: String)]] = [
                "write": [(uri, "write"), ("/buckets/b", "write")],
                "create": [("/buckets/b/collections/c", "record:create"), ("/buckets/b", "write")],
                "never": [],
            ]
            // Up to two objects beside (a record's bucket and collection): present, deleted, never there.
            let besides: [[(key: ResourceKey, id: String)]] = [[(Self.buckets, "b"), (Self.collections, "c")],
                                                                [(Self.collections, "c"), (Self.collections, "dropped")],
                                                                [(Self.collections, "never-was")], []]
            for beside in besides {
                for (id, principals) in [("r1", ["alice"]), ("r1", ["carol", "system.Authenticated"]), ("absent", ["carol"]), ("absent", [])] {
                    let (folded, access, separate) = try await storage.read { s in
                        let recordURI = "/buckets/b/collections/c/records/\(id)"
                        let folded = try s.readObject(key, id: id, uri: recordURI, checks: checks, principals: principals, beside: beside)
                        let access = try s.checkAccess(checks, principals: principals, objects: beside)
                        let read = try s.readObject(key, id: id, uri: recordURI, checks: checks, principals: principals)
                        let objects = try beside.map { try s.get($0.key, id: $0.id, includeDeleted: false) }
                        return (folded, access, (read, objects, try s.firstMissing(beside)))
                    }
                    guard name == "postgres" else {
                        #expect(folded == nil && access == nil, "\(name) folds nothing")
                        continue
                    }
                    let both = try #require(folded, "\(name)")
                    #expect(both.read.object == separate.0.object && both.read.permissions == separate.0.permissions
                            && both.read.passed == separate.0.passed, "\(name) \(id) \(principals)")
                    #expect(both.beside == separate.1, "\(name) \(id) \(beside)")
                    #expect(access?.passed == separate.0.passed && access?.firstMissing == separate.2, "\(name) \(id) \(principals) \(beside)")
                }
            }
            // More than the backend folds: answered nil, and the caller reads them itself.
            let three: [(key: ResourceKey, id: String)] = [(Self.buckets, "b"), (Self.collections, "c"), (Self.collections, "dropped")]
            let (many, manyAccess) = try await storage.read { s in
                (try s.readObject(key, id: "r1", uri: uri, checks: checks, principals: ["alice"], beside: three),
                 try s.checkAccess(checks, principals: ["alice"], objects: three))
            }
            #expect(many == nil && manyAccess == nil)
            // No checks, no objects: nothing passes, nothing is missing.
            let empty = try await storage.read { s in try s.checkAccess([:], principals: ["alice"], objects: []) }
            if name == "postgres" { #expect(empty?.passed == [] && empty?.firstMissing == nil) }
        }
    }

    /// The page, the kind's timestamp and its tombstone horizon in one statement answer what
    /// they answer apart, before and after retention purged tombstones.
    @Test func timestampHorizonAndListAnswerAsTheSeparateReads() async throws {
        for (name, storage) in try await Self.storages() {
            defer { try? storage.close() }
            let key = Self.key
            _ = try await storage.write { s in
                for i in 0..<6 { _ = try s.put(key, id: "r\(i)", data: ["n": .int(Int64(i))], requestedTimestamp: nil) }
                for i in [1, 3] { _ = try s.delete(key, id: "r\(i)", requestedTimestamp: nil) }
            }
            for purge in [false, true] {
                if purge {
                    let oldest = try await storage.read { s in try s.tombstoneTimestamp(key, offset: 0, newestFirst: false, atMost: nil) }
                    let through = try #require(oldest)
                    _ = try await storage.write { s in try s.dropTombstones(key, through: through) }
                }
                let query = ListQuery(filters: [Filter("last_modified", .gt, .int(0))], sort: [Sort("last_modified")], limit: 3, includeDeleted: true)
                let (folded, ids, separate): ((timestamp: Int64, horizon: Int64)?, [String], (Int64, Int64, [String])) = try await storage.read { s in
                    var ids: [String] = []
                    let folded = try s.timestampHorizonAndList(key, query: query) { ids.append($0.id); return true }
                    var apart: [String] = []
                    let stamp = try s.timestampAndList(key, query: query) { apart.append($0.id); return true }
                    return (folded, ids, (stamp, try s.tombstoneHorizon(key), apart))
                }
                guard name == "postgres" else {
                    #expect(folded == nil && ids.isEmpty, "\(name) folds nothing and reads nothing")
                    continue
                }
                #expect(folded?.timestamp == separate.0 && folded?.horizon == separate.1 && ids == separate.2, "\(name) purge \(purge)")
                #expect((separate.1 > 0) == purge && ids.count == 3)
            }
            // In a read of one statement, the folded read is its one content read.
            if name == "postgres" {
                let stopped = try await storage.read(.oneStatement) { s in
                    var n = 0
                    _ = try s.timestampHorizonAndList(key, query: ListQuery(sort: [Sort("id")])) { _ in n += 1; return n < 2 }
                    return n
                }
                #expect(stopped == 2)
                await #expect(throws: (any Error).self) {
                    try await storage.read(.oneStatement) { s in
                        _ = try s.timestampHorizonAndList(key, query: ListQuery()) { _ in true }
                        return try s.timestamp(key)
                    }
                }
            }
        }
    }

    /// A new object put with its permissions stores what a put and then `addPermissions` store.
    @Test func putAddingPermissionsStoresWhatTheTwoStepsStore() async throws {
        var dumps: [[String]] = []
        for (name, storage) in try await Self.storages() {
            defer { try? storage.close() }
            let key = Self.key
            let requested: Int64 = 4_000_000_000_000
            _ = try await storage.write { s in
                _ = try s.put(key, id: "one", text: RecordText(["n": 1]), requestedTimestamp: requested,
                              adding: ["write": ["alice"], "read": ["bob", "carol"], "record:create": []], on: "/buckets/b/collections/c/records/one")
                _ = try s.put(key, id: "none", text: RecordText([:]), requestedTimestamp: nil, adding: [:], on: "/buckets/b/collections/c/records/none")
            }
            let (one, perms, none) = try await storage.read { s in
                (try s.get(key, id: "one", includeDeleted: false), try s.permissions(of: "/buckets/b/collections/c/records/one"),
                 try s.permissions(of: "/buckets/b/collections/c/records/none"))
            }
            #expect(one?.lastModified == requested && one?.json.contains("\"n\":1") == true, "\(name)")
            #expect(perms == ["write": ["alice"], "read": ["bob", "carol"]], "\(name)")
            #expect(none.isEmpty, "\(name)")
            dumps.append(try await storage.dump().filter { $0.hasPrefix("ace ") })
        }
        if dumps.count == 2 { #expect(dumps[0] == dumps[1]) }
    }

    /// Permissions added to many new objects in one go store what adding them to each stores:
    /// every pair on every object, a URI given twice taken once, an empty principal set nothing,
    /// and no other object touched.
    @Test func permissionsAddedToEachStoreWhatOneAtATimeStores() async throws {
        let uris = (0..<300).map { "/buckets/b/collections/c/records/r\($0)" } + ["/buckets/b/collections/c/records/r7", "/buckets/b/collections/c/records/é \"q\""]
        let permissions: Permissions = ["write": ["alice", "account:bob"], "read": ["system.Everyone"], "record:create": []]
        var dumps: [String: [[String]]] = [:]
        for (name, storage) in try await Self.storages() {
            defer { try? storage.close() }
            for together in [true, false] {
                try await storage.write { s in
                    try s.flush()
                    try s.setPermissions(of: "/buckets/b/collections/c", ["read": ["dan"]])
                    if together {
                        try s.addPermissions(ofEach: uris, permissions)
                        try s.addPermissions(ofEach: [], permissions)
                        try s.addPermissions(ofEach: uris, [:])
                    } else {
                        for uri in uris { try s.addPermissions(of: uri, permissions) }
                    }
                }
                let dump = try await storage.dump().filter { $0.hasPrefix("ace ") }
                // r0-r299 and "é \"q\"" three each, dan on the collection
                #expect(dump.count == 904, "\(name)")
                dumps[name, default: []].append(dump)
            }
            let (r3, collection) = try await storage.read { s in
                (try s.permissions(of: "/buckets/b/collections/c/records/r3"), try s.permissions(of: "/buckets/b/collections/c"))
            }
            #expect(r3 == ["write": ["alice", "account:bob"], "read": ["system.Everyone"]], "\(name)")
            #expect(collection == ["read": ["dan"]], "\(name)")
        }
        for (name, pair) in dumps { #expect(pair[0] == pair[1], "\(name)") }
        if let sqlite = dumps["sqlite"], let postgres = dumps["postgres"] { #expect(sqlite[0] == postgres[0]) }
    }
}

/// What the release folded into a write's first upsert must keep (PostgreSQL): no claim is left
/// behind by a committed write, whatever it did after that upsert, so no reader is held back.
@Suite(.enabled(if: PostgresCluster.enabled, "PostgreSQL is not installed"))
struct FoldedReleaseTests {
    static let key = StorageContract.records

    /// Claims left in the table (none once every write ended), and the kind's timestamp as a reader sees it.
    static func state(_ storage: PostgresStorage, _ key: ResourceKey) async throws -> (claims: Int64, timestamp: Int64, newest: Int64) {
        try await storage.read { s in
            let session = s as! PostgresSession
            let claims = try session.rows("SELECT count(*) FROM timestamp_claims").first?.decode(Int64.self) ?? -1
            var newest: Int64 = 0
            try s.list(key, query: ListQuery(sort: [Sort("last_modified", descending: true)], limit: 1, includeDeleted: true)) {
                newest = $0.lastModified
                return false
            }
            return (claims, try s.timestamp(key), newest)
        }
    }

    @Test func noClaimOutlivesItsWrite() async throws {
        let (storage, _) = try await PostgresStorageTests.makeStorage()
        defer { try? storage.close() }
        let key = Self.key
        let other = ResourceKey(parentID: "/buckets/b/collections/other", resourceName: "record")
        // A plain put: its upsert released its claim.
        _ = try await storage.write { s in try s.put(key, id: "a", data: [:], requestedTimestamp: nil) }
        var now = try await Self.state(storage, key)
        #expect(now.claims == 0 && now.timestamp == now.newest && now.newest > 0)
        // Allocations after the upsert (a new collection's records' timestamp, a second put, a
        // delete): the COMMIT's statement releases them.
        let raised: Int64 = 4_000_000_000_000
        _ = try await storage.write { s in
            _ = try s.put(key, id: "b", data: [:], requestedTimestamp: nil)
            try s.raiseTimestamp(other, to: raised)
            _ = try s.put(key, id: "c", data: [:], requestedTimestamp: nil)
            _ = try s.delete(key, id: "a", requestedTimestamp: nil)
        }
        now = try await Self.state(storage, key)
        #expect(now.claims == 0 && now.timestamp == now.newest)
        #expect(try await storage.read { s in try s.timestamp(other) } == raised)
        // A put in a savepoint that rolls back, then one that stays; and one in a savepoint that
        // stays after a put outside it.
        struct Refused: Error {}
        let kept = try await storage.write { s in
            _ = try? s.savepoint { () throws -> Int in
                _ = try s.put(key, id: "undone", data: [:], requestedTimestamp: nil)
                throw Refused()
            }
            let first = try s.put(key, id: "d", data: [:], requestedTimestamp: nil)
            let second = try s.savepoint { try s.put(key, id: "e", data: [:], requestedTimestamp: nil) }
            return (first, second)
        }
        now = try await Self.state(storage, key)
        #expect(now.claims == 0 && now.timestamp == kept.1.lastModified && now.newest == kept.1.lastModified)
        #expect(try await storage.read { s in try s.get(key, id: "undone", includeDeleted: true) } == nil)
        // A write that fails after its upsert released: nothing stays, and the claim it leaves
        // (its transaction aborted) holds nobody back.
        await #expect(throws: Refused.self) {
            try await storage.write { s in
                _ = try s.put(key, id: "failed", data: [:], requestedTimestamp: nil)
                throw Refused()
            }
        }
        let after = try await Self.state(storage, key)
        #expect(after.timestamp == now.timestamp && after.newest == now.newest)
        #expect(try await storage.read { s in try s.get(key, id: "failed", includeDeleted: true) } == nil)
        let next = try await storage.write { s in try s.put(key, id: "f", data: [:], requestedTimestamp: nil) }
        #expect(next.lastModified > now.timestamp)
        #expect(try await Self.state(storage, key).timestamp == next.lastModified)
    }

    /// A write's upsert goes without waiting for its answer, its COMMIT right behind it (once the
    /// statement is prepared on the connection): a write whose upsert failed is never answered as
    /// committed, whether the failure comes back with the COMMIT, reaches a later statement of the
    /// write, or is swallowed there (PostgreSQL answers the COMMIT of an aborted transaction as a
    /// ROLLBACK, without an error). The connection is left clean for the next write.
    @Test func aWriteWhoseUpsertFailedIsNeverAnsweredCommitted() async throws {
        let (storage, _) = try await PostgresStorageTests.makeStorage(pool: 1)
        defer { try? storage.close() }
        let key = Self.key
        _ = try await storage.write { s in
            try (s as! PostgresSession).execute("ALTER TABLE objects ADD CONSTRAINT refused CHECK (id <> 'refused')")
        }
        // Prepares the upsert on the one connection: from now on it is sent without a wait.
        _ = try await storage.write { s in try s.put(key, id: "a", data: [:], requestedTimestamp: nil) }
        let before = try await Self.state(storage, key)
        // The failure comes back with the COMMIT.
        await #expect(throws: (any Error).self) {
            try await storage.write { s in _ = try s.put(key, id: "refused", data: [:], requestedTimestamp: nil) }
        }
        // Swallowed where it comes back: at the put, or at the statement after it.
        await #expect(throws: (any Error).self) {
            try await storage.write { s in _ = try? s.put(key, id: "refused", data: [:], requestedTimestamp: nil) }
        }
        await #expect(throws: (any Error).self) {
            try await storage.write { s in
                _ = try? s.put(key, id: "refused", data: [:], requestedTimestamp: nil)
                _ = try? s.get(key, id: "a", includeDeleted: false)
            }
        }
        #expect(try await storage.read { s in try s.get(key, id: "refused", includeDeleted: true) } == nil)
        let after = try await Self.state(storage, key)
        #expect(after.timestamp == before.timestamp && after.newest == before.newest)
        // The connection answers the next write as usual, and its claim goes with it.
        let next = try await storage.write { s in try s.put(key, id: "b", data: [:], requestedTimestamp: nil) }
        #expect(next.lastModified > before.timestamp)
        let last = try await Self.state(storage, key)
        #expect(last.claims == 0 && last.timestamp == next.lastModified && last.newest == next.lastModified)
    }

    /// Announcements are sent once, with the commit, whether the upsert carried them or the
    /// statement before COMMIT did (the first put in a savepoint).
    @Test func announcementsGoWithTheCommitWhereverTheyRide() async throws {
        let (first, url) = try await PostgresStorageTests.makeStorage()
        let second = try await PostgresStorage(configuration: try .init(url: url))
        defer {
            second.stopListening()
            try? first.close()
            try? second.close()
        }
        let heard = LockedStrings()
        second.listenForChanges { heard.append($0 ?? "*") }
        #expect(await heard.eventually { $0.first == "*" })
        let key = Self.key
        struct Refused: Error {}
        _ = try await first.write(announcing: ["/in-savepoint"]) { s in
            try s.savepoint { try s.put(key, id: "a", data: [:], requestedTimestamp: nil) }
        }
        _ = try await first.write(announcing: ["/after-a-rolled-back-savepoint"]) { s in
            _ = try? s.savepoint { () throws -> Int in
                _ = try s.put(key, id: "undone", data: [:], requestedTimestamp: nil)
                throw Refused()
            }
            return try s.put(key, id: "b", data: [:], requestedTimestamp: nil)
        }
        _ = try await first.write(announcing: ["/two-puts"]) { s in
            _ = try s.put(key, id: "c", data: [:], requestedTimestamp: nil)
            return try s.put(key, id: "d", data: [:], requestedTimestamp: nil)
        }
        await #expect(throws: Refused.self) {
            try await first.write(announcing: ["/rolled-back"]) { s in
                _ = try s.put(key, id: "gone", data: [:], requestedTimestamp: nil)
                throw Refused()
            }
        }
        // (A new listener also wakes everyone twice more, a few seconds after it started: "*".)
        let announced = { (values: [String]) in values.filter { $0 != "*" } }
        #expect(await heard.eventually { announced($0).count == 3 })
        try await Task.sleep(for: .milliseconds(300))  // nothing more comes
        #expect(announced(heard.values) == ["/in-savepoint", "/after-a-rolled-back-savepoint", "/two-puts"])
        #expect(try await Self.state(first, key).claims == 0)
    }

    /// The change feed's pages as one prepared statement (``PostgresSession/FeedBounds``) answer
    /// what the general statement answers: the same objects in the same order, the same
    /// timestamp and tombstone horizon, for bounds on `last_modified`, the next page, both orders,
    /// with and without tombstones and a limit. Pages it does not take go the general way.
    @Test func feedPagesAnswerAsTheGeneralStatement() async throws {
        guard PostgresCluster.enabled else { return }
        let storage = try await PostgresStorage(configuration: .init(url: try PostgresCluster.shared().createDatabase("feed")))
        defer { try? storage.close() }
        let key = Self.key
        let stamps = try await storage.write { s in
            var stamps: [Int64] = []
            for i in 0..<60 { stamps.append(try s.put(key, id: "r\(i)", data: ["i": .int(Int64(i))], requestedTimestamp: nil).lastModified) }
            for i in stride(from: 3, to: 60, by: 7) { stamps.append(try s.delete(key, id: "r\(i)", requestedTimestamp: nil).lastModified) }
            return stamps
        }
        // A horizon: the oldest tombstones purged.
        _ = try await storage.write { s in try (s as! PostgresSession).dropTombstones(key, through: stamps[62]) }
        let mid = stamps[30]
        let feeds: [(filters: [Filter], after: PageAfter?)] = [
            ([], nil), ([Filter("last_modified", .gt, .int(mid))], nil), ([Filter("last_modified", .min, .int(mid))], nil),
            ([Filter("last_modified", .lt, .int(mid))], nil), ([Filter("last_modified", .max, .int(mid))], nil),
            ([Filter("last_modified", .gt, .int(stamps[10])), Filter("last_modified", .lt, .int(stamps[50]))], nil),
            ([Filter("last_modified", .gt, .int(stamps.last!))], nil),
            ([Filter("last_modified", .gt, .int(stamps[5]))], PageAfter(lastValues: ["last_modified": .int(stamps[40])])),
        ]
        // Not feed pages: a filter on another field, on an equality, a sort on another field.
        let others: [ListQuery] = [
            ListQuery(filters: [Filter("i", .gt, .int(10))], limit: 5),
            ListQuery(filters: [Filter("last_modified", .eq, .int(mid))]),
            ListQuery(sort: [Sort("id")], limit: 9),
        ]
        var queries: [(ListQuery, feed: Bool)] = others.map { ($0, false) }
        for (filters, after) in feeds {
            for descending in [true, false] {
                for includeDeleted in [true, false] {
                    for limit in [nil, 1, 8] {
                        queries.append((ListQuery(filters: filters, sort: [Sort("last_modified", descending: descending)], after: after,
                                                  limit: limit, includeDeleted: includeDeleted), true))
                    }
                }
            }
        }
        var nonEmpty = 0
        for (query, feed) in queries {
            #expect((PostgresSession.FeedBounds(key, query: query, horizon: true) != nil) == feed, "\(query)")
            let (prepared, general) = try await storage.read { s in
                var general = s as! PostgresSession
                general.feedPrepared = false
                func page(_ s: PostgresSession, horizon: Bool) throws -> (Int64, Int64, [StoredObject]) {
                    var objects: [StoredObject] = []
                    let read = { (object: StoredObject) -> Bool in
                        objects.append(object)
                        return objects.count < 5 || query.limit != nil
                    }
                    if horizon, let (timestamp, purged) = try s.timestampHorizonAndList(key, query: query, read) {
                        return (timestamp, purged, objects)
                    }
                    return (try s.timestampAndList(key, query: query, read), 0, objects)
                }
                return ([try page(s as! PostgresSession, horizon: true), try page(s as! PostgresSession, horizon: false)],
                        [try page(general, horizon: true), try page(general, horizon: false)])
            }
            for (a, b) in zip(prepared, general) {
                #expect(a.0 == b.0 && a.1 == b.1 && a.2 == b.2, "\(query)")
            }
            #expect(prepared[0].0 == stamps.max()! && prepared[0].1 == stamps[62])
            if !prepared[0].2.isEmpty { nonEmpty += 1 }
        }
        #expect(nonEmpty > queries.count / 2)
    }
}
