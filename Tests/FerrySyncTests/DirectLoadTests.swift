import FerryCore
import FerryTestSupport
import Foundation
import GRDB
import Testing
@testable import FerrySync

/// A full run from a file into SQLite writes each line straight into the table's statements
/// (SQLiteWriter+Load.swift). Each test loads the same file a second time through the engine's
/// record path (a transform that changes nothing turns the direct path off) and expects the same
/// rows, types, counts and rejections.
@Suite struct DirectLoadTests {
    func job(_ dir: TempDir, _ source: String, _ target: String) -> SyncJob {
        var job = SyncJob(source: source, target: target)
        job.mode = .full
        job.statePath = dir.file("state/state.db")
        job.batchSize = 3  // batches end in the middle of every kind of line below
        return job
    }

    /// Every row with each value's storage class, in key order.
    func dump(_ path: String, _ table: String) throws -> [String] {
        let queue = try DatabaseQueue(path: path)
        defer { try? queue.close() }
        return try queue.read { db in
            let columns = try Row.fetchAll(db, sql: "PRAGMA table_info(\(table))").map { $0["name"] as String }
            let typed = columns.map { "typeof(\"\($0)\") || ':' || coalesce(quote(\"\($0)\"), '')" }.joined(separator: " || '|' || ")
            return try String.fetchAll(db, sql: "SELECT \(typed) FROM \(table) ORDER BY id")
        }
    }

    func declared(_ path: String, _ table: String) throws -> [String] {
        let queue = try DatabaseQueue(path: path)
        defer { try? queue.close() }
        return try queue.read { db in
            try Row.fetchAll(db, sql: "PRAGMA table_info(\(table))").map { ($0["name"] as String) + ":" + ($0["type"] as String) }
        }
    }

    /// Loads `input` directly and through records, twice each (the second run updates), and
    /// compares. Returns the direct path's two reports.
    func compare(_ dir: TempDir, input: String, file: String, prepare: ((String) throws -> Void)? = nil) async throws -> (SyncReport, SyncReport) {
        try input.write(toFile: dir.file(file), atomically: true, encoding: .utf8)
        var results: [(SyncReport, SyncReport, [String], [String], Int)] = []
        for direct in [true, false] {
            let db = dir.file(direct ? "direct.db" : "records.db")
            try prepare?(db)
            var j = job(dir, "file:\(dir.file(file))", "sqlite:\(db)#users")
            j.deadLetterPath = dir.file(direct ? "direct.dead" : "records.dead")
            if !direct { j.transform.rename = ["no such field": "still none"] }
            let first = try await SyncEngine().run(j)
            let second = try await SyncEngine().run(j)
            let dead = (try? String(contentsOfFile: j.deadLetterPath!, encoding: .utf8))?.split(separator: "\n").count ?? 0
            results.append((first, second, try dump(db, "users"), try declared(db, "users"), dead))
        }
        let (direct, records) = (results[0], results[1])
        Self.expectSameCounts([(direct.0, records.0), (direct.1, records.1)])
        #expect(direct.2 == records.2)
        #expect(direct.3 == records.3)
        #expect(direct.4 == records.4)
        return (direct.0, direct.1)
    }

