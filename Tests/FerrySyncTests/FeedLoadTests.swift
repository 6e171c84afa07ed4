import FerryCore
import FerryTestSupport
import Foundation
import GRDB
import NIOHTTP1
import Testing
@testable import FerrySync

/// An incremental run from a server into SQLite writes each record of a page straight from its
/// text (SQLiteWriter+Feed.swift). Each test reads the same server a second time through the
/// engine's record path (a transform that changes nothing turns the direct path off) and expects
/// the same rows, column types, counts, rejections and checkpoints, round after round.
@Suite struct FeedLoadTests {
    let records = "/buckets/main/collections/users/records/"

    /// Seeds the server's collection from JSON Lines.
    func seed(_ server: ServeProcess, _ dir: TempDir, _ lines: String) async throws {
        try lines.write(toFile: dir.file("seed.jsonl"), atomically: true, encoding: .utf8)
        var job = SyncJob(source: "file:\(dir.file("seed.jsonl"))", target: server.collection())
        job.targetAuth = "alice:pw"
        job.statePath = dir.file("seed/state.db")
        let report = try await SyncEngine().run(job)
        #expect(report.failed == 0)
    }

    /// One incremental run into `direct.db` and one into `records.db`; the two must agree.
    /// Returns the direct run's report.
    @discardableResult
    func round(_ server: ServeProcess, _ dir: TempDir, batchSize: Int? = 3) async throws -> SyncReport {
        var results: [(SyncReport, [String], [String], Int)] = []
        for direct in [true, false] {
            let name = direct ? "direct" : "records"
            var job = SyncJob(source: server.collection(), target: "sqlite:\(dir.file(name + ".db"))#users")
            job.mode = .incremental
            job.sourceAuth = "alice:pw"
            job.statePath = dir.file("\(name)/state.db")
            job.deadLetterPath = dir.file("\(name).dead")
            job.batchSize = batchSize  // pages of 3: the first creates the table, later ones bring new fields
            if !direct { job.transform.rename = ["no such field": "still none"] }
            let report = try await SyncEngine().run(job)
            let dead = (try? String(contentsOfFile: job.deadLetterPath!, encoding: .utf8))?.split(separator: "\n").count ?? 0
            results.append((report, try dump(dir.file(name + ".db")), try declared(dir.file(name + ".db")), dead))
        }
        let (a, b) = (results[0].0, results[1].0)
        #expect(a.read == b.read && a.created == b.created && a.updated == b.updated && a.deleted == b.deleted
                    && a.alreadyGone == b.alreadyGone && a.failed == b.failed,
                "direct: \(a.json.serialized()); records: \(b.json.serialized())")
        #expect(a.cursorAfter == b.cursorAfter && a.cursorAfter != nil)
        #expect(b.loadedDirectly == 0)
        #expect(results[0].1 == results[1].1)
        #expect(results[0].2 == results[1].2)
        #expect(results[0].3 == results[1].3)
        return a
    }

    /// Every row with each value's storage class, in key order.
    func dump(_ path: String) throws -> [String] {
        let queue = try DatabaseQueue(path: path)
        defer { try? queue.close() }
        return try queue.read { db in
            let columns = try Row.fetchAll(db, sql: "PRAGMA table_info(users)").map { $0["name"] as String }
            guard !columns.isEmpty else { return [] }
            let typed = columns.map { "typeof(\"\($0)\") || ':' || coalesce(quote(\"\($0)\"), '')" }.joined(separator: " || '|' || ")
            return try String.fetchAll(db, sql: "SELECT \(typed) FROM users ORDER BY id")
        }
    }

    func declared(_ path: String) throws -> [String] {
        let queue = try DatabaseQueue(path: path)
        defer { try? queue.close() }
        return try queue.read { db in
            try Row.fetchAll(db, sql: "PRAGMA table_info(users)").map { ($0["name"] as String) + ":" + ($0["type"] as String) }
        }
    }

    @Test func aFeedLoadsTheSameDirectlyAsThroughRecords() async throws {
        let server = try ServeProcess()
        let dir = try TempDir()
        // Escapes, other scripts, nested values, nulls, a whole-number double, an empty string,
        // new fields after the first page, and a record deleted before the first run (a tombstone).
        try await seed(server, dir, #"""
            {"id":"a","name":"ada","age":36,"score":1.5,"ok":true,"tags":["x"]}
            {"id":"b","name":"bob","age":null,"score":2,"ok":false}
            {"id":"c","name":"cé","age":40,"tags":{"z":1,"a":[null,2]}}
            {"id":"d","name":"d\"quote\" \\ \u00e9\n","score":-0.5}
            {"id":"e","name":"","score":1e2,"ok":null,"tags":[]}
            {"id":"f","name":"日本","extra":"a new field"}
            {"id":"g","age":7}
            {"id":"h","name":"gone before the first run"}

            """#)
        _ = try await server.request(.DELETE, records + "h")
        let first = try await round(server, dir)
        #expect(first.read == 8 && first.created == 7 && first.alreadyGone == 1)
        #expect(first.loadedDirectly > 0)

        // Updates, deletes, a new record with another new field, one record changed twice.
        _ = try await server.request(.PATCH, records + "a", body: ["data": ["age": 37]])
        _ = try await server.request(.PATCH, records + "c", body: ["data": ["tags": .null, "name": "cé ☃"]])
        _ = try await server.request(.PATCH, records + "c", body: ["data": ["age": 41]])
        _ = try await server.request(.DELETE, records + "b")
        _ = try await server.request(.PUT, records + "i", body: ["data": ["name": "new", "more": ["k": [1, 2]]]])
        let second = try await round(server, dir)
        #expect(second.read == 4 && second.updated == 2 && second.deleted == 1 && second.created == 1)
        #expect(second.loadedDirectly > 0)

        let third = try await round(server, dir)
        #expect(third.read == 0)
    }

    /// Tombstones go straight to the table's delete too: a row deleted, one created and deleted
    /// between two runs (already gone), counted and checkpointed as the engine's path does.
    @Test func tombstonesAreDeletedDirectly() async throws {
        let server = try ServeProcess()
        let dir = try TempDir()
        try await seed(server, dir, """
            {"id":"a","n":1}
            {"id":"b","n":2}
            {"id":"c","n":3}
            {"id":"d","n":4}
            {"id":"e","n":5}

            """)
        #expect(try await round(server, dir).created == 5)
        _ = try await server.request(.DELETE, records + "b")
        _ = try await server.request(.DELETE, records + "d")
        _ = try await server.request(.PUT, records + "z", body: ["data": ["n": 26]])
        _ = try await server.request(.DELETE, records + "z")
        _ = try await server.request(.PATCH, records + "a", body: ["data": ["n": 10]])
        let second = try await round(server, dir)
        #expect(second.read == 4 && second.deleted == 2 && second.alreadyGone == 1 && second.updated == 1)
        #expect(second.loadedDirectly == 4)
        #expect(try await round(server, dir).read == 0)
    }

    /// With no `--batch-size`, the first page has the target's batch (1,000 records: a new table's
    /// columns are decided on it, as on the engine's path) and later pages as many as the server
    /// gives; the result is the engine's.
    @Test func pagesLargerThanTheTargetsBatchLoadTheSame() async throws {
        let server = try ServeProcess()
        let dir = try TempDir()
        var lines = ""
        for i in 0..<2_500 {
            // A field that first appears after the first page, and one whose type changes there.
            let late = i >= 1_500 ? #","late":\#(i)"# : ""
            let mixed = i < 1_200 ? "\(i)" : "\"t\(i)\""
            lines += #"{"id":"r\#(i)","n":\#(i),"mixed":\#(mixed)\#(late)}"# + "\n"
        }
        try await seed(server, dir, lines)
        let first = try await round(server, dir, batchSize: nil)
        #expect(first.read == 2_500 && first.created == 2_500 && first.loadedDirectly >= 1_000)
        for i in stride(from: 0, to: 2_500, by: 500) {
            _ = try await server.request(.DELETE, records + "r\(i)")
            _ = try await server.request(.PATCH, records + "r\(i + 1)", body: ["data": ["n": -1]])
        }
        let second = try await round(server, dir, batchSize: nil)
        #expect(second.read == 10 && second.deleted == 5 && second.updated == 5 && second.loadedDirectly == 10)
    }

    @Test func laterPagesAreAsLargeAsTheServerGives() throws {
        let server = try KintoEndpoint(url: "http://localhost:1/v1/buckets/b/collections/c", options: EndpointOptions(), client: .ferrySync)
        #expect(server.rawPageSize(batchSize: 1_000) == KintoEndpoint.feedPageSize)
        server.maxFetchSize = 2_500
        #expect(server.rawPageSize(batchSize: 1_000) == 2_500)
        #expect(server.rawPageSize(batchSize: 4_000) == 4_000)
        server.maxFetchSize = 1_000_000
        #expect(server.rawPageSize(batchSize: 1_000) == KintoEndpoint.feedPageSize)
    }

    /// What the direct path takes of a page (Kinto spaces its JSON), and what it leaves to the
    /// engine's reader: a repeated `data` (a parse keeps the last), a record without `id` or
    /// `last_modified`, an element that is not an object, a body that is not JSON.
    @Test func pagesAreSplitAsTheEnginesReaderReadsThem() throws {
        let body = Array(#" {"data": [ {"id": "a", "last_modified": 5, "x": [1, {"y": "]\"}"}]} , {"deleted": true, "id": "b", "last_modified": 7.0} ] } "#.utf8)
        let (elements, tombstones, last) = try #require(KintoEndpoint.Feed.split(body, since: 1))
        #expect(elements.map { String(decoding: body[$0], as: UTF8.self) }
                    == [#"{"id": "a", "last_modified": 5, "x": [1, {"y": "]\"}"}]}"#, #"{"deleted": true, "id": "b", "last_modified": 7.0}"#])
        #expect(tombstones == [false, true])
        #expect(last == 7)
        #expect(KintoEndpoint.Feed.split(Array(#"{"data":[]}"#.utf8), since: 3)?.2 == 3)
        for text in [#"{"data":[{"id":"a","last_modified":1}],"data":[]}"#, #"{"data":[{"id":"a"}]}"#,
                     #"{"data":[{"last_modified":2}]}"#, #"{"data":[1]}"#, #"{"data":[{"id":"a","last_modified":"2"}]}"#, "<html>"] {
            #expect(KintoEndpoint.Feed.split(Array(text.utf8), since: 0) == nil, "\(text)")
        }
    }

    @Test func aTableFerryDidNotMakeRefusesTheSameRecordsOnBothPaths() async throws {
        let server = try ServeProcess()
        let dir = try TempDir()
        for name in ["direct", "records"] {
            let queue = try DatabaseQueue(path: dir.file(name + ".db"))
            try await queue.write { db in
                // A second unique column and NOT NULL: the table itself refuses some records.
                try db.execute(sql: "CREATE TABLE users (id TEXT PRIMARY KEY, username TEXT NOT NULL UNIQUE, age INTEGER)")
            }
            try queue.close()
        }
        try await seed(server, dir, """
            {"id":"a","username":"ada","age":36}
            {"id":"b","username":"bob","address":"no column for it"}
            {"id":"c","age":1}
            {"id":"d","username":"ada","age":2}
            {"id":"e","username":"eve","age":"not a number"}
            {"id":"f","username":"fay","age":null}

            """)
        let first = try await round(server, dir)
        #expect(first.failed == 3 && first.created == 3)
        #expect(first.loadedDirectly == 3)
        _ = try await server.request(.PATCH, records + "e", body: ["data": ["username": "ada"]])
        _ = try await server.request(.PATCH, records + "f", body: ["data": ["age": 30]])
        let second = try await round(server, dir)
        #expect(second.failed == 1 && second.updated == 1)
    }
}
