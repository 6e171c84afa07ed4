import FerryCore
import FerryTestSupport
import Foundation
import GRDB
import NIOHTTP1
import Testing
@testable import FerrySync

/// One side of a two-way test, changed behind Ferry's back the way an app would change it.
protocol TwoWaySide {
    /// The endpoint URL Ferry syncs.
    var url: String { get }
    /// Credentials Ferry needs for it.
    var auth: String? { get }
    func put(_ id: String, _ fields: [String: JSON]) async throws
    func delete(_ id: String) async throws
    /// Every record, by id, without server metadata.
    func all() async throws -> [String: [String: JSON]]
}

/// A SQLite table `users (id, name, n)`.
struct SQLiteSide: TwoWaySide {
    let path: String
    var url: String { "sqlite:\(path)#users" }
    var auth: String? { nil }

    /// A connection that waits for a running Ferry's lock (a follower may be writing).
    static func open(_ path: String) throws -> DatabaseQueue {
        var configuration = Configuration()
        configuration.busyMode = .timeout(10)
        return try DatabaseQueue(path: path, configuration: configuration)
    }

    init(_ path: String) throws {
        self.path = path
        let queue = try Self.open(path)
        try queue.write { try $0.execute(sql: "CREATE TABLE IF NOT EXISTS users (id TEXT PRIMARY KEY, name TEXT, n INTEGER)") }
        try queue.close()
    }

    func put(_ id: String, _ fields: [String: JSON]) async throws {
        let queue = try Self.open(path)
        defer { try? queue.close() }
        try await queue.write { try $0.execute(sql: "INSERT OR REPLACE INTO users (id, name, n) VALUES (?, ?, ?)",
                                          arguments: [id, fields["name"]?.stringValue, fields["n"]?.intValue]) }
    }

    func delete(_ id: String) async throws {
        let queue = try Self.open(path)
        defer { try? queue.close() }
        try await queue.write { try $0.execute(sql: "DELETE FROM users WHERE id = ?", arguments: [id]) }
    }

    func all() async throws -> [String: [String: JSON]] {
        let queue = try Self.open(path)
        defer { try? queue.close() }
        return try await queue.read { db in
            var out: [String: [String: JSON]] = [:]
            for row in try Row.fetchAll(db, sql: "SELECT id, name, n FROM users") {
                var fields: [String: JSON] = ["id": .string(row[0])]
                if let name: String = row[1] { fields["name"] = .string(name) }
                if let n: Int64 = row[2] { fields["n"] = .int(n) }
                out[row[0]] = fields
            }
            return out
        }
    }
}

/// A collection on a `ferry serve` child process, written as alice.
struct ServerSide: TwoWaySide {
    let server: ServeProcess
    let collection: String
    var url: String { server.collection("main", collection) }
    var auth: String? { "alice:pw" }

    init(_ server: ServeProcess, _ collection: String = "users") async throws {
        self.server = server
        self.collection = collection
        _ = try await server.request(.PUT, "/buckets/main", body: ["data": [:]])
        let (status, _) = try await server.request(.PUT, "/buckets/main/collections/\(collection)", body: ["data": [:]])
        guard status == 201 || status == 200 else { throw SyncTestError("cannot create collection \(collection): \(status)") }
    }

    func put(_ id: String, _ fields: [String: JSON]) async throws {
        var data = fields
        data.removeValue(forKey: "id")
        let (status, _) = try await server.request(.PUT, "/buckets/main/collections/\(collection)/records/\(id)", body: ["data": .object(data)])
        guard status == 200 || status == 201 else { throw SyncTestError("PUT \(id): \(status)") }
    }

    func delete(_ id: String) async throws {
        _ = try await server.request(.DELETE, "/buckets/main/collections/\(collection)/records/\(id)")
    }

    func all() async throws -> [String: [String: JSON]] {
        // Pages by id (the server caps a page), until one comes back short.
        var out: [String: [String: JSON]] = [:]
        var after = ""
        while true {
            let (status, body) = try await server.request(.GET, "/buckets/main/collections/\(collection)/records?_sort=id&_limit=5000" + (after.isEmpty ? "" : "&gt_id=\(after)"))
            guard status == 200, let data = body?["data"]?.arrayValue else { throw SyncTestError("GET records: \(status)") }
            for case .object(var fields) in data {
                fields.removeValue(forKey: "last_modified")
                after = fields["id"]!.stringValue!
                out[after] = fields
            }
            if data.count < 5000 { return out }
        }
    }
}

/// A PostgreSQL table `users (id, name, n)` in a database of its own.
struct PostgresSide: TwoWaySide {
    let cluster: PostgresCluster
    let database: String
    let databaseURL: String
    var url: String { databaseURL + "#users" }
    var auth: String? { nil }

    init(_ cluster: PostgresCluster) throws {
        self.cluster = cluster
        databaseURL = try cluster.createDatabase("twoway")
        database = String(databaseURL.split(separator: "/").last!)
        try cluster.psql(database, "CREATE TABLE users (id TEXT PRIMARY KEY, name TEXT, n BIGINT)")
    }

    static func literal(_ value: JSON?) -> String {
        switch value {
        case .string(let s)?: "'" + s.replacingOccurrences(of: "'", with: "''") + "'"
        case .int(let i)?: String(i)
        default: "NULL"
        }
    }

    func put(_ id: String, _ fields: [String: JSON]) async throws {
        try cluster.psql(database, "INSERT INTO users VALUES (\(Self.literal(.string(id))), \(Self.literal(fields["name"])), \(Self.literal(fields["n"]))) ON CONFLICT (id) DO UPDATE SET name = excluded.name, n = excluded.n")
    }

