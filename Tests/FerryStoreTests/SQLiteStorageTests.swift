import FerryCore
import FerryTestSupport
@testable import FerryStore
import Foundation
import GRDB
import GRDBSQLite
import Testing

/// What every storage backend must do, run against each of them (``SQLiteStorageTests``,
/// ``PostgresStorageTests``).
enum StorageContract {
    static let records = ResourceKey(parentID: "/buckets/b/collections/c", resourceName: "record")

    static func timestampsAreStrictlyIncreasingPerKind(_ storage: any DumpableStorage) async throws {
        let key = records
        let stamps = try await storage.write { s in
            try (0..<200).map { i in try s.put(key, id: "r\(i)", data: ["n": .int(Int64(i))], requestedTimestamp: nil).lastModified }
        }
        #expect(zip(stamps, stamps.dropFirst()).allSatisfy { $0 < $1 })
        let current = try await storage.read { s in try s.timestamp(key) }
        #expect(current == stamps.last)
        // A requested timestamp in the past is ignored; one in the future is used.
        let past = try await storage.write { s in try s.put(key, id: "x", data: [:], requestedTimestamp: 1).lastModified }
        #expect(past > stamps.last!)
        let future = try await storage.write { s in try s.put(key, id: "y", data: [:], requestedTimestamp: past + 1_000_000).lastModified }
        #expect(future == past + 1_000_000)
    }

    /// A kind's first write with a requested timestamp keeps it, as Kinto's storage does (a
    /// record copied with its `last_modified` into an empty collection keeps it), on every
    /// backend: PostgreSQL once took the later of now and the requested value here.
    static func firstWriteKeepsItsRequestedTimestamp(_ storage: any DumpableStorage) async throws {
        let fresh = ResourceKey(parentID: "/buckets/b/collections/first", resourceName: "record")
        let requested: Int64 = 1_000_000_000_000
        let first = try await storage.write { s in try s.put(fresh, id: "a", data: [:], requestedTimestamp: requested).lastModified }
        #expect(first == requested)
        #expect(try await storage.read { s in try s.timestamp(fresh) } == requested)
        // The next write without one is after it (now, which is later), and one at the same
        // value is moved past the kind's current timestamp.
        let again = try await storage.write { s in try s.put(fresh, id: "b", data: [:], requestedTimestamp: requested).lastModified }
        #expect(again > requested)
        // No requested timestamp on a kind's first write: now, not 0 or 1.
        let other = ResourceKey(parentID: "/buckets/b/collections/other", resourceName: "record")
        let before = Timestamp.now()
        let plain = try await storage.write { s in try s.put(other, id: "a", data: [:], requestedTimestamp: nil).lastModified }
        #expect(plain >= before)
    }

    static func deleteLeavesTombstoneThatSinceReturns(_ storage: any DumpableStorage) async throws {
        let key = records
        let created = try await storage.write { s in try s.put(key, id: "a", data: ["v": 1], requestedTimestamp: nil) }
        let tombstone = try await storage.write { s in try s.delete(key, id: "a", requestedTimestamp: nil) }
        #expect(tombstone.deleted && tombstone.lastModified > created.lastModified)
        #expect(try JSON.parse(tombstone.json) == ["id": "a", "last_modified": .int(tombstone.lastModified), "deleted": true])
        let visible = try await storage.read { s in try s.get(key, id: "a", includeDeleted: false) }
        #expect(visible == nil)
        let since = try await storage.read { s in
            var out: [StoredObject] = []
            try s.list(key, query: ListQuery(filters: [Filter("last_modified", .gt, .int(created.lastModified - 1))], includeDeleted: true)) { out.append($0); return true }
            return out
        }
        #expect(since.map(\.id) == ["a"] && since[0].deleted)
        await #expect(throws: StorageError.self) { try await storage.write { s in try s.delete(key, id: "a", requestedTimestamp: nil) } }
    }