    /// Each pair of runs (direct, through records) read, created, updated and rejected as many
    /// records, and the one through records took none directly.
    static func expectSameCounts(_ pairs: [(SyncReport, SyncReport)], sourceLocation: SourceLocation = #_sourceLocation) {
        for (a, b) in pairs {
            #expect(a.read == b.read && a.created == b.created && a.updated == b.updated && a.failed == b.failed,
                    "direct: read \(a.read) created \(a.created) updated \(a.updated) failed \(a.failed); records: read \(b.read) created \(b.created) updated \(b.updated) failed \(b.failed)", sourceLocation: sourceLocation)
            #expect(b.loadedDirectly == 0, sourceLocation: sourceLocation)
        }
    }

    @Test func jsonLinesLoadTheSameDirectlyAsThroughRecords() async throws {
        let dir = try TempDir()
        // The first batch (3 lines) creates the table; later lines bring escapes, other scripts,
        // nested values, nulls, a repeated member, a repeated key, a whole-number double key, a
        // record without a key, an empty key, a new field, members in another order, a blank line.
        let input = #"""
            {"id":"a","name":"ada","age":36,"score":1.5,"ok":true,"tags":["x"]}
            {"id":"b","name":"bob","age":null,"score":2,"ok":false}
            {"id":"c","name":"cé","age":40,"tags":{"z":1,"a":[null,2]}}
            {"age":41,"id":"d","name":"d\"quote\" \\ \u00e9\n","score":-0.0}
              
            {"id":"a","name":"ada again","name":"ada twice","age":37}
            {"id":"e","name":"","score":1e2,"ok":null,"tags":[]}
            {"id":"d\u0066","name":"escaped key"}
            {"id":7.0,"name":"double key"}
            {"name":"no key"}
            {"id":"","name":"empty key"}
            {"id":null,"name":"null key"}
            {"id":"f","extra":"a new column","nested":{"k":"v"}}
            {"id":8,"name":"integer key","age":12345678901234567}
            {"id":"g","name":"twice","id":"h"}

            """#
        let (first, second) = try await compare(dir, input: input, file: "in.jsonl")
        #expect(first.read == 14 && first.failed == 3)
        #expect(first.loadedDirectly > 0 && first.loadedDirectly < first.read)
        // Once the table has every column, only the rejected lines and the double key (which the
        // record path converts) leave the direct path.
        #expect(second.loadedDirectly == second.read - second.failed - 1)
        #expect(second.updated == 11 && second.created == 0)
    }

    @Test func csvLoadsTheSameDirectlyAsThroughRecords() async throws {
        let dir = try TempDir()
        let input = """
            id,name,age,score,ok,tags
            a,ada,36,1.5,true,"[""x""]"
            b,bob,,2,false,
            c,"cé, with a comma",040,1.50,TRUE,"{""z"":1}"
            d,"multi
            line",41,,,
            a,ada again,37,,,
            ,no key,1,,,
            "7",quoted key,2,,,
            8,integer key,3,,,

            """
        let (first, second) = try await compare(dir, input: input, file: "in.csv")
        #expect(first.read == 8 && first.failed == 1)
        #expect(first.loadedDirectly > 0)
        #expect(second.loadedDirectly == second.read - second.failed)
    }

    /// The cells the direct path types from their bytes (integers at and past Int64's range,
    /// `-0`, booleans, quoted look-alikes, empty quoted cells, JSON, other scripts, a NUL),
    /// with CRLF line ends and, in a second file, a byte order mark (which stays in the first
    /// header name on both paths: a column named "\u{FEFF}n").
    @Test(arguments: [false, true])
    func csvEdgeCellsLoadTheSameDirectlyAsThroughRecords(bom: Bool) async throws {
        let dir = try TempDir()
        let rows = [
            "n,id,flag,text,json",
            "9223372036854775807,a,true,\"42\",[1]",
            "-9223372036854775808,b,false,\"true\",\"{\"\"k\"\":[1]}\"",
            "9223372036854775808,c,True,\"\",{x",
            "-0,d,,\"Zoë, 日本\",\"[\"",
            "-,e,x,plain,[]",
            "1e300,f,1,\"a\u{0}b\",",
            "00,\"g\",0,-7,1.50",
            "2026-12-05,h,,\"line\nbreak\",-2.5e-300",
        ]
        let input = (bom ? "\u{FEFF}" : "") + rows.joined(separator: "\r\n") + "\r\n"
        let (first, second) = try await compare(dir, input: input, file: "in.csv")
        #expect(first.read == 8 && first.failed == 0)
        #expect(second.loadedDirectly == second.read)
        let columns = try declared(dir.file("direct.db"), "users").map { $0.prefix { $0 != ":" } }
        #expect(columns.contains(bom ? "\u{FEFF}n" : "n"))
    }

    @Test func aTableFerryDidNotMakeRefusesUnknownFieldsAndConstraintsOnBothPaths() async throws {
        let dir = try TempDir()
        let input = """
            {"id":"a","username":"ada","age":36}
            {"id":"b","username":"bob","address":"no column for it"}
            {"id":"c","username":null,"age":1}
            {"id":"d","username":"ada","age":2}
            {"id":"e","username":"eve","age":"not a number"}
            {"id":"a","username":"ada","age":38}

            """
        let (first, second) = try await compare(dir, input: input, file: "in.jsonl") { path in
            let queue = try DatabaseQueue(path: path)
            try queue.write { db in
                // NOT NULL and a second unique column: the table itself refuses some records.
                try db.execute(sql: "CREATE TABLE users (id TEXT PRIMARY KEY, username TEXT NOT NULL UNIQUE, age INTEGER)")
            }
            try queue.close()
        }
        #expect(first.failed == 3 && first.created == 2 && first.updated == 1)
        #expect(first.loadedDirectly == 3)
        #expect(second.failed == 3)
    }
}