    func delete(_ id: String) async throws {
        try cluster.psql(database, "DELETE FROM users WHERE id = \(Self.literal(.string(id)))")
    }

    func all() async throws -> [String: [String: JSON]] {
        var out: [String: [String: JSON]] = [:]
        for line in try cluster.psql(database, "SELECT id, coalesce(name, '\u{1}'), coalesce(n::text, '') FROM users").split(separator: "\n") {
            let parts = line.split(separator: "|", omittingEmptySubsequences: false).map(String.init)
            var fields: [String: JSON] = ["id": .string(parts[0])]
            if parts[1] != "\u{1}" { fields["name"] = .string(parts[1]) }
            if let n = Int64(parts[2]) { fields["n"] = .int(n) }
            out[parts[0]] = fields
        }
        return out
    }
}

/// What two-way sync must end with, worked out from the three states alone (the spec, not the engine).
enum TwoWayOracle {
    /// The record both sides hold after the runs (nil: deleted on both).
    static func expected(a: [String: JSON]?, b: [String: JSON]?, base: [String: JSON]?, policy: ConflictPolicy) -> [String: JSON]? {
        if a == b { return a }
        if a == base { return b }
        if b == base { return a }
        switch policy {
        case .aWins: return a
        case .bWins: return b
        case .manual: return nil  // not used by the property runs
        case .newestWins:
            guard let a else { return b }
            guard let b else { return a }
            // The generator gives every write a larger n, so there are no ties.
            return (a["n"]?.intValue ?? 0) > (b["n"]?.intValue ?? 0) ? a : b
        }
    }
}

@Suite(.serialized) struct TwoWayTests {
    func job(_ dir: TempDir, _ a: any TwoWaySide, _ b: any TwoWaySide, _ policy: ConflictPolicy, name: String = "tw") -> SyncJob {
        var job = SyncJob(source: a.url, target: b.url)
        job.name = name
        job.mode = .twoWay
        job.onConflict = policy
        if policy == .newestWins { job.newestField = "n" }
        job.sourceAuth = a.auth
        job.targetAuth = b.auth
        job.statePath = dir.file("state/state.db")
        return job
    }

    /// Runs until a run writes nothing (at most five runs); returns the runs' reports.
    @discardableResult
    func runUntilQuiet(_ job: SyncJob) async throws -> [SyncReport] {
        var reports: [SyncReport] = []
        for _ in 0..<5 {
            let report = try await SyncEngine().run(job)
            reports.append(report)
            let t = try #require(report.twoWay)
            if t.writtenToA + t.writtenToB + t.deletedInA + t.deletedInB == 0 { return reports }
        }
        Issue.record("two-way runs did not become quiet: \(reports.map { $0.twoWay!.json.serialized() })")
        return reports
    }

    /// ferry.yml with one two-way job `phone` (a-wins) between the sides, on `schedule`.
    static func writeJobsFile(_ dir: TempDir, _ a: any TwoWaySide, _ b: any TwoWaySide, schedule: String,
                              job: String = "phone", policy: String = "a-wins") throws {
        try """
            jobs:
              \(job):
                source: \(a.url)
                target: \(b.url)
                mode: two-way
                on_conflict: \(policy)
                schedule: \(schedule)
            """.write(toFile: dir.file("ferry.yml"), atomically: true, encoding: .utf8)
    }

    static func quiet(_ report: SyncReport) -> Bool {
        guard let t = report.twoWay else { return false }
        return t.writtenToA + t.writtenToB + t.deletedInA + t.deletedInB + t.conflicts == 0 && report.created + report.updated + report.deleted + report.written == 0
    }

    // MARK: decisions (pure)

    @Test func decisionsFollowTheBaseAndThePolicy() {
        let base = "h0"
        let same = SideState(hash: base)
        let upd1 = SideState(hash: "h1", newest: .int(5))
        let upd2 = SideState(hash: "h2", newest: .int(7))
        let gone = SideState.absent
        for policy in ConflictPolicy.allCases {
            #expect(TwoWayDecision.decide(a: same, b: same, base: base, policy: policy) == .agree(base))
            #expect(TwoWayDecision.decide(a: upd1, b: same, base: base, policy: policy) == .copyAToB)
            #expect(TwoWayDecision.decide(a: same, b: gone, base: base, policy: policy) == .copyBToA)
            // The same change on both sides is not a conflict.
            #expect(TwoWayDecision.decide(a: upd1, b: upd1, base: base, policy: policy) == .agree("h1"))
            #expect(TwoWayDecision.decide(a: gone, b: gone, base: base, policy: policy) == .agree(nil))
        }
        #expect(TwoWayDecision.decide(a: upd1, b: upd2, base: base, policy: .aWins) == .conflictAWins)
        #expect(TwoWayDecision.decide(a: gone, b: upd2, base: base, policy: .aWins) == .conflictAWins)
        #expect(TwoWayDecision.decide(a: upd1, b: gone, base: base, policy: .bWins) == .conflictBWins)
        #expect(TwoWayDecision.decide(a: upd1, b: upd2, base: base, policy: .manual) == .conflict)
        #expect(TwoWayDecision.decide(a: upd1, b: upd2, base: base, policy: .newestWins) == .conflictBWins)
        // newest-wins: a live record beats a delete, whichever side it is on.
        #expect(TwoWayDecision.decide(a: gone, b: upd1, base: base, policy: .newestWins) == .conflictBWins)
        #expect(TwoWayDecision.decide(a: upd1, b: gone, base: base, policy: .newestWins) == .conflictAWins)
        // Created on both sides with different content (no base): a conflict too.
        #expect(TwoWayDecision.decide(a: upd1, b: upd2, base: nil, policy: .manual) == .conflict)
    }