    /// Retention purges the tombstones it no longer keeps (by count, by age, in bounded batches),
    /// never a live record nor another kind's tombstone, and raises the horizon to the newest
    /// one purged in the same transaction: a rolled-back purge leaves both as they were.
    static func retentionPurgesOldTombstonesAndRaisesTheHorizon(_ storage: any DumpableStorage) async throws {
        let key = records
        let other = ResourceKey(parentID: "/buckets/b/collections/other", resourceName: "record")
        let tombstones = try await storage.write { s in
            try (0..<10).map { i in
                _ = try s.put(key, id: "t\(i)", data: [:], requestedTimestamp: nil)
                _ = try s.put(key, id: "live\(i)", data: ["n": .int(Int64(i))], requestedTimestamp: nil)
                _ = try s.put(other, id: "t\(i)", data: [:], requestedTimestamp: nil)
                _ = try s.delete(other, id: "t\(i)", requestedTimestamp: nil)
                return try s.delete(key, id: "t\(i)", requestedTimestamp: nil).lastModified
            }
        }
        func left() async throws -> [String] {
            try await storage.read { s in
                var ids: [String] = []
                try s.list(key, query: ListQuery(filters: [Filter("last_modified", .gt, .int(0))], sort: [Sort("id")], includeDeleted: true)) {
                    ids.append($0.id + ($0.deleted ? "-" : ""))
                    return true
                }
                return ids
            }
        }
        #expect(try await storage.read { s in try s.tombstoneHorizon(key) } == 0)
        let now = tombstones[9] + 1
        // Nothing to do: the rules keep all ten.
        #expect(try await storage.write { s in try s.purgeTombstones(key, retention: .forever, now: now) } == 0)
        #expect(try await storage.write { s in try s.purgeTombstones(key, retention: TombstoneRetention(maxCount: 10), now: now) } == 0)
        // A purge that fails undoes its deletes and its horizon.
        let before = try await storage.dump()
        await #expect(throws: StorageError.self) {
            try await storage.write { s in
                _ = try s.purgeTombstones(key, retention: TombstoneRetention(maxCount: 0), now: now)
                throw StorageError.backend("on purpose")
            }
        }
        #expect(try await storage.dump() == before)
        // Keep the newest 6, in batches of 3: the oldest 3, then the 4th, then nothing.
        let count = TombstoneRetention(maxCount: 6)
        #expect(try await storage.write { s in try s.purgeTombstones(key, retention: count, now: now, batch: 3) } == 3)
        #expect(try await storage.read { s in try s.tombstoneHorizon(key) } == tombstones[2])
        #expect(try await storage.write { s in try s.purgeTombstones(key, retention: count, now: now, batch: 3) } == 1)
        #expect(try await storage.write { s in try s.purgeTombstones(key, retention: count, now: now, batch: 3) } == 0)
        #expect(try await storage.read { s in try s.tombstoneHorizon(key) } == tombstones[3])
        #expect(try await left() == (0..<10).map { "live\($0)" } + (4..<10).map { "t\($0)-" })
        // By age: older than (now - tombstones[7]) ms means at or below tombstones[7] - 1.
        let age = TombstoneRetention(maxAge: now - tombstones[7], maxCount: 100)
        #expect(try await storage.write { s in try s.purgeTombstones(key, retention: age, now: now) } == 3)
        #expect(try await storage.read { s in try s.tombstoneHorizon(key) } == tombstones[6])
        #expect(try await left() == (0..<10).map { "live\($0)" } + (7..<10).map { "t\($0)-" })
        // Another collection's tombstones and horizon are untouched; the timestamps did not move.
        #expect(try await storage.read { s in try s.tombstoneHorizon(other) } == 0)
        #expect(try await storage.read { s in try s.tombstoneTimestamp(other, offset: 9, newestFirst: false, atMost: nil) } != nil)
        #expect(try await storage.read { s in try s.timestamp(key) } == tombstones[9])
        // The horizon only grows, and flush forgets it.
        #expect(try await storage.write { s in try s.dropTombstones(key, through: 0) } == 0)
        #expect(try await storage.read { s in try s.tombstoneHorizon(key) } == tombstones[6])
        try await storage.write { s in try s.flush() }
        #expect(try await storage.read { s in try s.tombstoneHorizon(key) } == 0)
    }

    static func filtersSortsAndPagesOverJSONFields(_ storage: any DumpableStorage) async throws {
        let key = records
        try await storage.write { s in
            for i in 0..<30 {
                _ = try s.put(key, id: String(format: "r%02d", i),
                              data: ["age": .int(Int64(i % 10)), "name": .string("user\(i)"), "tags": i % 2 == 0 ? ["even"] : ["odd"],
                                     "active": .bool(i % 3 == 0), "address": ["city": i < 15 ? "Paris" : "Lyon"]],
                              requestedTimestamp: nil)
            }
        }
        func ids(_ query: ListQuery) async throws -> [String] {
            try await storage.read { s in
                var out: [String] = []
                try s.list(key, query: query) { out.append($0.id); return true }
                return out
            }
        }
        #expect(try await ids(ListQuery(filters: [Filter("age", .eq, 3)])).sorted() == ["r03", "r13", "r23"])
        #expect(try await ids(ListQuery(filters: [Filter("age", .eq, "3")])).isEmpty)  // typed: "3" is not 3
        #expect(try await ids(ListQuery(filters: [Filter("active", .eq, true)])).count == 10)
        #expect(try await ids(ListQuery(filters: [Filter("address.city", .eq, "Lyon"), Filter("age", .min, 8)])).sorted() == ["r18", "r19", "r28", "r29"])
        #expect(try await ids(ListQuery(filters: [Filter("age", .in, [1, 2])])).count == 6)
        #expect(try await ids(ListQuery(filters: [Filter("age", .exclude, [1, 2])])).count == 24)
        #expect(try await ids(ListQuery(filters: [Filter("name", .like, "user2*")])).count == 11)
        #expect(try await ids(ListQuery(filters: [Filter("tags", .contains, ["even"])])).count == 15)
        #expect(try await ids(ListQuery(filters: [Filter("tags", .containsAny, ["even", "odd"])])).count == 30)
        #expect(try await ids(ListQuery(filters: [Filter("missing", .has, false)])).count == 30)
        #expect(try await ids(ListQuery(filters: [Filter("age", .not, 0)])).count == 27)

        // Pages of 7 in a sort with ties, resumed with PageAfter, cover every record once.
        let sort = [Sort("age", descending: true), Sort("last_modified", descending: true)]
        var seen: [String] = []
        var after: PageAfter?
        while true {
            let page: [StoredObject] = try await storage.read { [after] s in
                var out: [StoredObject] = []
                try s.list(key, query: ListQuery(sort: sort, after: after, limit: 7)) { out.append($0); return true }
                return out
            }
            if page.isEmpty { break }
            seen += page.map(\.id)
            let last = try JSON.parse(page.last!.json)
            after = PageAfter(lastValues: ["age": last["age"]!, "last_modified": last["last_modified"]!])
        }
        #expect(seen.count == 30 && Set(seen).count == 30)
        let ages = try await storage.read { s in
            var out: [Int64] = []
            try s.list(key, query: ListQuery(sort: sort)) { out.append(try JSON.parse($0.json)["age"]!.intValue!); return true }
            return out
        }
        #expect(ages == ages.sorted(by: >))
    }

    /// NUL characters (`\u0000`, which PostgreSQL's jsonb refuses) in values and field names are
    /// stored and read back exactly, and filters on such values work (with every other filter).
    static func nulCharactersAreStoredExactlyAndFilterable(_ storage: any DumpableStorage) async throws {
        let key = records
        let nul = "a\u{0}b"
        let data: [String: JSON] = ["name": .string(nul), "k\u{0}ey": ["nested": .string("\u{0}")], "literal": .string("\\u0000"), "n": 1]
        _ = try await storage.write { s in
            _ = try s.put(key, id: "nul", data: data, requestedTimestamp: nil)
            _ = try s.put(key, id: "plain", data: ["name": "ab", "literal": "u0000", "n": 2], requestedTimestamp: nil)
        }
        let stored = try await storage.read { s in try s.get(key, id: "nul", includeDeleted: false) }
        let read = try JSON.parse(try #require(stored).json)
        #expect(read["name"] == .string(nul) && read["k\u{0}ey"]?["nested"] == .string("\u{0}") && read["literal"] == .string("\\u0000"))
        func ids(_ filter: Filter) async throws -> [String] {
            try await storage.read { s in
                var out: [String] = []
                try s.list(key, query: ListQuery(filters: [filter], sort: [Sort("id")])) { out.append($0.id); return true }
                return out
            }
        }
        #expect(try await ids(Filter("name", .eq, .string(nul))) == ["nul"])
        // (No LIKE pattern with a NUL: SQLite's LIKE ends text at a NUL.)
        #expect(try await ids(Filter("name", .in, [.string(nul), "ab"])) == ["nul", "plain"])
        #expect(try await ids(Filter("literal", .eq, .string("\\u0000"))) == ["nul"])  // a backslash, then u0000: no NUL
        #expect(try await ids(Filter("n", .gt, 0)) == ["nul", "plain"])
    }

    /// `readObject` answers what `get`, `permissions(of:)` and `anyGranted` answer one by one.
    static func readObjectAnswersAsTheSeparateReads(_ storage: any DumpableStorage) async throws {
        let key = records
        let uri = "/buckets/b/collections/c/records/r1"
        _ = try await storage.write { s in
            _ = try s.put(key, id: "r1", data: ["n": 1], requestedTimestamp: nil)
            try s.setPermissions(of: uri, ["write": ["alice"], "read": ["bob", "system.Everyone"]])
            try s.setPermissions(of: "/buckets/b", ["write": ["carol"]])
            _ = try s.put(key, id: "gone", data: [:], requestedTimestamp: nil)
            _ = try s.delete(key, id: "gone", requestedTimestamp: nil)
        }
        let checks: [String: [(uri: String, permission: String)]] = [
            "read": [(uri, "read"), (uri, "write"), ("/buckets/b", "write")],
            "write": [(uri, "write"), ("/buckets/b", "write")],
            "never": [],
        ]
        func read(_ id: String, _ principals: [String]) async throws -> ObjectRead {
            try await storage.read(.oneStatement) { s in
                try s.readObject(key, id: id, uri: "/buckets/b/collections/c/records/\(id)", checks: checks, principals: principals)
            }
        }
        let alice = try await read("r1", ["alice", "system.Authenticated"])
        #expect(alice.object?.id == "r1" && alice.passed == ["read", "write"])
        #expect(alice.permissions == ["write": ["alice"], "read": ["bob", "system.Everyone"]])
        #expect(try await read("r1", ["bob"]).passed == ["read"])
        #expect(try await read("r1", ["carol"]).passed == ["read", "write"])
        #expect(try await read("r1", ["mallory"]).passed.isEmpty)
        #expect(try await read("r1", []).passed.isEmpty)
        let gone = try await read("gone", ["carol"])
        #expect(gone.object == nil && gone.permissions.isEmpty && gone.passed == ["read", "write"])
        #expect(try await read("never-was", ["alice"]).object == nil)
    }

    /// `objects(_:ids:)` answers what `get` answers id by id: live objects only (no tombstone, no
    /// other kind, no other collection), an id named twice once, none for an empty list; ids with
    /// quotes and non-ASCII letters are looked up as they are.
    static func manyObjectsAnswerAsGetOneByOne(_ storage: any DumpableStorage) async throws {
        let key = records
        let other = ResourceKey(parentID: "/buckets/b/collections/other", resourceName: "record")
        let ids = ["a", "b\"q", "é-1", "gone", "elsewhere", "never-was", "a"]
        _ = try await storage.write { s in
            for id in ["a", "b\"q", "é-1", "gone"] { _ = try s.put(key, id: id, data: ["n": .string(id)], requestedTimestamp: nil) }
            _ = try s.delete(key, id: "gone", requestedTimestamp: nil)
            _ = try s.put(other, id: "elsewhere", data: [:], requestedTimestamp: nil)
        }
        let (many, one, none) = try await storage.read { s in
            let one = try ids.compactMap { try s.get(key, id: $0, includeDeleted: false) }
            return (try s.objects(key, ids: ids), Dictionary(one.map { ($0.id, $0) }, uniquingKeysWith: { a, _ in a }), try s.objects(key, ids: []))
        }
        #expect(Set(many.keys) == ["a", "b\"q", "é-1"])
        #expect(many == one)
        #expect(none.isEmpty)
    }

    /// `timestampAndList` answers what `timestamp` and `list` answer, empty pages and early stops
    /// included; `firstMissing` finds the first absent or deleted object.
    static func onePassReadsAnswerAsTheSeparateReads(_ storage: any DumpableStorage) async throws {
        let key = records
        let other = ResourceKey(parentID: "/buckets/b/collections/other", resourceName: "record")
        _ = try await storage.write { s in
            for i in 0..<5 { _ = try s.put(key, id: "r\(i)", data: ["n": .int(Int64(i))], requestedTimestamp: nil) }
            _ = try s.delete(key, id: "r2", requestedTimestamp: nil)
        }
        let sorted = ListQuery(sort: [Sort("last_modified", descending: true)], limit: 10, includeDeleted: true)
        let (stamp, ids, expected): (Int64, [String], (Int64, [String])) = try await storage.read(.snapshot) { s in
            var ids: [String] = []
            let stamp = try s.timestampAndList(key, query: sorted) { ids.append($0.id); return true }
            var separate: [String] = []
            try s.list(key, query: sorted) { separate.append($0.id); return true }
            return (stamp, ids, (try s.timestamp(key), separate))
        }
        #expect(stamp == expected.0 && stamp > 0 && ids == expected.1 && ids == ["r2", "r4", "r3", "r1", "r0"])
        let firstTwo: [String] = try await storage.read(.oneStatement) { s in
            var ids: [String] = []
            _ = try s.timestampAndList(key, query: ListQuery(sort: [Sort("id")])) { ids.append($0.id); return ids.count < 2 }
            return ids
        }
        #expect(firstTwo == ["r0", "r1"])
        // The sync clients' pages (`_since`, `_before`, a page token, either direction) answer as `list` does.
        let stamps: [Int64] = try await storage.read { s in
            var out: [Int64] = []
            try s.list(key, query: ListQuery(sort: [Sort("last_modified")], includeDeleted: true)) { out.append($0.lastModified); return true }
            return out
        }
        let changes: [ListQuery] = [
            ListQuery(filters: [Filter("last_modified", .gt, .int(stamps[1]))], sort: [Sort("last_modified")], limit: 2, includeDeleted: true),
            ListQuery(filters: [Filter("last_modified", .gt, .string(String(stamps[0]))), Filter("last_modified", .lt, .int(stamps[4]))],
                      sort: [Sort("last_modified", descending: true)], limit: 10, includeDeleted: true),
            ListQuery(filters: [Filter("last_modified", .min, .int(stamps[1])), Filter("last_modified", .max, .int(stamps[3]))],
                      sort: [Sort("last_modified")], limit: 10, includeDeleted: false),
            ListQuery(sort: [Sort("last_modified", descending: true)], after: PageAfter(lastValues: ["last_modified": .int(stamps[3])]),
                      limit: 10, includeDeleted: true),
            ListQuery(sort: [Sort("last_modified")], after: PageAfter(lastValues: ["last_modified": .int(stamps[1])]), limit: 1, includeDeleted: true),
        ]
        for query in changes {
            let (onePass, separate): ([String], [String]) = try await storage.read(.snapshot) { s in
                var a: [String] = [], b: [String] = []
                _ = try s.timestampAndList(key, query: query) { a.append($0.id); return true }
                try s.list(key, query: query) { b.append($0.id); return true }
                return (a, b)
            }
            #expect(onePass == separate && !onePass.isEmpty, "\(query)")
        }
        let empty: (Int64, Int) = try await storage.read(.oneStatement) { s in
            var n = 0
            let stamp = try s.timestampAndList(other, query: ListQuery(sort: [Sort("id")])) { _ in n += 1; return true }
            return (stamp, n)
        }
        #expect(empty == (0, 0))
        let missing: [Int?] = try await storage.read(.oneStatement) { s in
            [try s.firstMissing([]), try s.firstMissing([(key, "r0"), (key, "r1")]),
             try s.firstMissing([(key, "r0"), (key, "r2"), (key, "nope")]), try s.firstMissing([(other, "r0")])]
        }
        #expect(missing == [nil, nil, 1, 0])
    }

    /// `setPermissions` replaces the named permissions' principals (keeping, adding and removing)
    /// and leaves the others alone.
    static func setPermissionsReplacesOnlyTheNamedOnes(_ storage: any DumpableStorage) async throws {
        let uri = "/buckets/b/collections/c"
        func set(_ permissions: Permissions) async throws -> Permissions {
            try await storage.write { s in
                try s.setPermissions(of: uri, permissions)
                return try s.permissions(of: uri)
            }
        }
        #expect(try await set(["read": ["a", "b"], "write": ["c"]]) == ["read": ["a", "b"], "write": ["c"]])
        #expect(try await set(["read": ["b", "d"]]) == ["read": ["b", "d"], "write": ["c"]])
        #expect(try await set(["write": [], "read": ["b", "d"]]) == ["read": ["b", "d"]])
        #expect(try await set([:]) == ["read": ["b", "d"]])
        // A new object's permissions are added without removing anything (there is nothing).
        let added = try await storage.write { s in
            try s.addPermissions(of: uri + "/records/new", ["write": ["a", "b"], "read": []])
            return try s.permissions(of: uri + "/records/new")
        }
        #expect(added == ["write": ["a", "b"]])
    }

    static func failedWriteTransactionChangesNothing(_ storage: any DumpableStorage) async throws {
        let key = records
        let before = try await storage.dump()
        struct Boom: Error {}
        await #expect(throws: Boom.self) {
            try await storage.write { s -> Void in
                _ = try s.put(key, id: "a", data: [:], requestedTimestamp: nil)
                throw Boom()
            }
        }
        #expect(try await storage.dump() == before)
    }

    /// Concurrent writes, every third of which fails after writing: each failed one changes
    /// nothing, every other one commits, and each caller gets its own answer (on SQLite, writes
    /// that arrive together share one transaction: this is what that must not change).
    static func concurrentWritesFailAlone(_ storage: any DumpableStorage) async throws {
        let key = records
        struct Boom: Error {}
        let answers = await withTaskGroup(of: (Int, Int64?).self) { group in
            for i in 0..<120 {
                group.addTask {
                    do {
                        let stamp = try await storage.write { s in
                            let stored = try s.put(key, id: "c\(i)", data: ["i": .int(Int64(i))], requestedTimestamp: nil)
                            if i % 3 == 0 { throw Boom() }
                            return stored.lastModified
                        }
                        return (i, stamp)
                    } catch {
                        return (i, error is Boom ? nil : -1)
                    }
                }
            }
            var answers: [Int: Int64?] = [:]
            for await (i, stamp) in group { answers[i] = stamp }
            return answers
        }
        #expect(answers.count == 120)
        #expect(answers.filter { $0.value == nil }.keys.sorted() == Array(stride(from: 0, to: 120, by: 3)))
        let stored = try await storage.read { s in
            var out: [String: Int64] = [:]
            try s.list(key, query: ListQuery(sort: [Sort("id")])) { out[$0.id] = $0.lastModified; return true }
            return out
        }
        let committed = answers.compactMapValues { $0 }
        #expect(stored.count == 80 && Set(stored.values).count == 80)
        for (i, stamp) in committed { #expect(stored["c\(i)"] == stamp, "c\(i)") }
    }

    /// `flush` empties every kind (objects, tombstones, timestamps, permissions), keeps what the
    /// store needs to go on (a shared secret), is undone with its transaction, and the store
    /// takes writes again after it.
    static func flushEmptiesEverythingAndRollsBack(_ storage: any DumpableStorage) async throws {
        let accounts = ResourceKey(parentID: "", resourceName: "account")
        let buckets = ResourceKey(parentID: "", resourceName: "bucket")
        let groups = ResourceKey(parentID: "/buckets/b", resourceName: "group")
        let secret = try await storage.sharedSecret(proposing: "first secret of this store")
        let before = try await storage.write { s in
            _ = try s.put(accounts, id: "user", data: ["password": "hash"], requestedTimestamp: nil)
            _ = try s.put(buckets, id: "b", data: [:], requestedTimestamp: nil)
            _ = try s.put(groups, id: "g", data: ["members": ["account:user"]], requestedTimestamp: nil)
            _ = try s.put(records, id: "kept", data: ["v": 1], requestedTimestamp: nil)
            _ = try s.put(records, id: "gone", data: ["v": 2], requestedTimestamp: nil)
            _ = try s.delete(records, id: "gone", requestedTimestamp: nil)
            try s.setPermissions(of: "/buckets/b", ["write": ["account:user"]])
            try s.setPermissions(of: "/buckets/b/collections/c/records/kept", ["read": ["system.Everyone"]])
            return try s.timestamp(records)
        }
        let full = try await storage.dump()
        #expect(full.count >= 10)

        // Undone with the transaction that ran it.
        struct Refused: Error {}
        await #expect(throws: Refused.self) {
            try await storage.write { s in
                try s.flush()
                throw Refused()
            }
        }
        #expect(try await storage.dump() == full)

        // A flush after writes of its own transaction takes them too (their timestamps included).
        try await storage.write { s in
            _ = try s.put(records, id: "written-then-flushed", data: [:], requestedTimestamp: nil)
            try s.flush()
        }
        let left = try await storage.dump()
        #expect(left == [], "left after a flush: \(left)")
        let emptied = try await storage.read { s in
            (try s.timestamp(records), try s.get(records, id: "gone", includeDeleted: true), try s.grants(of: ["account:user", "system.Everyone"]),
             try s.groups(containing: ["account:user"]))
        }
        #expect(emptied.0 == 0 && emptied.1 == nil && emptied.2.isEmpty && emptied.3.isEmpty)
        // What configures the store stays (PostgreSQL's shared secret; nil on SQLite, which has none).
        #expect(try await storage.sharedSecret(proposing: "another secret") == secret)
        // Writes go on; a new timestamp is still later than any from before (the clock's).
        let again = try await storage.write { s in try s.put(records, id: "new", data: [:], requestedTimestamp: nil) }
        #expect(again.lastModified > before)
    }

    /// A read declared one statement (``ReadShape/oneStatement``) passes one content read, with
    /// checks of access around it and the tombstone horizon after it. A second content read, or a
    /// write, fails the read with a message that names the reads (also when the body swallowed
    /// the refusal), and the write changed nothing. Where the shape is not strict (release
    /// builds), such a body runs again in a snapshot instead.
    static func oneStatementReadsAreHeldToOneContentRead(_ storage: any DumpableStorage) async throws {
        let key = records
        _ = try await storage.write { s in
            _ = try s.put(key, id: "r1", data: ["n": 1], requestedTimestamp: nil)
            try s.setPermissions(of: "/buckets/b", ["read": ["alice"]])
        }
        let (granted, page, missing, horizon) = try await storage.read(.oneStatement) { s in
            let granted = try s.anyGranted([("/buckets/b", "read")], principals: ["alice"])
            var ids: [String] = []
            _ = try s.timestampAndList(key, query: ListQuery(sort: [Sort("id")])) { ids.append($0.id); return true }
            let missing = try s.firstMissing([(key, "r1"), (key, "nope")])
            return (granted, ids, missing, try s.tombstoneHorizon(key))
        }
        #expect(granted && page == ["r1"] && missing == 1 && horizon == 0)

        let before = try await storage.dump()
        func expectRefused(_ what: String, _ body: @escaping @Sendable (any StorageSession) throws -> Int) async {
            do {
                let answer = try await storage.read(.oneStatement, body)
                Issue.record("a read that broke its shape answered \(answer) (\(what))")
            } catch {
                #expect("\(error)".contains(what), "\(error)")
            }
        }
        if ReadShape.strict {
            await expectRefused("(get, then count)") { s in
                _ = try s.get(key, id: "r1", includeDeleted: false)
                return try s.count(key, filters: [], includeDeleted: false, ids: nil)
            }
            // The horizon before the content read is the content read.
            await expectRefused("(tombstoneHorizon, then timestampAndList)") { s in
                _ = try s.tombstoneHorizon(key)
                return Int(try s.timestampAndList(key, query: ListQuery()) { _ in true })
            }
            await expectRefused("(readObject, then permissions)") { s in
                _ = try? s.readObject(key, id: "r1", uri: "/buckets/b/collections/c/records/r1", checks: [:], principals: [])
                _ = try? s.permissions(of: "/buckets/b")
                return 1
            }
            await expectRefused("tried to write (put)") { s in
                _ = try s.put(key, id: "r2", data: [:], requestedTimestamp: nil)
                return 1
            }
            await expectRefused("tried to write (setPermissions)") { s in
                _ = try s.get(key, id: "r1", includeDeleted: false)
                try s.setPermissions(of: "/buckets/b", ["read": ["mallory"]])
                return 1
            }
        }
        #expect(try await storage.dump() == before)

        final class Runs: @unchecked Sendable { var count = 0 }
        let runs = Runs()
        let again = try await ReadShape.runOneStatement({ s in
            runs.count += 1
            _ = try s.get(key, id: "r1", includeDeleted: false)
            return try s.count(key, filters: [], includeDeleted: false, ids: nil)
        }, strict: false, direct: { try await storage.read(.snapshot, $0) }, snapshot: { try await storage.read(.snapshot, $0) })
        #expect(again == 1 && runs.count == 2)
    }

    /// A savepoint undoes what its body wrote when the body throws, and nothing else: its
    /// objects and the timestamp it moved. Inside the transaction, the kind's timestamp is the
    /// last one allocated; after the commit, the last one kept.
    static func savepointUndoesOnlyItsOwnWrites(_ storage: any DumpableStorage) async throws {
        let key = records
        struct Boom: Error {}
        let far = Timestamp.now() + 10_000_000
        let (kept, insideAfterUndo) = try await storage.write { s in
            let before = try s.put(key, id: "before", data: [:], requestedTimestamp: nil)
            #expect(try s.timestamp(key) == before.lastModified)
            #expect(throws: Boom.self) {
                try s.savepoint {
                    let undone = try s.put(key, id: "undone", data: [:], requestedTimestamp: far)
                    #expect(try s.timestamp(key) == undone.lastModified)
                    throw Boom()
                }
            }
            let insideAfterUndo = try s.timestamp(key)
            #expect(insideAfterUndo == before.lastModified)
            let kept = try s.savepoint { try s.put(key, id: "kept", data: [:], requestedTimestamp: nil) }
            #expect(kept.lastModified > before.lastModified && kept.lastModified < far)
            return (kept, insideAfterUndo)
        }
        let (ids, current) = try await storage.read { s in
            var out: [String] = []
            try s.list(key, query: ListQuery(sort: [Sort("id")])) { out.append($0.id); return true }
            return (out, try s.timestamp(key))
        }
        #expect(ids == ["before", "kept"])
        #expect(current == kept.lastModified && current > insideAfterUndo)
    }

    /// A collection whose first record was undone with its savepoint takes records again in the
    /// same transaction, and one purged in a transaction takes new ones after the purge: every
    /// record written is read back, none of the undone or purged (SQLite gives a parent its
    /// number on its first write: a number given in an undone savepoint, or taken away with a
    /// purge, must not be used again).
    static func newParentsSurviveUndoneSavepointsAndPurges(_ storage: any DumpableStorage) async throws {
        let fresh = ResourceKey(parentID: "/buckets/b/collections/fresh", resourceName: "record")
        let purged = ResourceKey(parentID: "/buckets/b/collections/purged", resourceName: "record")
        let other = ResourceKey(parentID: "/buckets/b/collections/other", resourceName: "record")
        struct Boom: Error {}
        _ = try await storage.write { s in try s.put(purged, id: "old", data: [:], requestedTimestamp: nil) }
        try await storage.write { s in
            #expect(throws: Boom.self) {
                try s.savepoint {
                    _ = try s.put(fresh, id: "undone", data: [:], requestedTimestamp: nil)
                    throw Boom()
                }
            }
            _ = try s.put(other, id: "o", data: [:], requestedTimestamp: nil)
            _ = try s.put(fresh, id: "kept", data: [:], requestedTimestamp: nil)
            _ = try s.put(purged, id: "gone", data: [:], requestedTimestamp: nil)
            try s.purgeChildren(of: "/buckets/b/collections/purged")
            _ = try s.put(other, id: "o2", data: [:], requestedTimestamp: nil)
            _ = try s.put(purged, id: "new", data: [:], requestedTimestamp: nil)
        }
        let found = try await storage.read { s in
            try [fresh, purged, other].map { key in
                var ids: [String] = []
                try s.list(key, query: ListQuery(sort: [Sort("id")], includeDeleted: true)) { ids.append($0.id); return true }
                return ids + [try s.get(key, id: ids.first ?? "-", includeDeleted: false) == nil ? "(no get)" : "(get)"]
            }
        }
        #expect(found == [["kept", "(get)"], ["new", "(get)"], ["o", "o2", "(get)"]])
    }

    /// Invariant 2: with concurrent writers, a poller that asks `_since=<largest timestamp seen>`
    /// sees every change exactly once.
    static func changeFeedIsGapFreeUnderConcurrentWriters(_ storage: any DumpableStorage) async throws {
        let seen = try await pollWhileWriting(writers: Array(repeating: storage, count: 4), poller: storage, perWriter: 150)
        #expect(seen.count == 600)
        #expect(Set(seen.map(\.id)).count == 600)
    }

    /// Each writer puts `perWriter` records through its storage (one storage may stand several
    /// times), while a poller of `poller` asks `_since=<largest timestamp seen>`: what it saw, in order.
    static func pollWhileWriting(writers: [any Storage], poller: any Storage, perWriter: Int) async throws -> [StoredObject] {
        let key = records
        let expected = writers.count * perWriter
        return try await withThrowingTaskGroup(of: [StoredObject].self) { group in
            for (w, storage) in writers.enumerated() {
                group.addTask {
                    for i in 0..<perWriter {
                        _ = try await storage.write { s in try s.put(key, id: "w\(w)-\(i)", data: ["i": .int(Int64(i))], requestedTimestamp: nil) }
                    }
                    return []
                }
            }
            group.addTask {
                var since: Int64 = 0
                var all: [StoredObject] = []
                var idle = 0
                while all.count < expected && idle < 3000 {
                    let page: [StoredObject] = try await poller.read { [since] s in
                        var out: [StoredObject] = []
                        try s.list(key, query: ListQuery(filters: [Filter("last_modified", .gt, .int(since))],
                                                         sort: [Sort("last_modified")], includeDeleted: true)) { out.append($0); return true }
                        return out
                    }
                    if page.isEmpty { idle += 1; try await Task.sleep(for: .milliseconds(1)); continue }
                    all += page
                    since = page.last!.lastModified
                }
                return all
            }
            var all: [StoredObject] = []
            for try await part in group { all += part }
            return all
        }
    }

    /// The size on disk is known and grows with what is written (the server's storage figure).
    static func sizeOnDiskGrowsWithTheData(_ storage: any DumpableStorage) async throws {
        let before = try #require(await storage.sizeInBytes())
        #expect(before > 0)
        let text = String(repeating: "x", count: 1000)
        _ = try await storage.write { session in
            for i in 0..<2000 { _ = try session.put(records, id: "r\(i)", data: ["text": .string(text)], requestedTimestamp: nil) }
        }
        let after = try #require(await storage.sizeInBytes())
        #expect(after >= before + 1_000_000, "\(before) → \(after) bytes after writing 2 MB")
    }

    /// Each contract test, by name.
    /// The hash the sync engine computes for a record read from a server: its JSON without
    /// `last_modified` and without null fields, RFC 8785 (written here from the stored text, not
    /// through ContentHash, so the two ways must agree).
    static func engineHash(_ object: StoredObject) throws -> RecordHash {
        var fields = try JSON.parse(object.json).objectValue ?? [:]
        fields.removeValue(forKey: "last_modified")
        return RecordHash(fields: fields, keyField: "id", keyText: object.id)
    }

    /// The live records of `key` in id-byte order with the engine's hash of each, and what the
    /// stored hashes say (which must come from the column, not from parsing the JSON).
    static func hashesAgree(_ storage: any Storage, _ key: ResourceKey, ids: [String]? = nil) async throws -> [String] {
        try await storage.read { s in
            var expected: [(String, RecordHash)] = []
            try s.list(key, query: ListQuery(sort: [], ids: ids)) { expected.append(($0.id, try engineHash($0))); return true }
            expected.sort { Array($0.0.utf8).lexicographicallyPrecedes(Array($1.0.utf8)) }
            var stored: [(String, RecordHash)] = []
            try s.contentHashes(key, ids: ids) { stored.append(($0, $1)) }
            var fromColumn = true
            try s.listContentHashes(key, ids: ids) { row in fromColumn = fromColumn && row.bytes?.count == 16 && row.json == nil }
            #expect(fromColumn, "every live record has a stored hash")
            #expect(stored.map(\.0) == expected.map(\.0))
            #expect(stored.map(\.1) == expected.map(\.1))
            return stored.map(\.0)
        }
    }

    /// Every write keeps the stored content hashes equal to the engine's hash of the record:
    /// create, replace (a patch is a put of the merged data), delete, re-create over a
    /// tombstone, many writes in one transaction, a savepoint undone, a purge of the collection.
    /// Ids are listed in UTF-8 byte order (not Swift's), other kinds carry no hash.
    static func contentHashesFollowEveryWrite(_ storage: any DumpableStorage) async throws {
        let key = records
        let other = ResourceKey(parentID: "/buckets/b/collections/other", resourceName: "record")
        let collections = ResourceKey(parentID: "/buckets/b", resourceName: "collection")
        _ = try await storage.write { s in
            _ = try s.put(collections, id: "c", data: ["title": "kept without a hash"], requestedTimestamp: nil)
            _ = try s.put(key, id: "a", data: ["n": 1, "gone": .null, "text": "é\u{1F600}", "list": [1.5, "x", .null], "o": ["z": 1, "a": 2]], requestedTimestamp: nil)
            _ = try s.put(key, id: "b", data: ["n": 1], requestedTimestamp: nil)
            _ = try s.put(key, id: "\u{E9}", data: [:], requestedTimestamp: nil)   // two UTF-8 bytes, above "z"
            _ = try s.put(key, id: "Z", data: ["n": 1e300], requestedTimestamp: nil)
            _ = try s.put(other, id: "a", data: ["n": 2], requestedTimestamp: nil)
        }
        #expect(try await hashesAgree(storage, key) == ["Z", "a", "b", "\u{E9}"])
        let before = try await storage.read { s in var h: [String: RecordHash] = [:]; try s.contentHashes(key, ids: nil) { h[$0] = $1 }; return h }
        // "a" and "b" hold {"n": 1} apart from their ids: their hashes differ by the id alone.
        #expect(before["a"] != before["b"])
        // Replace, delete, re-create over the tombstone.
        _ = try await storage.write { s in
            _ = try s.put(key, id: "b", data: ["n": 2, "added": true], requestedTimestamp: nil)
            _ = try s.delete(key, id: "Z", requestedTimestamp: nil)
        }
        #expect(try await hashesAgree(storage, key) == ["a", "b", "\u{E9}"])
        _ = try await storage.write { s in try s.put(key, id: "Z", data: ["back": true], requestedTimestamp: nil) }
        let after = try await storage.read { s in var h: [String: RecordHash] = [:]; try s.contentHashes(key, ids: nil) { h[$0] = $1 }; return h }
        #expect(after["b"] != before["b"] && after["a"] == before["a"] && after["Z"] != before["Z"])
        // The same content written again keeps the same hash (last_modified is not part of it).
        _ = try await storage.write { s in try s.put(key, id: "a", data: ["n": 1, "gone": .null, "text": "é\u{1F600}", "list": [1.5, "x", .null], "o": ["z": 1, "a": 2]], requestedTimestamp: nil) }
        #expect(try await storage.read { s in var h: RecordHash?; try s.contentHashes(key, ids: ["a"]) { h = $1 }; return h } == before["a"])
        // Many writes in one transaction, one of them in a savepoint that is undone.
        _ = try await storage.write { s in
            for i in 0..<300 { _ = try s.put(key, id: "batch-\(i)", data: ["i": .int(Int64(i))], requestedTimestamp: nil) }
            for i in 0..<100 { _ = try s.delete(key, id: "batch-\(i * 3)", requestedTimestamp: nil) }
            _ = try? s.savepoint {
                _ = try s.put(key, id: "batch-1", data: ["undone": true], requestedTimestamp: nil)
                _ = try s.delete(key, id: "batch-2", requestedTimestamp: nil)
                throw StorageError.backend("on purpose")
            }
        }
        let ids = try await hashesAgree(storage, key)
        #expect(ids.count == 4 + 200 && !ids.contains("batch-0") && ids.contains("batch-2"))
        #expect(try await hashesAgree(storage, key, ids: ["batch-1", "a", "batch-3", "missing"]) == ["a", "batch-1"])
        #expect(try await storage.read { s in var h: RecordHash?; try s.contentHashes(key, ids: ["batch-1"]) { h = $1 }; return h }
                == RecordHash(fields: ["i": 1], keyField: "id", keyText: "batch-1"))
        // Nothing is left to backfill; a purge of the collection leaves no hash behind.
        #expect(try await storage.read { s in try s.recordsWithoutContentHash(after: nil, limit: 10) }.isEmpty)
        try await storage.write { s in try s.purgeChildren(of: "/buckets/b/collections/c") }
        #expect(try await hashesAgree(storage, key).isEmpty)
        #expect(try await hashesAgree(storage, other) == ["a"])
        let collectionRows = try await storage.read { s in var rows: [StoredContentHash] = []; try s.listContentHashes(collections, ids: nil) { rows.append($0) }; return rows }
        #expect(collectionRows.map(\.id) == ["c"] && collectionRows.allSatisfy { $0.bytes == nil && $0.json != nil }, "collections carry no stored hash")
    }

    /// The backfill of rows written before hashes were stored, in batches (a migration runs
    /// it): afterwards every live record reads its hash from the column.
    static func backfillFillsRowsWithoutAHash(_ storage: any Storage, clearing clear: () async throws -> Void) async throws {
        let key = records
        _ = try await storage.write { s in
            for i in 0..<25 { _ = try s.put(key, id: "r\(i)", data: ["i": .int(Int64(i)), "none": .null], requestedTimestamp: nil) }
            for i in 0..<5 { _ = try s.delete(key, id: "r\(i * 5)", requestedTimestamp: nil) }
            _ = try s.put(ResourceKey(parentID: "/buckets/b/collections/d", resourceName: "record"), id: "r0", data: [:], requestedTimestamp: nil)
        }
        try await clear()
        let missing = try await storage.read { s in try s.recordsWithoutContentHash(after: nil, limit: 100) }
        #expect(missing.count == 21 && missing.allSatisfy { !$0.object.deleted && $0.key.resourceName == "record" })
        // Until filled in, a read still answers right, from the JSON.
        let fromJSON = try await storage.read { s in var all: [String: RecordHash] = [:]; try s.contentHashes(key, ids: nil) { all[$0] = $1 }; return all }
        #expect(try await storage.write { s in try s.backfillContentHashes(batch: 4) } == 21)
        #expect(try await storage.write { s in try s.backfillContentHashes(batch: 4) } == 0)
        let ids = try await hashesAgree(storage, key)
        #expect(ids.count == 20)
        let stored = try await storage.read { s in var all: [String: RecordHash] = [:]; try s.contentHashes(key, ids: nil) { all[$0] = $1 }; return all }
        #expect(stored == fromJSON)
    }

    static let all: [(String, @Sendable (any DumpableStorage) async throws -> Void)] = [
        ("content-hashes", { try await contentHashesFollowEveryWrite($0) }),
        ("timestamps", { try await timestampsAreStrictlyIncreasingPerKind($0) }),
        ("first write keeps its requested timestamp", { try await firstWriteKeepsItsRequestedTimestamp($0) }),
        ("tombstones", { try await deleteLeavesTombstoneThatSinceReturns($0) }),
        ("filters", { try await filtersSortsAndPagesOverJSONFields($0) }),
        ("rollback", { try await failedWriteTransactionChangesNothing($0) }),
        ("nul", { try await nulCharactersAreStoredExactlyAndFilterable($0) }),
        ("readObject", { try await readObjectAnswersAsTheSeparateReads($0) }),
        ("onePass", { try await onePassReadsAnswerAsTheSeparateReads($0) }),
        ("setPermissions", { try await setPermissionsReplacesOnlyTheNamedOnes($0) }),
        ("gap-free", { try await changeFeedIsGapFreeUnderConcurrentWriters($0) }),
        ("concurrent-failures", { try await concurrentWritesFailAlone($0) }),
        ("savepoint", { try await savepointUndoesOnlyItsOwnWrites($0) }),
        ("new parents", { try await newParentsSurviveUndoneSavepointsAndPurges($0) }),
        ("one-statement", { try await oneStatementReadsAreHeldToOneContentRead($0) }),
        ("many-objects", { try await manyObjectsAnswerAsGetOneByOne($0) }),
        ("flush", { try await flushEmptiesEverythingAndRollsBack($0) }),
        ("tombstone-retention", { try await retentionPurgesOldTombstonesAndRaisesTheHorizon($0) }),
        ("size-on-disk", { try await sizeOnDiskGrowsWithTheData($0) }),
    ]

    static var names: [String] { all.map(\.0) }
    static func run(_ name: String, _ storage: any DumpableStorage) async throws {
        try await all.first { $0.0 == name }!.1(storage)
    }
}