    @Test(arguments: [
        (SideState(hash: "aa", newest: .int(3)), SideState(hash: "bb", newest: .int(3))),  // a tie: the larger hash
        (SideState(hash: "aa"), SideState(hash: "bb")),  // no field on either side
        (SideState(hash: "ff", newest: nil), SideState(hash: "00", newest: .string("2026"))),  // only one side has it
        (SideState(hash: "10", newest: .int(9)), SideState(hash: "20", newest: .int(1))),
    ])
    func newestWinsPicksTheSameRecordWhicheverSideItIsOn(x: SideState, y: SideState) {
        let xy = TwoWayDecision.decide(a: x, b: y, base: "base", policy: .newestWins)
        let yx = TwoWayDecision.decide(a: y, b: x, base: "base", policy: .newestWins)
        #expect((xy == .conflictAWins) == (yx == .conflictBWins))
        #expect(xy == .conflictAWins || xy == .conflictBWins)
    }

    // MARK: each policy, each kind of conflict, on real endpoints

    /// r1: updated on both sides; r2: updated on A, deleted on B; r3: deleted on A, updated on B;
    /// r4: the same update on both (no conflict); r5, r6: changed on one side only.
    func conflictScenario(_ a: any TwoWaySide, _ b: any TwoWaySide, _ dir: TempDir, policy: ConflictPolicy) async throws -> (SyncReport, [String: [String: JSON]], [String: [String: JSON]]) {
        for i in 1...6 { try await a.put("r\(i)", ["id": .string("r\(i)"), "name": .string("base\(i)"), "n": .int(Int64(i))]) }
        let j = job(dir, a, b, policy)
        try await runUntilQuiet(j)
        #expect(try await a.all() == b.all())
        try await a.put("r1", ["id": "r1", "name": "a1", "n": 20])
        try await b.put("r1", ["id": "r1", "name": "b1", "n": 21])
        try await a.put("r2", ["id": "r2", "name": "a2", "n": 30])
        try await b.delete("r2")
        try await a.delete("r3")
        try await b.put("r3", ["id": "r3", "name": "b3", "n": 31])
        try await a.put("r4", ["id": "r4", "name": "both", "n": 40])
        try await b.put("r4", ["id": "r4", "name": "both", "n": 40])
        try await a.put("r5", ["id": "r5", "name": "a5", "n": 50])
        try await b.delete("r6")
        let report = try await SyncEngine().run(j)
        return (report, try await a.all(), try await b.all())
    }

    @Test(arguments: ConflictPolicy.allCases)
    func eachPolicyOnServerAndSQLite(policy: ConflictPolicy) async throws {
        let dir = try TempDir()
        let server = try ServeProcess()
        let a = try await ServerSide(server)
        let b = try SQLiteSide(dir.file("phone.db"))
        let (report, sideA, sideB) = try await conflictScenario(a, b, dir, policy: policy)
        let t = try #require(report.twoWay)
        // Changes on one side only, and identical changes, are never conflicts.
        #expect(sideA["r4"]?["name"] == "both" && sideB["r4"]?["name"] == "both")
        #expect(sideA["r5"]?["name"] == "a5" && sideB["r5"]?["name"] == "a5")
        #expect(sideA["r6"] == nil && sideB["r6"] == nil)
        switch policy {
        case .aWins:
            #expect(t.aWon == 3 && t.bWon == 0 && t.manual == 0)
            #expect(sideB["r1"]?["name"] == "a1" && sideB["r2"]?["name"] == "a2" && sideB["r3"] == nil)
        case .bWins:
            #expect(t.bWon == 3 && t.aWon == 0 && t.manual == 0)
            #expect(sideA["r1"]?["name"] == "b1" && sideA["r2"] == nil && sideA["r3"]?["name"] == "b3")
        case .newestWins:
            // r1: B's n is larger; r2, r3: the update beats the delete.
            #expect(t.aWon + t.bWon == 3 && t.manual == 0)
            #expect(sideA["r1"]?["name"] == "b1" && sideA["r2"]?["name"] == "a2" && sideB["r2"]?["name"] == "a2" && sideB["r3"]?["name"] == "b3")
        case .manual:
            #expect(t.manual == 3 && t.aWon == 0 && t.bWon == 0)
            // Both sides keep their own version of the three records.
            #expect(sideA["r1"]?["name"] == "a1" && sideB["r1"]?["name"] == "b1")
            #expect(sideA["r2"]?["name"] == "a2" && sideB["r2"] == nil)
            #expect(sideA["r3"] == nil && sideB["r3"]?["name"] == "b3")
            let conflicts = try StateStore(path: dir.file("state/state.db")).conflicts(job: "tw")
            #expect(conflicts.map(\.key).sorted() == ["r1", "r2", "r3"])
            // Another run logs nothing new and changes nothing.
            let again = try await SyncEngine().run(job(dir, a, b, policy))
            #expect(again.twoWay?.manual == 3 && again.twoWay?.writtenToA == 0 && again.twoWay?.writtenToB == 0)
            #expect(try StateStore(path: dir.file("state/state.db")).conflicts(job: "tw").map(\.id).sorted() == conflicts.map(\.id).sorted())
            return
        }
        #expect(sideA == sideB)
        let again = try await SyncEngine().run(job(dir, a, b, policy))
        #expect(Self.quiet(again), "\(again.json.serialized())")
    }

    // MARK: properties: random rounds on both sides, then runs until quiet

    func property(_ a: any TwoWaySide, _ b: any TwoWaySide, dir: TempDir, seed: UInt64, rounds: Int, policy: ConflictPolicy, name: String = "tw") async throws {
        var random = SplitMix(seed: seed)
        var counter: Int64 = 0
        let ids = (0..<24).map { "k\($0)" }
        let j = job(dir, a, b, policy, name: name)
        var base: [String: [String: JSON]] = [:]
        for round in 0..<rounds {
            for side in [a, b] {
                for _ in 0..<Int.random(in: 2...8, using: &random) {
                    let id = ids[Int.random(in: 0..<(round % 2 == 0 ? 8 : ids.count), using: &random)]  // even rounds overlap more
                    counter += 1
                    if Int.random(in: 0..<4, using: &random) == 0 {
                        try await side.delete(id)
                    } else {
                        try await side.put(id, ["id": .string(id), "name": .string("v\(counter)"), "n": .int(counter)])
                    }
                }
            }
            let (before, beforeB) = (try await a.all(), try await b.all())
            var expected: [String: [String: JSON]] = [:]
            for id in Set(before.keys).union(beforeB.keys).union(base.keys) {
                expected[id] = TwoWayOracle.expected(a: before[id], b: beforeB[id], base: base[id], policy: policy)
            }
            try await runUntilQuiet(j)
            let (afterA, afterB) = (try await a.all(), try await b.all())
            #expect(afterA == afterB, "seed \(seed) round \(round): the sides differ")
            // Nothing lost but a conflict's loser, nothing deleted comes back.
            #expect(afterA == expected, "seed \(seed) round \(round): \(afterA) is not \(expected)")
            let again = try await SyncEngine().run(j)
            #expect(Self.quiet(again), "seed \(seed) round \(round): a further run changed something: \(again.json.serialized())")
            base = afterA
        }
    }

    @Test(arguments: [(UInt64(1), ConflictPolicy.aWins), (2, .bWins), (3, .newestWins), (4, .newestWins)])
    func propertiesSQLiteToSQLite(seed: UInt64, policy: ConflictPolicy) async throws {
        let dir = try TempDir()
        try await property(try SQLiteSide(dir.file("a.db")), try SQLiteSide(dir.file("b.db")), dir: dir, seed: seed, rounds: 12, policy: policy)
    }

    @Test func propertiesServerToSQLite() async throws {
        let dir = try TempDir()
        let server = try ServeProcess()
        try await property(try await ServerSide(server), try SQLiteSide(dir.file("b.db")), dir: dir, seed: 11, rounds: 6, policy: .newestWins)
    }

    @Test func propertiesServerToServer() async throws {
        let dir = try TempDir()
        let one = try ServeProcess()
        let two = try ServeProcess()
        let (a, b) = (try await ServerSide(one), try await ServerSide(two))
        try await property(a, b, dir: dir, seed: 12, rounds: 6, policy: .aWins)
        // Servers are read through their change feeds after the first run: once the run after
        // the last writes has seen them, a run reads nothing at all.
        _ = try await SyncEngine().run(job(dir, a, b, .aWins))
        let idle = try await SyncEngine().run(job(dir, a, b, .aWins))
        #expect(idle.read == 0 && Self.quiet(idle), "\(idle.json.serialized())")
        try await a.put("k1", ["id": "k1", "name": "one change", "n": 1000])
        let single = try await SyncEngine().run(job(dir, a, b, .aWins))
        #expect(single.read == 1 && single.twoWay?.writtenToB == 1, "\(single.json.serialized())")
        #expect(try await b.all()["k1"]?["name"] == "one change")
    }

    @Test(.enabled(if: PostgresCluster.enabled, "PostgreSQL is not installed"))
    func propertiesSQLiteToPostgres() async throws {
        let dir = try TempDir()
        let cluster = try PostgresCluster.shared()
        try await property(try SQLiteSide(dir.file("a.db")), try PostgresSide(cluster), dir: dir, seed: 13, rounds: 6, policy: .bWins)
    }

    /// newest-wins picks the same winners whichever side is A: the same seeded changes synced
    /// A→B in one folder and B→A in another end equal.
    @Test func newestWinsDoesNotDependOnWhichSideIsA() async throws {
        var finals: [[String: [String: JSON]]] = []
        for swapped in [false, true] {
            let dir = try TempDir()
            let x = try SQLiteSide(dir.file("x.db"))
            let y = try SQLiteSide(dir.file("y.db"))
            var random = SplitMix(seed: 99)
            var counter: Int64 = 0
            for round in 0..<6 {
                for side in [x, y] {
                    for _ in 0..<6 {
                        let id = "k\(Int.random(in: 0..<6, using: &random))"
                        counter += 1
                        if Int.random(in: 0..<4, using: &random) == 0 {
                            try await side.delete(id)
                        } else {
                            // Equal n on both sides in a round: the tie-break by hash decides.
                            try await side.put(id, ["id": .string(id), "name": .string("v\(counter)"), "n": .int(Int64(round))])
                        }
                    }
                }
                try await runUntilQuiet(swapped ? job(dir, y, x, .newestWins) : job(dir, x, y, .newestWins))
            }
            #expect(try await x.all() == y.all())
            finals.append(try await x.all())
        }
        #expect(finals[0] == finals[1])
    }

    // MARK: If-Match