@Suite struct SQLiteStorageTests {
    func makeStorage() throws -> (SQLiteStorage, String) {
        let dir = try temporaryDirectory()
        return (try SQLiteStorage(path: dir + "/ferry.sqlite"), dir)
    }

    @Test(arguments: StorageContract.names)
    func contract(_ name: String) async throws {
        try await StorageContract.run(name, try makeStorage().0)
    }

    @Test func committedWritesSurviveReopening() async throws {
        let (storage, dir) = try makeStorage()
        let key = StorageContract.records
        _ = try await storage.write { s in try s.put(key, id: "kept", data: ["v": 1], requestedTimestamp: nil) }
        try storage.close()
        let reopened = try SQLiteStorage(path: dir + "/ferry.sqlite")
        let object = try await reopened.read { s in try s.get(key, id: "kept", includeDeleted: false) }
        #expect(object?.json.contains("\"v\":1") == true)
    }

    /// Writes about 2,400 pages of log (twelve commits of 100 records of 8 KB) into `storage`
    /// at `dir`, waits for the checkpointer to be idle, and returns the database file's size.
    static func fillLog(_ storage: SQLiteStorage, _ dir: String) async throws -> Int {
        let key = StorageContract.records
        let blob = JSON.string(String(repeating: "x", count: 8_000))
        for round in 0..<12 {
            try await storage.write { s in
                for i in 0..<100 { _ = try s.put(key, id: "r\(round)-\(i)", data: ["blob": blob], requestedTimestamp: nil) }
            }
        }
        for _ in 0..<1_000 where storage.checkpointer.isRunning { try await Task.sleep(for: .milliseconds(10)) }
        #expect(!storage.checkpointer.isRunning)
        return try FileManager.default.attributesOfItem(atPath: dir + "/ferry.sqlite")[.size] as! Int
    }