    /// A server write carries the version read: a record changed since is left alone and
    /// reported as changed during the run.
    @Test func serverWritesAreConditionalOnTheVersionRead() async throws {
        let server = try ServeProcess()
        let side = try await ServerSide(server)
        try await side.put("r1", ["name": "first"])
        var options = EndpointOptions()
        options.auth = "alice:pw"
        options.versionField = SyncEngine.versionField
        let endpoint = try ConnectorRegistry.standard.endpoint(side.url, options: options)
        try await endpoint.open(forWriting: true)
        var version: Int64?
        try await endpoint.readAll(batchSize: 10).forEach { items in
            for case .record(let fields) in items { version = fields[SyncEngine.versionField]?.intValue }
        }
        let read = try #require(version)
        try await side.put("r1", ["name": "changed meanwhile"])
        let writer = try await endpoint.makeWriter(job: "t")
        let key = RecordKey(.string("r1"))!
        writer.expect(key: key, exists: true, version: read, hash: nil)
        // A record that was absent when read but exists now: If-None-Match refuses it too.
        try await side.put("r2", ["name": "created meanwhile"])
        let key2 = RecordKey(.string("r2"))!
        writer.expect(key: key2, exists: false, version: nil, hash: nil)
        let outcome = try await writer.apply([.upsert(Record(key: key, fields: ["id": "r1", "name": "from ferry"])),
                                              .upsert(Record(key: key2, fields: ["id": "r2", "name": "from ferry"]))], cursor: nil)
        #expect(Set(outcome.changedMeanwhile) == [key, key2] && outcome.rejected.isEmpty)
        let all = try await side.all()
        #expect(all["r1"]?["name"] == "changed meanwhile" && all["r2"]?["name"] == "created meanwhile")
        // The same write without a condition goes through (the engine's other modes are unchanged).
        let plain = try await endpoint.makeWriter(job: "t").apply([.upsert(Record(key: key, fields: ["id": "r1", "name": "from ferry"]))], cursor: nil)
        #expect(plain.changedMeanwhile.isEmpty && plain.updated == 1)
        await endpoint.close()
    }

    // MARK: the CLI: manual flow and bad input

    @Test func manualFlowEndToEnd() async throws {
        let dir = try TempDir()
        let a = try SQLiteSide(dir.file("a.db"))
        let b = try SQLiteSide(dir.file("b.db"))
        try await a.put("r1", ["name": "base", "n": 1])
        try await a.put("r2", ["name": "base", "n": 2])
        let sync = ["sync", a.url, b.url, "--two-way", "--job", "m", "--json"]
        await #expect(try Ferry.run(sync, in: dir.path).status == 0)
        try await a.put("r1", ["name": "a", "n": 10])
        try await b.put("r1", ["name": "b", "n": 11])
        try await a.delete("r2")
        try await b.put("r2", ["name": "b2", "n": 12])
        let run = try await Ferry.run(sync, in: dir.path)
        let report = try JSON.parse(run.stdout)
        #expect(report["twoWay"]?["conflicts"]?["manual"] == 2)
        let list = try await JSON.parse(try Ferry.run(["conflicts", "list", "--json"], in: dir.path).stdout)
        let ids = try #require(list.arrayValue).compactMap { $0["id"]?.intValue }
        #expect(ids.count == 2)
        let byKey = Dictionary(uniqueKeysWithValues: list.arrayValue!.map { ($0["key"]!.stringValue!, $0["id"]!.intValue!) })
        let shown = try await Ferry.run(["conflicts", "show", String(byKey["r1"]!)], in: dir.path)
        #expect(shown.stdout.contains(#""name":"a""#) && shown.stdout.contains(#""name":"b""#))
        let stateBefore = try StateStore(path: dir.file(".ferry/state.db")).conflicts(all: true).map(\.json)

        // Bad input: a clear error, and nothing changes.
        for (arguments, message) in [
            (["conflicts", "resolve", "999", "--take", "a"], "no conflict 999"),
            (["conflicts", "resolve", "abc", "--take", "a"], "abc"),
            (["conflicts", "resolve", String(byKey["r1"]!), "--take", "c"], "--take must be a, b or a JSON file"),
            (["conflicts", "resolve", String(byKey["r1"]!), "--take", "bad.json"], "not valid JSON"),
            (["conflicts", "resolve", String(byKey["r1"]!), "--take", "array.json"], "must hold one record"),
            (["conflicts", "resolve", String(byKey["r1"]!), "--take", "other.json"], "not r1"),
            (["conflicts", "show", "12345"], "no conflict 12345"),
            (["conflicts", "list", "--state", "nowhere.db"], "no state database"),
        ] {
            try "{not json".write(toFile: dir.file("bad.json"), atomically: true, encoding: .utf8)
            try "[1, 2]".write(toFile: dir.file("array.json"), atomically: true, encoding: .utf8)
            try #"{"id": "r9", "name": "x"}"#.write(toFile: dir.file("other.json"), atomically: true, encoding: .utf8)
            let result = try await Ferry.run(arguments, in: dir.path)
            #expect(result.status != 0, "\(arguments)")
            #expect(result.stderr.contains(message), "\(arguments): \(result.stderr)")
        }
        #expect(try StateStore(path: dir.file(".ferry/state.db")).conflicts(all: true).map(\.json) == stateBefore)
        #expect(!FileManager.default.fileExists(atPath: dir.file("nowhere.db")))

        // r1: a merged record from a file; r2: B's side (the update beats A's delete).
        try #"{"name": "merged", "n": 99}"#.write(toFile: dir.file("merged.json"), atomically: true, encoding: .utf8)
        await #expect(try Ferry.run(["conflicts", "resolve", String(byKey["r1"]!), "--take", "merged.json"], in: dir.path).status == 0)
        await #expect(try Ferry.run(["conflicts", "resolve", String(byKey["r2"]!), "--take", "b"], in: dir.path).status == 0)
        let applied = try await JSON.parse(try Ferry.run(sync, in: dir.path).stdout)
        #expect(applied["twoWay"]?["conflicts"]?["resolved"] == 2)
        let (sideA, sideB) = (try await a.all(), try await b.all())
        #expect(sideA == sideB && sideA["r1"]?["name"] == "merged" && sideA["r2"]?["name"] == "b2")
        await #expect(try Ferry.run(["conflicts", "list"], in: dir.path).stdout.contains("no conflicts to resolve"))
        let settled = try await Ferry.run(["conflicts", "resolve", String(byKey["r1"]!), "--take", "a"], in: dir.path)
        #expect(settled.status == 2 && settled.stderr.contains("already settled"))
        let quiet = try await JSON.parse(try Ferry.run(sync, in: dir.path).stdout)
        #expect(quiet["twoWay"]?["toA"]?["written"] == 0 && quiet["twoWay"]?["toB"]?["written"] == 0)
        let status = try await Ferry.run(["status", "--job", "m"], in: dir.path)
        #expect(status.stdout.contains("two-way") && status.stdout.contains("0/0/2"))
    }

    @Test func resolvedDecisionIsDroppedWhenASideChangesAgain() async throws {
        let dir = try TempDir()
        let a = try SQLiteSide(dir.file("a.db"))
        let b = try SQLiteSide(dir.file("b.db"))
        try await a.put("r1", ["name": "base"])
        let j = job(dir, a, b, .manual)
        try await runUntilQuiet(j)
        try await a.put("r1", ["name": "a"])
        try await b.put("r1", ["name": "b"])
        _ = try await SyncEngine().run(j)
        let state = try StateStore(path: dir.file("state/state.db"))
        let conflict = try #require(try state.conflicts(job: "tw").first)
        try state.resolveConflict(id: conflict.id, resolution: conflict.a, resolutionHash: RecordHash(fields: conflict.a!.objectValue!, keyField: "id", keyText: "r1").description, taken: "a")
        try await b.put("r1", ["name": "b again"])
        let report = try await SyncEngine().run(j)
        #expect(report.twoWay?.resolved == 0 && report.twoWay?.manual == 1)
        let (sideA, sideB) = (try await a.all(), try await b.all())
        #expect(sideA["r1"]?["name"] == "a" && sideB["r1"]?["name"] == "b again")
        let reopened = try #require(try state.conflicts(job: "tw").first)
        #expect(reopened.id == conflict.id && reopened.status == "open" && reopened.b?["name"] == "b again")
    }

    @Test func badTwoWayInputIsRefusedAndChangesNothing() async throws {
        let dir = try TempDir()
        let a = try SQLiteSide(dir.file("a.db"))
        let b = try SQLiteSide(dir.file("b.db"))
        try await a.put("r1", ["name": "x"])
        try "{}\n".write(toFile: dir.file("f.jsonl"), atomically: true, encoding: .utf8)
        for (arguments, message) in [
            (["sync", a.url, b.url, "--two-way", "--on-conflict", "oldest-wins"], "--on-conflict must be a-wins, b-wins, newest-wins, manual, not \"oldest-wins\""),
            (["sync", a.url, b.url, "--on-conflict", "a-wins"], "--on-conflict goes with --two-way"),
            (["sync", a.url, b.url, "--two-way", "--newest-field", "n"], "--newest-field goes with --on-conflict newest-wins"),
            (["sync", a.url, b.url, "--two-way", "--mode", "diff"], "--two-way is a mode of its own"),
            (["sync", a.url, b.url, "--two-way", "--follow", "--dry-run"], "--follow does not go with --delete, --dry-run or --verify"),
            (["sync", a.url, b.url, "--two-way", "--rename", "name=label"], "a transform"),
            (["sync", a.url, "file:f.jsonl", "--two-way"], "is a file"),
            (["sync", a.url, a.url, "--two-way"], "the two sides are the same"),
        ] {
            let result = try await Ferry.run(arguments, in: dir.path)
            #expect(result.status != 0, "\(arguments)")
            #expect(result.stderr.contains(message), "\(arguments): \(result.stderr)")
        }
        #expect(try await b.all().isEmpty)
        #expect(try String(contentsOfFile: dir.file("f.jsonl"), encoding: .utf8) == "{}\n")

        // The jobs file: mode: two-way takes on_conflict; bad values are errors naming the line.
        let good = "jobs:\n  j:\n    source: \(a.url)\n    target: \(b.url)\n    mode: two-way\n    on_conflict: newest-wins\n    newest_field: n\n"
        let parsed = try JobsFile.parse(good, file: "ferry.yml", environment: [:])
        #expect(parsed[0].job.mode == .twoWay && parsed[0].job.onConflict == .newestWins && parsed[0].job.newestField == "n")
        for (text, message) in [
            ("    mode: two-way\n    on_conflict: sometimes\n", "ferry.yml:6: on_conflict must be a-wins, b-wins, newest-wins, manual, not \"sometimes\""),
            ("    mode: diff\n    on_conflict: a-wins\n", "ferry.yml:6: on_conflict goes with mode: two-way"),
            ("    mode: two-way\n    newest_field: n\n", "ferry.yml:6: newest_field goes with on_conflict: newest-wins"),
            ("    mode: three-way\n", "ferry.yml:5: mode must be full, incremental, diff or two-way"),
        ] {
            let yaml = "jobs:\n  j:\n    source: \(a.url)\n    target: \(b.url)\n" + text
            #expect(throws: SyncError.self) { try JobsFile.parse(yaml, file: "ferry.yml", environment: [:]) }
            do {
                _ = try JobsFile.parse(yaml, file: "ferry.yml", environment: [:])
            } catch {
                #expect(error.message.contains(message), "\(error.message)")
            }
        }
    }

    // MARK: kill -9

    /// Fills a side's table with `count` records k0…, named `prefix`, n = i (one transaction).
    static func fill(_ path: String, range: Range<Int>, prefix: String) throws {
        let queue = try DatabaseQueue(path: path)
        try queue.write { db in
            let statement = try db.makeStatement(sql: "INSERT OR REPLACE INTO users (id, name, n) VALUES (?, ?, ?)")
            for i in range { try statement.execute(arguments: ["k\(i)", "\(prefix)\(i)", i]) }
        }
        try queue.close()
    }