    /// The log is copied into the database by the checkpointer's connection, not the writer's:
    /// the database file grows by what the log held, and the writer never checkpointed.
    @Test func theCheckpointerCopiesTheLogBesideTheWriter() async throws {
        let (storage, dir) = try makeStorage()
        let size = try await Self.fillLog(storage, dir)
        #expect(storage.checkpointer.counts.checkpointer >= 1)
        #expect(storage.checkpointer.counts.writer == 0)
        #expect(size > 4_000_000)
        try storage.close()
    }

    /// Without its checkpointer (closed), the writer checkpoints itself, as SQLite does by default:
    /// the log is copied all the same.
    @Test func theWriterCheckpointsWhenTheCheckpointerCannot() async throws {
        let (storage, dir) = try makeStorage()
        try storage.checkpointer.close()
        let size = try await Self.fillLog(storage, dir)
        #expect(storage.checkpointer.counts.checkpointer == 0)
        #expect(storage.checkpointer.counts.writer >= 1)
        #expect(size > 4_000_000)
        try storage.close()
    }

    /// A new database file migrated up to `migration` only (as an older Ferry left it), and its path.
    static func database(upTo migration: String) throws -> (path: String, queue: DatabaseQueue) {
        let path = try temporaryDirectory() + "/ferry.sqlite"
        let queue = try DatabaseQueue(path: path)
        try SQLiteStorage.migrator.migrate(queue, upTo: migration)
        return (path, queue)
    }