    /// A run killed at random moments, then run to the end, ends where an uninterrupted run
    /// ends: between two tables, and between a server (read through its change feed after the
    /// first run, its cursor saved last) and a table.
    @Test(arguments: [false, true])
    func killNineDuringATwoWayRunEndsLikeAnUninterruptedOne(serverSide: Bool) async throws {
        var finals: [[String: [String: JSON]]] = []
        var hits = 0
        for interrupted in [false, true] {
            let dir = try TempDir()
            let server = serverSide ? try ServeProcess() : nil
            let a: any TwoWaySide = if let server { try await ServerSide(server) } else { try SQLiteSide(dir.file("a.db")) }
            let b = try SQLiteSide(dir.file("b.db"))
            var seeds = 0
            /// Upserts records k<i> on A in bulk (a server through a full sync of a file).
            func fillA(_ range: Range<Int>, _ prefix: String) async throws {
                guard serverSide else { return try Self.fill(dir.file("a.db"), range: range, prefix: prefix) }
                seeds += 1
                let lines = range.map { #"{"id":"k\#($0)","name":"\#(prefix)\#($0)","n":\#($0)}"# }
                try (lines.joined(separator: "\n") + "\n").write(toFile: dir.file("seed\(seeds).jsonl"), atomically: true, encoding: .utf8)
                let seeded = try await Ferry.run(["sync", "file:seed\(seeds).jsonl", a.url, "--target-auth", "alice:pw", "--job", "seed\(seeds)"], in: dir.path)
                #expect(seeded.status == 0, "\(seeded.stderr)")
            }
            // A base of 4,000 shared records; then A updates 2,400 and B 2,400 (400 of them on
            // both sides: a-wins), A deletes 200 that B updated, and each side creates 5,000.
            try await fillA(0..<4_000, "base")
            var arguments = ["sync", a.url, b.url, "--two-way", "--on-conflict", "a-wins", "--batch-size", "100", "--job", "k"]
            if serverSide { arguments += ["--source-auth", "alice:pw"] }
            await #expect(try Ferry.run(arguments, in: dir.path).status == 0)
            try await fillA(0..<2_400, "a")
            try Self.fill(b.path, range: 2_000..<4_400, prefix: "b")
            for i in 3_800..<4_000 { try await a.delete("k\(i)") }
            try await fillA(10_000..<15_000, "new-a")
            try Self.fill(b.path, range: 20_000..<25_000, prefix: "new-b")
            if interrupted {
                for _ in 0..<4 {
                    let process = Ferry.start(arguments, in: dir.path, quiet: true)
                    try await Task.sleep(for: .milliseconds(Int.random(in: 100...800)))
                    if process.isRunning {
                        kill(process.processIdentifier, SIGKILL)
                        hits += 1
                    }
                    await process.exited()
                }
            }
            let final = try await Ferry.run(arguments, in: dir.path)
            #expect(final.status == 0, "\(final.stderr)")
            let (sideA, sideB) = (try await a.all(), try await b.all())
            #expect(sideA == sideB)
            let again = try await JSON.parse(try Ferry.run(arguments + ["--json"], in: dir.path).stdout)
            let none: JSON = ["written": 0, "deleted": 0]
            let (toA, toB) = (again["twoWay"]?["toA"], again["twoWay"]?["toB"])
            #expect(toA == none)
            #expect(toB == none)
            finals.append(sideA)
        }
        #expect(hits >= 1, "no kill landed while the run was going")
        let expectedCount = 4_000 - 200 + 400 + 10_000
        #expect(finals[0].count == expectedCount)
        #expect(finals[0] == finals[1])
    }

    // MARK: dry run, ferry run's status and metrics

    @Test func dryRunPlansBothWaysAndChangesNothing() async throws {
        let dir = try TempDir()
        let a = try SQLiteSide(dir.file("a.db"))
        let b = try SQLiteSide(dir.file("b.db"))
        try await a.put("r1", ["id": "r1", "name": "base"])
        var j = job(dir, a, b, .manual)
        try await runUntilQuiet(j)
        try await a.put("r1", ["id": "r1", "name": "a"])
        try await b.put("r1", ["id": "r1", "name": "b"])
        try await a.put("r2", ["id": "r2", "name": "new on a"])
        try await b.put("r3", ["id": "r3", "name": "new on b"])
        j.dryRun = true
        let report = try await SyncEngine().run(j)
        #expect(report.twoWay?.writtenToB == 1 && report.twoWay?.writtenToA == 1 && report.twoWay?.manual == 1)
        #expect(try await a.all()["r3"] == nil)
        #expect(try await b.all()["r2"] == nil)
        #expect(try StateStore(path: dir.file("state/state.db")).conflicts(job: "tw").isEmpty)
    }

    @Test func ferryRunShowsConflictsInStatusAndMetrics() async throws {
        let (dir, b, running) = try await conflictingRun(job: "phone", policy: "a-wins", a: "a", b: "b")
        let port = try running.port("status at")
        // The rows land before the run is counted: wait for the status to show a finished run.
        var status: JSON?
        let deadline = Date().addingTimeInterval(20)
        while Date() < deadline {
            let (code, body) = try await jsonRequest(.GET, "http://127.0.0.1:\(port)/status")
            #expect(code == 200)
            status = body
            if (body?["jobs"]?.arrayValue?.first?["runs"]?.intValue ?? 0) >= 1 { break }
            try await Task.sleep(nanoseconds: 50_000_000)
        }
        #expect(try SQLiteSideReader.name(b.path, "r1") == "a")
        let job = status?["jobs"]?.arrayValue?.first
        #expect(job?["totals"]?["conflicts_a_won"] == 1, "\(status?.serialized() ?? "")")
        let metrics = try await getText("http://127.0.0.1:\(port)/metrics")
        #expect(metrics.contains(#"ferry_job_conflicts_total{job="phone",outcome="a_won"} 1"#), "\(metrics)")
        #expect(metrics.contains(#"ferry_job_conflicts_total{job="phone",outcome="manual"} 0"#), "\(metrics)")
        #expect(running.terminate() == 0, "\(running.stderr)")
        withExtendedLifetime(dir) {}  // the folder the run works in lives until it ended
    }
}

extension TwoWayTests {
    /// Two SQLite sides synced once as `job`, then `r1` changed on both (its name to `a` and `b`),
    /// and `ferry run` of that job every second with `on_conflict: policy` and a status port.
    func conflictingRun(job: String, policy: String, a nameA: String, b nameB: String) async throws -> (TempDir, SQLiteSide, LongRunning) {
        let dir = try TempDir()
        let a = try SQLiteSide(dir.file("a.db"))
        let b = try SQLiteSide(dir.file("b.db"))
        try await a.put("r1", ["id": "r1", "name": "base"])
        let sync = ["sync", a.url, b.url, "--two-way", "--job", job]
        await #expect(try Ferry.run(sync, in: dir.path).status == 0)
        try await a.put("r1", ["id": "r1", "name": .string(nameA)])
        try await b.put("r1", ["id": "r1", "name": .string(nameB)])
        try Self.writeJobsFile(dir, a, b, schedule: "every 1s", job: job, policy: policy)
        return (dir, b, LongRunning(["run", "ferry.yml", "--status-port", "0"], in: dir))
    }

    /// `ferry run`'s page lists a two-way job's unsettled conflicts (escaped), read after its run.
    @Test func ferryRunsPageListsOpenConflicts() async throws {
        let (dir, _, running) = try await conflictingRun(job: "desk", policy: "manual", a: "<b>from a</b>", b: "from b")
        let port = try running.port("status at")
        var page = ""
        let deadline = Date().addingTimeInterval(60)
        while Date() < deadline {
            page = try await getText("http://127.0.0.1:\(port)/")
            if page.contains("<h3>Conflicts</h3>") && page.contains("r1") { break }
            try await Task.sleep(nanoseconds: 100_000_000)
        }
        #expect(page.contains("<h3>Conflicts</h3>") && page.contains("<td>r1</td><td>open</td>"), "\(page)")
        #expect(page.contains("&lt;b&gt;from a&lt;/b&gt;") && !page.contains("<b>from a"), "escaped")
        #expect(page.contains("from b") && page.contains("ferry conflicts resolve"))
        #expect(running.terminate() == 0, "\(running.stderr)")
        withExtendedLifetime(dir) {}
    }

    /// A two-way run whose server side's checkpoint the tombstone purge passed (410, errno 124)
    /// reads that side whole instead of stopping: the deletes the feed lost still reach the
    /// other side, the other side's changes still come back, and the next run is incremental.
    @Test func serverSidePastTheHorizonIsReadWholeAndTheRunGoesOn() async throws {
        let dir = try TempDir()
        let server = try ServeProcess(extra: ["--tombstone-max-count", "1"], environment: ["FERRY_TOMBSTONE_PURGE_INTERVAL": "1"])
        let a = try await ServerSide(server)
        let b = try SQLiteSide(dir.file("b.db"))
        for i in 0..<10 { try await a.put("r\(i)", ["name": .string("n\(i)"), "n": .int(Int64(i))]) }
        let job = job(dir, a, b, .aWins)
        try await runUntilQuiet(job)
        #expect(try await b.all().count == 10)
        let records = "/buckets/main/collections/users/records"
        let checkpoint = try #require(try await server.request(.GET, records + "?_sort=-last_modified&_limit=1").1?["data"]?[0]?["last_modified"]?.intValue)
        // While the run is away: three deletes and an update on the server, a create on the table;
        // the purge keeps one tombstone, so the feed from the checkpoint is refused.
        var deleted: [Int64] = []
        for id in ["r1", "r2", "r3"] {
            deleted.append(try #require(try await server.request(.DELETE, records + "/" + id).1?["data"]?["last_modified"]?.intValue))
        }
        try await a.put("r4", ["name": "changed on a", "n": 40])
        try await b.put("r10", ["name": "new on b", "n": 10])
        #expect(try await RetentionSyncTests.horizonPasses(checkpoint, on: server, expected: deleted[1]) == deleted[1])

        var notices: [String] = []
        let engine = SyncEngine()
        engine.onNotice = { notices.append($0) }
        let report = try await engine.run(job)
        #expect(report.resynced, "\(report.json.serialized())")
        #expect(notices.contains { $0.contains("purged tombstones") && $0.contains("whole") }, "\(notices)")
        let t = try #require(report.twoWay)
        #expect(t.deletedInB == 3 && t.writtenToB == 1 && t.writtenToA == 1, "\(t.json.serialized())")
        let expected = try await a.all()
        #expect(try await b.all() == expected)
        #expect(expected.count == 8 && expected["r1"] == nil && expected["r4"]?["name"] == "changed on a" && expected["r10"]?["name"] == "new on b")
        // The next run reads the feed from where the whole read ended: nothing to do, no resync.
        let next = try await SyncEngine().run(job)
        #expect(!next.resynced && Self.quiet(next), "\(next.json.serialized())")
        withExtendedLifetime(dir) {}
    }
}

/// A synchronous read of one record's name (for polling from a test's condition).
enum SQLiteSideReader {
    static func name(_ path: String, _ id: String) throws -> String? {
        let queue = try DatabaseQueue(path: path)
        defer { try? queue.close() }
        return try queue.read { try String.fetchOne($0, sql: "SELECT name FROM users WHERE id = ?", arguments: [id]) }
    }
}