    /// A database made before content hashes were stored gets them when it is opened: the
    /// migration adds the column and fills it for every live record (tombstones and other
    /// kinds stay without one).
    @Test func migrationBackfillsContentHashes() async throws {
        let (path, old) = try Self.database(upTo: "v3-tombstone-horizons")
        try await old.write { db in
            for i in 0..<2_500 {
                try db.execute(sql: "INSERT INTO objects (parent_id, resource_name, id, last_modified, deleted, data) VALUES (?, 'record', ?, ?, 0, ?)",
                               arguments: ["/buckets/b/collections/c", "r\(i)", 1000 + i, #"{"i":\#(i),"id":"r\#(i)","last_modified":\#(1000 + i),"n":null}"#])
            }
            try db.execute(sql: "UPDATE objects SET deleted = 1, data = '{\"deleted\":true,\"id\":\"r7\",\"last_modified\":5000}' WHERE id = 'r7'")
            try db.execute(sql: "INSERT INTO objects (parent_id, resource_name, id, last_modified, deleted, data) VALUES ('/buckets/b', 'collection', 'c', 1, 0, '{\"id\":\"c\",\"last_modified\":1}')")
        }
        try old.close()
        let storage = try SQLiteStorage(path: path)
        let ids = try await StorageContract.hashesAgree(storage, StorageContract.records)
        #expect(ids.count == 2_499 && !ids.contains("r7"))
        let r1 = try await storage.read { s in var found: RecordHash?; try s.contentHashes(StorageContract.records, ids: ["r1"]) { found = $1 }; return found }
        #expect(r1 == RecordHash(fields: ["i": 1], keyField: "id", keyText: "r1"))
        let unhashed = try await storage.pool.read { db in try Int.fetchOne(db, sql: "SELECT count(*) FROM objects WHERE content_hash IS NULL") }
        #expect(unhashed == 2, "the tombstone and the collection carry none")
    }

    /// v5 drops the index of permission entries by principal (a third of the writer's work for
    /// a new record): entries written before it are still found by object and by principal.
    @Test func migrationDropsThePrincipalIndexAndKeepsTheEntries() async throws {
        let (path, old) = try Self.database(upTo: "v4-content-hashes")
        try await old.write { db in
            for i in 0..<300 {
                try db.execute(sql: "INSERT INTO access_control_entries (object_id, permission, principal) VALUES (?, 'write', ?)",
                               arguments: ["/buckets/b/collections/c/records/r\(i)", i % 3 == 0 ? "alice" : "bob"])
            }
            try db.execute(sql: "INSERT INTO access_control_entries (object_id, permission, principal) VALUES ('/buckets/b', 'read', 'alice')")
        }
        #expect(try await old.read { db in try Int.fetchOne(db, sql: "SELECT count(*) FROM sqlite_master WHERE name = 'access_control_entries_principal'") } == 1)
        try old.close()
        let storage = try SQLiteStorage(path: path)
        let indexes = try await storage.pool.read { db in try Int.fetchOne(db, sql: "SELECT count(*) FROM sqlite_master WHERE name = 'access_control_entries_principal'") }
        #expect(indexes == 0)
        let grants = try await storage.read { s in try s.grants(of: ["alice"]) }
        #expect(grants.count == 101 && grants["/buckets/b"] == ["read"] && grants["/buckets/b/collections/c/records/r3"] == ["write"])
        #expect(grants["/buckets/b/collections/c/records/r1"] == nil)
        let granted = try await storage.read { s in
            (try s.anyGranted([(uri: "/buckets/b/collections/c/records/r4", permission: "write")], principals: ["bob"]),
             try s.anyGranted([(uri: "/buckets/b/collections/c/records/r4", permission: "write")], principals: ["alice"]))
        }
        #expect(granted.0 && !granted.1)
    }

    /// v6 numbers the parents: every object of a v5 database is there after it, under the same
    /// parent, kind and id, with the same timestamp, tombstone flag and JSON, in the order it was
    /// written (rowids kept); pages, groups and look-ups answer from the new keys, and a write
    /// into an existing and a new collection after it lands beside them.
    @Test func migrationNumbersTheParentsAndKeepsEveryObject() async throws {
        let (path, old) = try Self.database(upTo: "v5-no-principal-index")
        let oldRows = "SELECT parent_id, resource_name, id, last_modified, deleted, data FROM objects"
        let before = try await old.write { db -> [[String]] in
            for i in 0..<600 {
                // Written out of id order, across three collections.
                let collection = ["c", "d", "e"][i % 3], id = String(format: "r%04d", (i * 7919) % 600)
                try db.execute(sql: "INSERT INTO objects (parent_id, resource_name, id, last_modified, deleted, data) VALUES (?, 'record', ?, ?, 0, ?)",
                               arguments: ["/buckets/b/collections/\(collection)", id, 1000 + i, #"{"id":"\#(id)","last_modified":\#(1000 + i),"n":\#(i)}"#])
            }
            try db.execute(sql: "UPDATE objects SET deleted = 1, data = '{\"deleted\":true,\"id\":\"r0007\",\"last_modified\":1007}' WHERE parent_id = '/buckets/b/collections/e' AND id = 'r0007'")
            try db.execute(sql: "INSERT INTO objects (parent_id, resource_name, id, last_modified, deleted, data) VALUES ('/buckets/b', 'collection', 'c', 1, 0, '{\"id\":\"c\",\"last_modified\":1}')")
            try db.execute(sql: "INSERT INTO objects (parent_id, resource_name, id, last_modified, deleted, data) VALUES ('/buckets/b', 'group', 'g', 2, 0, '{\"id\":\"g\",\"last_modified\":2,\"members\":[\"alice\"]}')")
            return try Row.fetchAll(db, sql: oldRows + " ORDER BY rowid").map { row in (0..<6).map { "\(row[$0] as DatabaseValue)" } }
        }
        try old.close()
        let storage = try SQLiteStorage(path: path)
        let after = try await storage.pool.read { db in
            try Row.fetchAll(db, sql: "SELECT p.uri, resource_name, id, last_modified, deleted, data FROM objects JOIN parents p ON p.number = objects.parent ORDER BY objects.rowid")
                .map { row in (0..<6).map { "\(row[$0] as DatabaseValue)" } }
        }
        #expect(after == before)
        // The old table's pages were given back (the file rewritten once, after the rebuild), and
        // the log that rewrite filled was cut back.
        #expect(try await storage.pool.read { db in try Int.fetchOne(db, sql: "PRAGMA freelist_count") } == 0)
        #expect((try FileManager.default.attributesOfItem(atPath: path + "-wal")[.size] as? NSNumber)?.intValue == 0)
        let c = ResourceKey(parentID: "/buckets/b/collections/c", resourceName: "record")
        let (page, one, tombstone, groups) = try await storage.read { s in
            var page: [Int64] = []
            try s.list(c, query: ListQuery(filters: [Filter("last_modified", .gt, .int(1500))], sort: [Sort("last_modified")], limit: 10)) {
                page.append($0.lastModified); return true
            }
            return (page, try s.get(c, id: "r0000", includeDeleted: false)?.lastModified, try s.get(ResourceKey(parentID: "/buckets/b/collections/e", resourceName: "record"), id: "r0007", includeDeleted: true)?.deleted,
                    try s.groups(containing: ["alice"]))
        }
        #expect(page == [1501, 1504, 1507, 1510, 1513, 1516, 1519, 1522, 1525, 1528])
        #expect(one == 1000 && tombstone == true && groups == ["/buckets/b/groups/g"])
        let d = ResourceKey(parentID: "/buckets/b/collections/d", resourceName: "record")
        let f = ResourceKey(parentID: "/buckets/b/collections/f", resourceName: "record")
        _ = try await storage.write { s in (try s.put(d, id: "new", data: [:], requestedTimestamp: nil), try s.put(f, id: "new", data: [:], requestedTimestamp: nil)) }
        let counts = try await storage.read { s in (try s.count(d, filters: [], includeDeleted: true, ids: nil), try s.count(f, filters: [], includeDeleted: true, ids: nil)) }
        #expect(counts == (201, 1))
        // The live records got their content hashes (v6 runs the backfill v4 used to).
        let unhashed = try await storage.pool.read { db in try Int.fetchOne(db, sql: "SELECT count(*) FROM objects WHERE resource_name = 'record' AND deleted = 0 AND content_hash IS NULL") }
        #expect(unhashed == 0)
    }

    /// The batched backfill over rows whose hash is missing (as a row written by an older
    /// process on a shared database would be).
    @Test func backfillFillsRowsWithoutAHash() async throws {
        let (storage, _) = try makeStorage()
        try await StorageContract.backfillFillsRowsWithoutAHash(storage) {
            try await storage.pool.write { db in try db.execute(sql: "UPDATE objects SET content_hash = NULL") }
        }
    }

}

/// SQLite plans a statement again at every execution when a bound value may change its plan
/// (`SQLITE_STMTSTATUS_REPREPARE`): the statements of a page, a batch's look-up and retention must
/// not be among them. A page of records was planned anew twice a request, because its bound
/// `resource_name` was compared with the partial index `objects_groups`.
@Suite struct StatementPlanTests {
    /// Times SQLite planned each of `db`'s cached statements again, summed.
    static func replans(_ db: Database, matching: (String) -> Bool = { _ in true }) -> Int32 {
        var total: Int32 = 0
        var statement = sqlite3_next_stmt(db.sqliteConnection, nil)
        while let current = statement {
            if matching(String(cString: sqlite3_sql(current))) { total += sqlite3_stmt_status(current, SQLITE_STMTSTATUS_REPREPARE, 0) }
            statement = sqlite3_next_stmt(db.sqliteConnection, current)
        }
        return total
    }

    @Test func hotStatementsArePlannedOnce() async throws {
        let (_, queue) = try SQLiteStorageTests.database(upTo: "v6-parent-numbers")
        try await queue.write { db in
            let session = SQLiteSession(db: db, pending: PendingTimestamps())
            let records = StorageContract.records
            let groups = ResourceKey(parentID: "/buckets/b", resourceName: "group")
            _ = try session.put(groups, id: "g", data: ["members": ["alice"]], requestedTimestamp: nil)
            var stamps: [Int64] = []
            for i in 0..<40 { stamps.append(try session.put(records, id: "r\(i)", data: ["n": .int(Int64(i))], requestedTimestamp: nil).lastModified) }
            for i in 0..<10 { _ = try session.delete(records, id: "r\(i)", requestedTimestamp: nil) }
            for round in 0..<5 {
                let since = stamps[round * 5]
                for includeDeleted in [false, true] {
                    var seen = 0
                    try session.list(records, query: ListQuery(filters: [Filter("last_modified", .gt, .int(since))], limit: 10 + round,
                                                               includeDeleted: includeDeleted)) { _ in seen += 1; return true }
                    #expect(seen > 0)
                }
                _ = try session.count(records, filters: [Filter("n", .min, .int(Int64(round)))], includeDeleted: false, ids: nil)
                #expect(try session.objects(records, ids: ["r\(20 + round)", "r\(30 + round)"]).count == 2)
                _ = try session.tombstoneTimestamp(records, offset: round, newestFirst: round % 2 == 0, atMost: stamps[round])
                _ = try session.recordsWithoutContentHash(after: (records, "r\(round)"), limit: 5)
            }
            _ = try session.dropTombstones(records, through: stamps[2])
            _ = try session.dropTombstones(records, through: stamps[4])
            #expect(Self.replans(db) == 0)

            // The same look-up with the kind bound is planned again at each execution: what the
            // check above would catch.
            for kind in ["record", "group", "record"] {
                try RawStatement(db, "SELECT id FROM objects WHERE \(SQLiteSession.parentIs) AND resource_name = ? AND deleted = 0",
                                 [.text(records.parentID), .text(kind)]).forEachRow { _ in true }
            }
            #expect(Self.replans(db) { $0.contains("resource_name = ?") } > 0)
        }
    }
}
