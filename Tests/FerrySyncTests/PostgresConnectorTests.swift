import FerryPostgres
import FerryCore
import FerryTestSupport
import Foundation
import GRDB
import Testing
@testable import FerrySync

/// `postgres://…#TABLE` as a source and a target, through the real `ferry` binary against a
/// throwaway PostgreSQL (``PostgresCluster``): the same record model and modes as SQLite.
@Suite(.serialized, .enabled(if: PostgresCluster.enabled, "PostgreSQL is not installed: its tests are skipped (CI sets FERRY_REQUIRE_POSTGRES=1 and runs them)"))
struct PostgresConnectorTests {
    let cluster: PostgresCluster

    init() throws {
        cluster = try PostgresCluster.shared()
    }

    /// A new database: its URL (without a table) and its name.
    func database() throws -> (url: String, name: String) {
        let url = try cluster.createDatabase("sync")
        return (url, String(url.split(separator: "/").last!))
    }

    /// A table's rows as one line of text, in key order: to prove a failed run left it alone.
    func contents(_ database: String, _ table: String) throws -> String {
        try cluster.psql(database, "SELECT coalesce(string_agg(t::text, '|' ORDER BY t::text), '') FROM \(table) t")
    }

    /// The tables of a database (Ferry's own included).
    func tables(_ database: String) throws -> [String] {
        try cluster.psql(database, "SELECT tablename FROM pg_tables WHERE schemaname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1")
            .split(separator: "\n").map(String.init)
    }

    /// `ferry sync … --json`: the report, after checking the exit status.
    @discardableResult
    func sync(_ arguments: [String], in dir: TempDir, status: Int32 = 0, sourceLocation: SourceLocation = #_sourceLocation) async throws -> JSON {
        let result = try await Ferry.run(["sync"] + arguments + ["--json"], in: dir.path)
        #expect(result.status == status, "\(result.stderr)", sourceLocation: sourceLocation)
        return (try? JSON.parse(result.stdout)) ?? .null
    }

    func verifyEqual(_ source: String, _ target: String, count: Int, in dir: TempDir, sourceLocation: SourceLocation = #_sourceLocation) async throws {
        let result = try await Ferry.run(["verify", source, target, "--json"], in: dir.path)
        #expect(result.status == 0, "\(result.stdout) \(result.stderr)", sourceLocation: sourceLocation)
        let report = try JSON.parse(result.stdout)
        #expect(report["equal"] == true && report["sourceCount"] == .int(Int64(count)) && report["targetCount"] == .int(Int64(count)),
                "\(report.serialized())", sourceLocation: sourceLocation)
    }

    /// A source table `users` (id text primary key, username, age integer, updated_at bigint,
    /// active boolean, profile jsonb) with `count` rows; ten rows share each updated_at.
    func makeSourceTable(_ database: String, count: Int) throws {
        try cluster.psql(database, """
            CREATE TABLE users (id text PRIMARY KEY, username text NOT NULL, age integer, updated_at bigint NOT NULL,
                                active boolean, profile jsonb);
            INSERT INTO users SELECT 'u' || lpad(i::text, 7, '0'), 'user' || i, 18 + i % 60, 1000000 + i / 10,
                                     i % 3 = 0, CASE WHEN i % 2 = 0 THEN jsonb_build_object('city', 'C' || i, 'tags', jsonb_build_array(i, 'x')) END
            FROM generate_series(0, \(count - 1)) AS i;
            """)
    }

    /// A target table `users` whose trigger fails the statement that inserts `id` (an error that
    /// is not about one record, so its whole batch fails); drop it with `DROP TRIGGER refuse ON users`.
    func makeTableRefusing(_ id: String, in database: String) throws {
        try cluster.psql(database, """
            CREATE TABLE users (id text PRIMARY KEY, username text, age integer, address text, updated_at bigint);
            CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN IF NEW.id = '\(id)' THEN RAISE EXCEPTION 'refused by a trigger'; END IF; RETURN NEW; END $$;
            CREATE TRIGGER refuse BEFORE INSERT ON users FOR EACH ROW EXECUTE FUNCTION refuse();
            """)
    }

    // MARK: full, replay, incremental, diff

    @Test func fileToPostgresFullCreatesATypedTableAndAReplayDuplicatesNothing() async throws {
        let dir = try TempDir()
        let db = try database()
        try writeUsers(dir.file("users.jsonl"), count: 2500)
        let target = db.url + "#users"
        let first = try await sync(["file:users.jsonl", target], in: dir)
        #expect(first["created"] == 2500 && first["failed"] == 0, "\(first.serialized())")
        let types = try cluster.psql(db.name, """
            SELECT string_agg(column_name || ' ' || data_type, ', ' ORDER BY column_name) FROM information_schema.columns WHERE table_name = 'users'
            """)
        #expect(types == "address text, age bigint, id text, updated_at bigint, username text")
        #expect(try cluster.psql(db.name, "SELECT count(*) FROM pg_index WHERE indrelid = 'users'::regclass AND indisprimary") == "1")

        let replay = try await sync(["file:users.jsonl", target], in: dir)
        #expect(replay["created"] == 0 && replay["updated"] == 2500, "\(replay.serialized())")
        #expect(try cluster.psql(db.name, "SELECT count(*), count(DISTINCT id) FROM users") == "2500|2500")
        try await verifyEqual("file:users.jsonl", target, count: 2500, in: dir)

        // New fields grow the table Ferry made; nested values go to jsonb, mixed types too.
        try #"""
            {"id":"u0000001","username":"ada","tags":["a",{"b":1}],"score":1.5,"flag":true,"mixed":1}
            {"id":"n1","username":"new","score":2,"mixed":"two"}

            """#.write(toFile: dir.file("more.jsonl"), atomically: true, encoding: .utf8)
        let more = try await sync(["file:more.jsonl", target], in: dir)
        #expect(more["created"] == 1 && more["updated"] == 1, "\(more.serialized())")
        let added = try cluster.psql(db.name, """
            SELECT string_agg(column_name || ' ' || data_type, ', ' ORDER BY column_name) FROM information_schema.columns
            WHERE table_name = 'users' AND column_name IN ('flag', 'mixed', 'score', 'tags')
            """)
        #expect(added == "flag boolean, mixed jsonb, score double precision, tags jsonb")
        #expect(try cluster.psql(db.name, "SELECT tags->1->>'b', age IS NULL FROM users WHERE id = 'u0000001'") == "1|t")
    }

    /// A table Ferry creates leaves half of each page free (`fillfactor = 50`), so a changed row's
    /// new version stays on the row's page (a HOT update: no new index entry); a table Ferry did not
    /// create keeps its own setting.
    @Test func tablesFerryCreatesLeaveRoomForUpdatesOnTheRowsPage() async throws {
        let dir = try TempDir()
        let db = try database()
        try writeUsers(dir.file("users.jsonl"), count: 2000)
        let target = db.url + "#users"
        await #expect(try sync(["file:users.jsonl", target], in: dir)["created"] == 2000)
        func options(_ table: String) throws -> String {
            try cluster.psql(db.name, "SELECT coalesce(array_to_string(reloptions, ','), '') FROM pg_class WHERE oid = '\(table)'::regclass")
        }
        #expect(try options("users") == "fillfactor=50")
        /// Each row's page, in key order.
        func pages() throws -> String {
            try cluster.psql(db.name, "SELECT string_agg(id || '@' || (ctid::text::point)[0]::text, ',' ORDER BY id) FROM users")
        }
        let before = try pages()
        #expect(before.split(separator: ",").map { $0.split(separator: "@")[1] }.contains("1"), "2,000 rows should fill more than one page")

        // Every row changed (the same length: "Main" becomes "Mall").
        let changed = try String(contentsOfFile: dir.file("users.jsonl"), encoding: .utf8)
            .replacingOccurrences(of: " Main Street", with: " Mall Street")
        try changed.write(toFile: dir.file("changed.jsonl"), atomically: true, encoding: .utf8)
        let update = try await sync(["file:changed.jsonl", target], in: dir)
        #expect(update["updated"] == 2000 && update["created"] == 0 && update["failed"] == 0, "\(update.serialized())")
        #expect(try cluster.psql(db.name, "SELECT count(*) FROM users WHERE address LIKE '% Mall Street'") == "2000")
        #expect(try pages() == before, "a changed row left its page: the update was not HOT")

        // A job may fill the pages of the tables Ferry creates otherwise (a table loaded once, never updated: 100).
        await #expect(try sync(["file:users.jsonl", db.url + "#packed", "--fill-factor", "100"], in: dir)["created"] == 2000)
        #expect(try options("packed") == "fillfactor=100")

        // Tables the user made: their settings stay as they are.
        try cluster.psql(db.name, """
            CREATE TABLE plain (id text PRIMARY KEY, username text, age bigint, address text, updated_at bigint);
            CREATE TABLE tuned (id text PRIMARY KEY, username text, age bigint, address text, updated_at bigint) WITH (fillfactor = 90);
            """)
        await #expect(try sync(["file:users.jsonl", db.url + "#plain"], in: dir)["created"] == 2000)
        await #expect(try sync(["file:users.jsonl", db.url + "#tuned"], in: dir)["created"] == 2000)
        #expect(try options("plain") == "")
        #expect(try options("tuned") == "fillfactor=90")
    }

    /// An upsert leaves a row that already holds the record's values as it is (no new row version:
    /// its `xmin` stays), still counted as updated; a row whose values differ, even only in how a
    /// numeric is written or in a NULL, is rewritten.
    // MARK: the direct load (PostgresWriter+Load.swift)

    /// A full run from a JSON Lines file into `table` through the engine (in this process), in
    /// batches of 3: straight from the lines' bytes, or through records (a rename of a field no
    /// line has turns the direct path off).
    func load(_ dir: TempDir, _ file: String, into url: String, direct: Bool, dead: String) async throws -> SyncReport {
        var job = SyncJob(source: "file:" + dir.file(file), target: url)
        job.mode = .full
        job.statePath = dir.file("state/state.db")
        job.deadLetterPath = dir.file(dead)
        job.batchSize = 3
        if !direct { job.transform.rename = ["no such field": "still none"] }
        return try await SyncEngine().run(job)
    }

    /// The same file into two tables, once straight from the bytes and once through records,
    /// twice each (the second run updates): the same rows (every column's text, in key order), the
    /// same counts and the same rejections, into tables made beforehand (`premade`) or made by Ferry.
    /// - Returns: the direct path's two reports.
    func compareBothWays(_ dir: TempDir, _ file: String, premade: Bool, sourceLocation: SourceLocation = #_sourceLocation) async throws -> (SyncReport, SyncReport) {
        let db = try database()
        for table in ["direct", "records"] where premade {
            try cluster.psql(db.name, """
                CREATE TABLE \(table) (id text PRIMARY KEY, s text, v varchar(10), n bigint, i integer, f double precision,
                                       num numeric, b boolean, j jsonb, js json, arr text[], d date, u uuid)
                """)
        }
        var results: [(SyncReport, SyncReport, String, Int)] = []
        for direct in [true, false] {
            let table = direct ? "direct" : "records"
            let url = db.url + "#" + table
            let first = try await load(dir, file, into: url, direct: direct, dead: table + ".dead")
            let second = try await load(dir, file, into: url, direct: direct, dead: table + ".dead")
            let rejected = (try? String(contentsOfFile: dir.file(table + ".dead"), encoding: .utf8))?.split(separator: "\n").count ?? 0
            let columns = try cluster.psql(db.name, """
                SELECT string_agg(column_name || ' ' || data_type, ', ' ORDER BY column_name) FROM information_schema.columns WHERE table_name = '\(table)'
                """)
            results.append((first, second, columns + "\n" + (try contents(db.name, table)), rejected))
        }
        let (direct, records) = (results[0], results[1])
        DirectLoadTests.expectSameCounts([(direct.0, records.0), (direct.1, records.1)], sourceLocation: sourceLocation)
        #expect(direct.2 == records.2, sourceLocation: sourceLocation)
        #expect(direct.3 == records.3 && direct.3 > 0, sourceLocation: sourceLocation)
        // The first batch goes in directly, into a table Ferry made from it too.
        #expect(direct.0.loadedDirectly >= 3, "the first run's first batch did not go the direct way", sourceLocation: sourceLocation)
        #expect(direct.1.loadedDirectly > 0, "the second run took no batch the direct way", sourceLocation: sourceLocation)
        // Every key once, 5 and "5" as one row; the later "a" won.
        #expect(try cluster.psql(db.name, "SELECT count(*), count(DISTINCT id), bool_or(id = '5'), max(s) FILTER (WHERE id = 'a') FROM direct")
                .hasSuffix("|t|a again: later wins"), sourceLocation: sourceLocation)
        return (direct.0, direct.1)
    }

    @Test(arguments: [true, false])
    func jsonLinesLoadTheSameDirectlyAsThroughRecords(premade: Bool) async throws {
        let dir = try TempDir()
        // Escapes, other scripts, tabs and newlines, backslashes, nested values into json, jsonb
        // and text, nulls, the biggest numbers, booleans and strings into other types, a key twice
        // in a batch and across batches (5 and "5" are one key), a member twice, values a column
        // refuses here (NUL, out of range) and values the server refuses (too long, NUL in jsonb),
        // a field without a column, keys missing, empty or a double, a blank line. The first three
        // batches go the direct way (the first only into the premade table), the later ones each
        // hold a line that sends them the record path's.
        let input = #"""
            {"id":"a","s":"plain","n":1,"i":2,"f":1.5,"num":3,"b":true,"j":{"k":"v"},"js":[1,"two",null],"arr":["x","y z"],"d":"2020-01-02","u":"a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"}
            {"id":"b","s":"tab\there\nnewline\\back\"quote\r","j":"just a string","js":{"nested":{"deep":[true,false]}}}
            {"id":"c","s":"ünïcødé 漢字 😀","v":"short","n":9223372036854775807,"f":1e300,"num":12345678901234567890,"b":false}
            {"id":"d","s":null,"n":-9223372036854775808,"i":"42","f":"3.25","b":"yes","j":null,"arr":null}
            {"id":"e","s":123,"v":true,"n":" 7 ","num":"1.50","b":1,"j":"back\\slash \t tab","js":"x\ny"}
            {"id":"f","s":{"obj":"in text\\col","arr":[1,2.5e-7]},"arr":"{a,b}","f":-0.0}
            {"id":"n1","s":null,"v":null}
            {"id":"n2","s":"","arr":[],"js":{},"j":[]}
            {"id":"n3","s":"\\N","v":"\\.","j":{"a":"\\N"}}

            {"id":"g","s":"nul\u0000here"}
            {"id":"h","i":99999999999}
            {"id":"k","s":"first"}
            {"id":"k","s":"second, in the same batch"}
            {"id":5,"s":"an integer key"}
            {"id":"5","s":"the same key as a string"}
            {"id":"a","s":"a again: later wins","b":false}
            {"id":"y","s":"a","s":"a member twice"}
            {"id":"w","v":"far too long for ten"}
            {"id":"jn","j":{"t":"nul\u0000"}}
            {"id":"x","colour":"red"}
            {"s":"no key"}
            {"id":"","s":"empty key"}
            {"id":7.0,"s":"a double key"}
            {"u":"b0eebc99-9c0b-4ef8-bb6d-6bb9bd380a12","d":"1999-12-31","id":"order","b":"off","v":"\\\\\\t"}

            """#
        try input.write(toFile: dir.file("in.jsonl"), atomically: true, encoding: .utf8)
        let (first, _) = try await compareBothWays(dir, "in.jsonl", premade: premade)
        #expect(first.read == 24)
    }

    /// ``jsonLinesLoadTheSameDirectlyAsThroughRecords(premade:)`` for CSV: each cell typed as the
    /// record path types it (a canonical integer, a shortest-form double, `true`/`false`, JSON in
    /// `{…}`/`[…]`, quoted cells as text, an empty cell missing, a quoted empty one an empty
    /// string), a field without a column, keys missing, empty, a double, twice in a batch.
    @Test(arguments: [true, false])
    func csvLoadsTheSameDirectlyAsThroughRecords(premade: Bool) async throws {
        let dir = try TempDir()
        // The first three batches (of 3 rows) go the direct way, each later one holds a row that
        // sends it the record path's.
        let input = #"""
            id,s,v,n,i,f,num,b,j,js,arr,d,u,colour
            a,plain,,1,2,1.5,3,true,"{""k"":""v""}","[1,""two"",null]","[""x"",""y z""]",2020-01-02,a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11,
            b,"tab	here
            newline\back""quote",,,,,,,just a string,"{""nested"":{""deep"":[true,false]}}",,,,
            c,ünïcødé 漢字 😀,short,9223372036854775807,,1e300,12345678901234567890,false,,,,,,
            d,,,-9223372036854775808,42,3.25,1.50,yes,,,,,,
            e,123,true,,,-0.0,,"false","back\\slash	tab",x,"{a,b}",,,
            f,042,"",,,1.50,,,"""quoted""",{},[],,,
            n1,,,,,,,,,,,,,
            n2,"",,,,,,,[],"{}",,,,
            n3,\N,\.,,,,,,"{""a"":""\\N""}",,,,,
            k,first,,,,,,,,,,,,
            k,"second, in the same batch",,,,,,,,,,,,
            h,,,,99999999999,,,,,,,,,
            5,an integer key,,,,,,,,,,,,
            "5",the same key as a string,,,,,,,,,,,,
            a,a again: later wins,,,,,,false,,,,,,
            w,,far too long for ten,,,,,,,,,,,
            x,,,,,,,,,,,,,red
            y,{not json,,,,,,,,,,,,
            ,no key,,,,,,,,,,,,
            "",empty key,,,,,,,,,,,,
            7.0,a double key,,,,,,,,,,,,
            order,\\\t,,,,,,off,,,,1999-12-31,b0eebc99-9c0b-4ef8-bb6d-6bb9bd380a12,

            """#
        try input.write(toFile: dir.file("in.csv"), atomically: true, encoding: .utf8)
        let (first, _) = try await compareBothWays(dir, "in.csv", premade: premade)
        #expect(first.read == 22)
    }

    /// A malformed line anywhere in the file stops the run before the table is touched, though
    /// every batch before it would have gone in directly.
    @Test func aMalformedLineMidFileChangesNothingOnTheDirectPath() async throws {
        let dir = try TempDir()
        let db = try database()
        try writeUsers(dir.file("users.jsonl"), count: 30)
        let url = db.url + "#users"
        _ = try await load(dir, "users.jsonl", into: url, direct: true, dead: "dead")
        try cluster.psql(db.name, "UPDATE users SET username = 'before'")
        var lines = try String(contentsOfFile: dir.file("users.jsonl"), encoding: .utf8).split(separator: "\n").map(String.init)
        lines.insert(#"{"id":"broken","username":"#, at: 25)
        try (lines.joined(separator: "\n") + "\n").write(toFile: dir.file("bad.jsonl"), atomically: true, encoding: .utf8)
        let before = try contents(db.name, "users")
        await #expect(throws: SyncError.self) { try await load(dir, "bad.jsonl", into: url, direct: true, dead: "dead") }
        #expect(try contents(db.name, "users") == before)
        await #expect(throws: SyncError.self) { try await load(dir, "bad.jsonl", into: db.url + "#fresh", direct: true, dead: "dead") }
        #expect(try !tables(db.name).contains("fresh"))
    }

    /// A full load from a file is one transaction, committed at the end of the file (the file is
    /// checked as it loads, PostgresWriter+Load.swift): a failure at the second of two batches of
    /// 10,000 leaves none of the first.
    @Test func aFullLoadFromAFileCommitsOnceAtTheEnd() async throws {
        let dir = try TempDir()
        let db = try database()
        try writeUsers(dir.file("users.jsonl"), count: 12_000)
        try makeTableRefusing("u0011000", in: db.name)
        let failed = try await Ferry.run(["sync", "file:users.jsonl", db.url + "#users"], in: dir.path)
        #expect(failed.status == 2 && failed.stderr.contains("refused by a trigger"), "\(failed.stderr)")
        #expect(try cluster.psql(db.name, "SELECT count(*) FROM users") == "0")
        try cluster.psql(db.name, "DROP TRIGGER refuse ON users")
        let loaded = try await sync(["file:users.jsonl", db.url + "#users"], in: dir)
        #expect(loaded["created"] == 12_000 && loaded["failed"] == 0, "\(loaded.serialized())")
        #expect(try cluster.psql(db.name, "SELECT count(*) FROM users") == "12000")
    }

    /// A load stopped at a batch boundary checks the rest of the file before it commits what it
    /// loaded: a malformed line after the stop still changes nothing.
    @Test func aStoppedLoadCommitsOnlyAWellFormedFile() async throws {
        let dir = try TempDir()
        let db = try database()
        try writeUsers(dir.file("users.jsonl"), count: 30)
        let good = try String(contentsOfFile: dir.file("users.jsonl"), encoding: .utf8)
        try (good + "{\"id\": oops}\n").write(toFile: dir.file("bad.jsonl"), atomically: true, encoding: .utf8)
        func stopped(_ file: String, _ table: String) async throws -> SyncReport {
            var job = SyncJob(source: "file:" + dir.file(file), target: db.url + "#" + table)
            job.mode = .full
            job.statePath = dir.file("state/state.db")
            job.deadLetterPath = dir.file("dead.jsonl")
            job.batchSize = 3
            let engine = SyncEngine()
            let stop = WakeSignal()
            engine.stop = stop
            engine.onProgress = { read, _ in if read >= 6 { stop.close() } }
            return try await engine.run(job)
        }
        let report = try await stopped("users.jsonl", "users")
        #expect(report.stopped && report.read == 6 && report.created == 6 && report.loadedDirectly == 6, "\(report.json.serialized())")
        #expect(try cluster.psql(db.name, "SELECT count(*) FROM users") == "6")
        do {
            _ = try await stopped("bad.jsonl", "fresh")
            Issue.record("a malformed file was loaded")
        } catch let error as SyncError {
            #expect(error.message.contains("line 31"), "\(error.message)")
        }
        #expect(try !tables(db.name).contains("fresh"))
        try cluster.psql(db.name, "CREATE TABLE premade (id text PRIMARY KEY, username text, age bigint, address text, updated_at bigint)")
        await #expect(throws: SyncError.self) { try await stopped("bad.jsonl", "premade") }
        #expect(try cluster.psql(db.name, "SELECT count(*) FROM premade") == "0")

        // A record the table refuses, then a malformed line: nothing is dead-lettered either.
        try ("{\"id\":\"x\",\"age\":\"abc\"}\n" + good + "{\"id\": oops}\n").write(toFile: dir.file("worse.jsonl"), atomically: true, encoding: .utf8)
        await #expect(throws: SyncError.self) { try await stopped("worse.jsonl", "premade") }
        #expect(try cluster.psql(db.name, "SELECT count(*) FROM premade") == "0")
        #expect(!FileManager.default.fileExists(atPath: dir.file("dead.jsonl")))
    }

    @Test func upsertsRewriteOnlyRowsThatDiffer() async throws {
        let dir = try TempDir()
        let db = try database()
        try cluster.psql(db.name, "CREATE TABLE items (id text PRIMARY KEY, name text, price numeric CHECK (price >= 0), note text)")
        let target = db.url + "#items"
        try """
            {"id":"a","name":"apple","price":"1.5","note":"x"}
            {"id":"b","name":"bread","price":"2.0","note":null}
            {"id":"c","name":"cheese","price":"3","note":"y"}

            """.write(toFile: dir.file("items.jsonl"), atomically: true, encoding: .utf8)
        await #expect(try sync(["file:items.jsonl", target, "--batch-size", "2"], in: dir)["created"] == 3)
        func versions() throws -> String {
            try cluster.psql(db.name, "SELECT string_agg(id || '=' || xmin::text, ',' ORDER BY id) FROM items")
        }
        let before = try versions()
        let replay = try await sync(["file:items.jsonl", target], in: dir)
        #expect(replay["created"] == 0 && replay["updated"] == 3 && replay["failed"] == 0, "\(replay.serialized())")
        #expect(try versions() == before, "a replay of the same records rewrote rows")

        // b: 2.0 → 2.00 (equal as numbers, not as stored), c: a NULL note; a stays.
        try """
            {"id":"a","name":"apple","price":"1.5","note":"x"}
            {"id":"b","name":"bread","price":"2.00"}
            {"id":"c","name":"cheese","price":"3"}
            {"id":"d","name":"dates","price":"4"}

            """.write(toFile: dir.file("items.jsonl"), atomically: true, encoding: .utf8)
        let changed = try await sync(["file:items.jsonl", target], in: dir)
        #expect(changed["created"] == 1 && changed["updated"] == 3 && changed["failed"] == 0, "\(changed.serialized())")
        let after = try versions().split(separator: ",")
        let old = before.split(separator: ",")
        #expect(after[0] == old[0] && after[1] != old[1] && after[2] != old[2], "\(before) → \(after)")
        #expect(try contents(db.name, "items") == "(a,apple,1.5,x)|(b,bread,2.00,)|(c,cheese,3,)|(d,dates,4,)")
        // The same through the record-by-record way (a record the server refuses sends its batch there).
        try """
            {"id":"a","name":"apple","price":"1.5","note":"x"}
            {"id":"b","name":"bread","price":"2.00"}
            {"id":"e","name":"eggs","price":"-1"}

            """.write(toFile: dir.file("items.jsonl"), atomically: true, encoding: .utf8)
        let settled = try versions()
        let oneByOne = try await sync(["file:items.jsonl", target, "--dead-letter", "dead.jsonl"], in: dir, status: 1)
        #expect(oneByOne["updated"] == 2 && oneByOne["failed"] == 1, "\(oneByOne.serialized())")
        #expect(try versions() == settled, "the record-by-record way rewrote unchanged rows")
    }

    /// The upsert compares integers, booleans, text and varchar as they are (text bytewise,
    /// whatever the column's collation) and other columns by their text: a row that changed only
    /// in case under a case-insensitive collation, in one integer or boolean, or only in a double
    /// (compared by its text) is rewritten; one that did not change is not.
    @Test func upsertsCompareTextBytewiseWhateverTheCollation() async throws {
        let dir = try TempDir()
        let db = try database()
        try cluster.psql(db.name, """
            CREATE COLLATION ci (provider = icu, locale = 'und-u-ks-level2', deterministic = false);
            CREATE TABLE people (id text PRIMARY KEY, name text COLLATE ci, nick varchar(20) COLLATE ci, age integer,
                                 ok boolean, score double precision);
            """)
        let target = db.url + "#people"
        func write(_ lines: String) throws {
            try lines.write(toFile: dir.file("people.jsonl"), atomically: true, encoding: .utf8)
        }
        func versions() throws -> [Substring] {
            try cluster.psql(db.name, "SELECT string_agg(id || '=' || xmin::text, ',' ORDER BY id) FROM people").split(separator: ",")
        }
        let rows = (0..<6).map { #"{"id":"p\#($0)","name":"Ada","nick":"Al","age":1,"ok":true,"score":0.0}"# }
        try write(rows.joined(separator: "\n") + "\n")
        await #expect(try sync(["file:people.jsonl", target], in: dir)["created"] == 6)
        let before = try versions()
        await #expect(try sync(["file:people.jsonl", target], in: dir)["updated"] == 6)
        #expect(try versions() == before, "a replay of the same records rewrote rows")

        var changed = rows
        changed[1] = #"{"id":"p1","name":"ADA","nick":"Al","age":1,"ok":true,"score":0.0}"#
        changed[2] = #"{"id":"p2","name":"Ada","nick":"AL","age":1,"ok":true,"score":0.0}"#
        changed[3] = #"{"id":"p3","name":"Ada","nick":"Al","age":2,"ok":true,"score":0.0}"#
        changed[4] = #"{"id":"p4","name":"Ada","nick":"Al","age":1,"ok":false,"score":0.0}"#
        changed[5] = #"{"id":"p5","name":"Ada","nick":"Al","age":1,"ok":true,"score":0.5}"#
        try write(changed.joined(separator: "\n") + "\n")
        let update = try await sync(["file:people.jsonl", target], in: dir)
        #expect(update["updated"] == 6 && update["failed"] == 0, "\(update.serialized())")
        let after = try versions()
        #expect(after[0] == before[0], "an unchanged row was rewritten")
        for index in 1...5 { #expect(after[index] != before[index], "row p\(index) changed but was not rewritten") }
        #expect(try contents(db.name, "people") == "(p0,Ada,Al,1,t,0)|(p1,ADA,Al,1,t,0)|(p2,Ada,AL,1,t,0)|(p3,Ada,Al,2,t,0)|(p4,Ada,Al,1,f,0)|(p5,Ada,Al,1,t,0.5)")
    }

    /// Batches through the stage go in with `MERGE`: a row that did not change is left as it is,
    /// not even locked (`INSERT … ON CONFLICT` locks every row it meets, which leaves its
    /// transaction in the row's `xmax`), and the created and updated counts stay exact, for a
    /// partitioned table too (its inserts are counted on its partitions; `ON CONFLICT … RETURNING
    /// (xmax = 0)` failed there: "cannot retrieve a system column in this context"), and for a key
    /// under a case-insensitive collation (matched as its unique index matches). A key whose unique
    /// index has another collation than the column takes `INSERT … ON CONFLICT`, with the same
    /// counts and rows.
    @Test(arguments: ["plain", "partitioned", "case-insensitive key", "index collation"])
    func stagedBatchesCountExactlyAndLeaveUnchangedRowsUntouched(table: String) async throws {
        let dir = try TempDir()
        let db = try database()
        switch table {
        case "partitioned":
            try cluster.psql(db.name, """
                CREATE TABLE items (id text PRIMARY KEY, name text, qty bigint) PARTITION BY HASH (id);
                CREATE TABLE items_0 PARTITION OF items FOR VALUES WITH (MODULUS 2, REMAINDER 0);
                CREATE TABLE items_1 PARTITION OF items FOR VALUES WITH (MODULUS 2, REMAINDER 1);
                """)
        case "case-insensitive key":
            try cluster.psql(db.name, """
                CREATE COLLATION ci (provider = icu, locale = 'und-u-ks-level2', deterministic = false);
                CREATE TABLE items (id text COLLATE ci PRIMARY KEY, name text, qty bigint);
                """)
        case "index collation":
            try cluster.psql(db.name, #"CREATE TABLE items (id text NOT NULL, name text, qty bigint); CREATE UNIQUE INDEX ON items (id COLLATE "C")"#)
        default:
            try cluster.psql(db.name, "CREATE TABLE items (id text PRIMARY KEY, name text, qty bigint)")
        }
        let target = db.url + "#items"
        func write(_ ids: ClosedRange<Int>, name: (Int) -> String) throws {
            try ids.map { #"{"id":"i\#($0)","name":"\#(name($0))","qty":\#($0)}"# }.joined(separator: "\n")
                .appending("\n").write(toFile: dir.file("items.jsonl"), atomically: true, encoding: .utf8)
        }
        // The first run into an empty table goes straight in (COPY); the rest through the stage.
        try write(1...40) { "n\($0)" }
        await #expect(try sync(["file:items.jsonl", target, "--batch-size", "7"], in: dir)["created"] == 40)
        let replay = try await sync(["file:items.jsonl", target, "--batch-size", "7"], in: dir)
        #expect(replay["created"] == 0 && replay["updated"] == 40 && replay["failed"] == 0, "\(replay.serialized())")
        let locked = try cluster.psql(db.name, "SELECT count(*) FROM items WHERE xmax <> 0")
        if table != "index collation" {
            #expect(locked == "0", "a replay of the same records locked or rewrote rows")
        }
        // 21–40 stay, 1–20 change (every other one), 41–60 are new; batches of 7 mix all three.
        try write(1...60) { $0 <= 20 && $0 % 2 == 0 ? "changed\($0)" : "n\($0)" }
        let mixed = try await sync(["file:items.jsonl", target, "--batch-size", "7"], in: dir)
        #expect(mixed["created"] == 20 && mixed["updated"] == 40 && mixed["failed"] == 0, "\(mixed.serialized())")
        #expect(try cluster.psql(db.name, "SELECT count(*), count(*) FILTER (WHERE name LIKE 'changed%'), sum(qty) FROM items") == "60|10|1830")
        #expect(try cluster.psql(db.name, "SELECT name FROM items WHERE id = 'i4'") == "changed4")
        if table != "index collation" {
            #expect(try cluster.psql(db.name, "SELECT count(*) FROM items WHERE xmax <> 0") == "0")
        }
    }

    @Test func incrementalMovesExactlyTheChangesAndKeepsItsCheckpointInTheTarget() async throws {
        let dir = try TempDir()
        let source = try database()
        let target = try database()
        try makeSourceTable(source.name, count: 3000)
        let arguments = [source.url + "#users", target.url + "#users", "--mode", "incremental", "--cursor-field", "updated_at", "--job", "inc"]
        let first = try await sync(arguments, in: dir)
        #expect(first["created"] == 3000 && first["read"] == 3000)
        // The newest updated_at with the hash of each of its ten rows, in the target's checkpoint table.
        #expect(first["cursor"]?["field"] == 1000299 && first["cursor"]?["key"]?.objectValue?.keys.sorted() == (2990...2999).map { "u000\($0)" },
                "\(first.serialized())")
        let stored = try JSON.parse(cluster.psql(target.name, "SELECT cursor FROM _ferry_checkpoints WHERE job = 'inc'"))
        #expect(stored == first["cursor"])

        // 5 creates (three with the largest updated_at, tied with existing rows, one of them with
        // a key before the last one read: a write in the same second, after the run) and 4
        // updates (one with the largest updated_at).
        try cluster.psql(source.name, """
            INSERT INTO users (id, username, updated_at) VALUES ('u0009001', 'a', 1000299), ('u0009002', 'b', 1000299), ('a-late', 'l', 1000299), ('n3', 'c', 2000000), ('n4', 'd', 2000001);
            UPDATE users SET age = 99, profile = '{"x": [1, 2]}', updated_at = 2000000 WHERE id IN ('u0000001', 'u0000002', 'u0000003');
            UPDATE users SET age = 98 WHERE id = 'u0002995';
            """)
        let second = try await sync(arguments + ["--verify"], in: dir)
        #expect(second["read"] == 9 && second["created"] == 5 && second["updated"] == 4, "\(second.serialized())")
        #expect(second["verify"]?["equal"] == true)
        let third = try await sync(arguments, in: dir)
        #expect(third["read"] == 0)
        // --reset forgets the checkpoint stored in the target: everything again, nothing duplicated.
        let reset = try await sync(arguments + ["--reset"], in: dir)
        #expect(reset["read"] == 3005 && reset["created"] == 0 && reset["updated"] == 3005, "\(reset.serialized())")
        #expect(try cluster.psql(target.name, "SELECT count(*) FROM users") == "3005")
        try await verifyEqual(source.url + "#users", target.url + "#users", count: 3005, in: dir)
    }

    @Test func rowsWithoutACursorValueAreReadOnceAndDoNotStopTheCursor() async throws {
        let dir = try TempDir()
        let source = try database()
        try cluster.psql(source.name, """
            CREATE TABLE items (id integer PRIMARY KEY, changed timestamptz);
            INSERT INTO items VALUES (1, NULL), (2, NULL), (3, '2026-01-01 10:00:00+00'), (4, '2026-01-01 10:00:00.5+00');
            """)
        let arguments = [source.url + "#items", "sqlite:t.db#items", "--mode", "incremental", "--cursor-field", "changed", "--batch-size", "1"]
        await #expect(try sync(arguments, in: dir)["created"] == 4)
        try cluster.psql(source.name, "INSERT INTO items VALUES (5, '2026-01-01 10:00:00.5+00'), (6, NULL)")
        // 5 ties with the checkpoint's time and comes after its key; 6 has no time: only a reset reads it.
        let next = try await sync(arguments, in: dir)
        #expect(next["read"] == 1 && next["created"] == 1, "\(next.serialized())")
        #expect(next["cursor"]?["field"] == "2026-01-01 10:00:00.5+00" && next["cursor"]?["key"]?.objectValue?.keys.sorted() == ["4", "5"],
                "\(next.serialized())")
    }

    @Test func diffFindsExactlyTheCreatesUpdatesAndDeletes() async throws {
        let dir = try TempDir()
        let source = try database()
        let target = try database()
        try makeSourceTable(source.name, count: 2000)
        await #expect(try sync([source.url + "#users", target.url + "#users"], in: dir)["created"] == 2000)
        try cluster.psql(source.name, """
            INSERT INTO users (id, username, updated_at) VALUES ('n1', 'a', 1), ('n2', 'b', 1);
            UPDATE users SET username = 'changed' WHERE id IN ('u0000010', 'u0000011', 'u0000012');
            DELETE FROM users WHERE id IN ('u0000020', 'u0000021');
            """)
        let dry = try await sync([source.url + "#users", target.url + "#users", "--mode", "diff", "--dry-run"], in: dir)
        #expect(dry["plan"]?["creates"] == ["n1", "n2"] && dry["plan"]?["deletes"] == ["u0000020", "u0000021"], "\(dry.serialized())")
        let diff = try await sync([source.url + "#users", target.url + "#users", "--mode", "diff"], in: dir)
        #expect(diff["created"] == 2 && diff["updated"] == 3 && diff["deleted"] == 2 && diff["unchanged"] == 1995, "\(diff.serialized())")
        #expect(diff["plan"]?["updates"] == ["u0000010", "u0000011", "u0000012"])
        try await verifyEqual(source.url + "#users", target.url + "#users", count: 2000, in: dir)
        let again = try await sync([source.url + "#users", target.url + "#users", "--mode", "diff"], in: dir)
        #expect(again["unchanged"] == 2000 && again["created"] == 0 && again["deleted"] == 0)
    }

    @Test func postgresToSQLiteToPostgresKeepsEveryValue() async throws {
        let dir = try TempDir()
        let source = try database()
        let target = try database()
        try makeSourceTable(source.name, count: 1500)
        try cluster.psql(source.name, #"UPDATE users SET username = E'tab\there\nnew line \\ backslash "quoted" é' WHERE id = 'u0000007'"#)
        await #expect(try sync([source.url + "#users", "sqlite:copy.db#users"], in: dir)["created"] == 1500)
        try await verifyEqual(source.url + "#users", "sqlite:copy.db#users", count: 1500, in: dir)
        await #expect(try sync(["sqlite:copy.db#users", target.url + "#users"], in: dir)["created"] == 1500)
        try await verifyEqual("sqlite:copy.db#users", target.url + "#users", count: 1500, in: dir)
        try await verifyEqual(source.url + "#users", target.url + "#users", count: 1500, in: dir)
        #expect(try cluster.psql(target.name, "SELECT username FROM users WHERE id = 'u0000007'") == "tab\there\nnew line \\ backslash \"quoted\" é")
        // PostgreSQL → PostgreSQL into the existing typed table: the types the target declared are kept.
        try cluster.psql(target.name, "CREATE TABLE typed (id text PRIMARY KEY, username text, age smallint, updated_at bigint, active boolean, profile jsonb)")
        await #expect(try sync([source.url + "#users", target.url + "#typed"], in: dir)["created"] == 1500)
        try await verifyEqual(source.url + "#users", target.url + "#typed", count: 1500, in: dir)
    }

    @Test func fieldNamesAreQuotedAndSchemasWork() async throws {
        let dir = try TempDir()
        let db = try database()
        try cluster.psql(db.name, "CREATE SCHEMA crm")
        try #"""
            {"id":1,"a\"b; DROP TABLE users; --":"x","Mixed Case":2,"é":true}
            {"id":2,"a\"b; DROP TABLE users; --":"y"}

            """#.write(toFile: dir.file("odd.jsonl"), atomically: true, encoding: .utf8)
        let target = db.url + "#crm.people"
        await #expect(try sync(["file:odd.jsonl", target], in: dir)["created"] == 2)
        try await verifyEqual("file:odd.jsonl", target, count: 2, in: dir)
        #expect(try tables(db.name) == ["_ferry_checkpoints", "_ferry_meta", "_ferry_tables", "people"])
        #expect(try cluster.psql(db.name, "SELECT schemaname FROM pg_tables WHERE tablename = 'people'") == "crm")
        #expect(try cluster.psql(db.name, #"SELECT "a""b; DROP TABLE users; --" FROM crm.people WHERE id = 2"#) == "y")
        #expect(try cluster.psql(db.name, "SELECT data_type FROM information_schema.columns WHERE column_name = 'id'") == "bigint")
    }

    // MARK: checkpoint, crashes, restarts

    @Test func theCheckpointCommitsInTheSameTransactionAsTheBatch() async throws {
        let dir = try TempDir()
        let db = try database()
        try writeUsersTable(dir.file("src.db"), count: 1000)
        // The target refuses the 3rd batch (a trigger raising an error that is not about one record).
        try makeTableRefusing("u0000650", in: db.name)
        let arguments = ["sqlite:src.db#users", db.url + "#users", "--mode", "incremental", "--cursor-field", "updated_at",
                         "--batch-size", "300", "--job", "atomic"]
        let failed = try await Ferry.run(["sync"] + arguments, in: dir.path)
        #expect(failed.status == 2)
        #expect(failed.stderr.split(separator: "\n").count == 1 && failed.stderr.contains("the batch failed and was rolled back: refused by a trigger"), "\(failed.stderr)")
        // Two batches and their checkpoint, nothing of the third.
        #expect(try cluster.psql(db.name, "SELECT count(*), max(id) FROM users") == "600|u0000599")
        #expect(try cluster.psql(db.name, "SELECT cursor FROM _ferry_checkpoints WHERE job = 'atomic'") == #"{"field":1000059,"key":"u0000599"}"#)

        try cluster.psql(db.name, "DROP TRIGGER refuse ON users")
        let resumed = try await sync(arguments, in: dir)
        #expect(resumed["read"] == 400 && resumed["created"] == 400 && resumed["cursorBefore"] == ["field": 1000059, "key": "u0000599"],
                "\(resumed.serialized())")
        try await verifyEqual("sqlite:src.db#users", db.url + "#users", count: 1000, in: dir)
    }

    // MARK: Ferry's tables: version and migration

    /// Ferry's tables as a Ferry from before versions made them in `schema`, with job `old`'s
    /// checkpoint after the 600th row of `writeUsersTable`'s, and a table `users` Ferry made
    /// (without `address`).
    func makeOldLayout(_ database: String, schema: String) throws {
        try cluster.psql(database, """
            CREATE SCHEMA IF NOT EXISTS \(schema);
            CREATE TABLE \(schema)._ferry_checkpoints (job text PRIMARY KEY, cursor text NOT NULL, updated_at timestamptz NOT NULL DEFAULT now());
            CREATE TABLE \(schema)._ferry_tables (name text PRIMARY KEY);
            INSERT INTO \(schema)._ferry_checkpoints VALUES ('old', '{"field":1000059,"key":"u0000599"}', '2026-01-01 10:00:00+00');
            INSERT INTO \(schema)._ferry_tables VALUES ('users');
            CREATE TABLE \(schema).users (id text PRIMARY KEY, username text, age bigint, updated_at bigint);
            """)
    }

    /// Ferry's tables' columns and `_ferry_meta`'s rows, in `schema`.
    func ferryTables(_ database: String, schema: String) throws -> String {
        try cluster.psql(database, """
            SELECT string_agg(table_name || '.' || column_name || ' ' || data_type || ' ' || is_nullable || ' ' || coalesce(column_default, '-'), ', '
                              ORDER BY table_name, ordinal_position)
            FROM information_schema.columns WHERE table_schema = '\(schema)' AND table_name LIKE '\\_ferry%'
            """) + " | " + cluster.psql(database, "SELECT string_agg(name || '=' || value, ', ' ORDER BY name) FROM \(schema)._ferry_meta")
    }

    @Test func aDatabaseFromBeforeVersionsIsMigratedAndKeepsItsCheckpointAndTables() async throws {
        let dir = try TempDir()
        let db = try database()
        try writeUsersTable(dir.file("src.db"), count: 1000)
        try makeOldLayout(db.name, schema: "crm")
        let arguments = ["sqlite:src.db#users", db.url + "#crm.users", "--mode", "incremental", "--cursor-field", "updated_at", "--job", "old"]

        let first = try await sync(arguments, in: dir)
        // From the old checkpoint on; `address` grew a column, as only a table Ferry made does.
        #expect(first["cursorBefore"] == ["field": 1000059, "key": "u0000599"] && first["read"] == 400 && first["created"] == 400,
                "\(first.serialized())")
        #expect(try cluster.psql(db.name, "SELECT count(address) FROM crm.users") == "400")
        #expect(try cluster.psql(db.name, "SELECT string_agg(name, ',') FROM crm._ferry_tables") == "users")
        #expect(try cluster.psql(db.name, "SELECT job || ' ' || (cursor::jsonb->>'field') FROM crm._ferry_checkpoints") == "old 1000099")
        let migrated = try ferryTables(db.name, schema: "crm")
        #expect(migrated == """
            _ferry_checkpoints.job text NO -, _ferry_checkpoints.cursor text NO -, _ferry_checkpoints.updated_at timestamp with time zone NO now(), \
            _ferry_meta.name text NO -, _ferry_meta.value text NO -, _ferry_tables.name text NO - | schema_version=\(FerryTables.currentVersion)
            """)
        #expect(try tables(db.name) == ["_ferry_checkpoints", "_ferry_meta", "_ferry_tables", "users"])

        // Once migrated, a run migrates nothing again.
        let second = try await sync(arguments, in: dir)
        #expect(second["read"] == 0, "\(second.serialized())")
        #expect(try ferryTables(db.name, schema: "crm") == migrated)
    }

    @Test(arguments: [["--mode", "incremental", "--cursor-field", "updated_at"], ["--mode", "full"], ["--mode", "incremental", "--cursor-field", "updated_at", "--reset"]])
    func aNewerVersionOfFerrysTablesIsRefusedAndNothingChanges(mode: [String]) async throws {
        let dir = try TempDir()
        let db = try database()
        try writeUsersTable(dir.file("src.db"), count: 10)
        try makeOldLayout(db.name, schema: "public")
        let newer = FerryTables.currentVersion + 1
        try cluster.psql(db.name, """
            CREATE TABLE _ferry_meta (name text PRIMARY KEY, value text NOT NULL);
            INSERT INTO _ferry_meta VALUES ('schema_version', '\(newer)');
            """)
        func everything() throws -> String {
            try ["_ferry_checkpoints", "_ferry_tables", "_ferry_meta", "users"].map { try contents(db.name, $0) }.joined(separator: " / ")
                + " / " + ferryTables(db.name, schema: "public") + " / \(try tables(db.name))"
        }
        let before = try everything()

        let result = try await Ferry.run(["sync", "sqlite:src.db#users", db.url + "#users", "--job", "old"] + mode, in: dir.path)
        #expect(result.status == 2)
        #expect(result.stderr.split(separator: "\n").count == 1 && result.stderr.hasSuffix("""
            #users: Ferry's tables in this database are at schema version \(newer), and this Ferry knows versions \
            up to \(FerryTables.currentVersion): run a newer Ferry (nothing was changed)

            """), "\(result.stderr)")
        #expect(try everything() == before)
    }

    /// Batches into PostgreSQL are 10,000 records unless `--batch-size` says otherwise: a batch
    /// that fails at record 11,001 leaves 10,000 rows (one batch), or 11,000 with batches of 1,000.
    @Test(arguments: [(nil, 10_000), ("1000", 11_000)] as [(String?, Int)])
    func batchesAreTenThousandRecordsByDefault(batchSize: String?, committed: Int) async throws {
        let dir = try TempDir()
        let db = try database()
        try writeUsersTable(dir.file("src.db"), count: 12_000)
        try makeTableRefusing("u0011000", in: db.name)
        let size = batchSize.map { ["--batch-size", $0] } ?? []
        let failed = try await Ferry.run(["sync", "sqlite:src.db#users", db.url + "#users", "--mode", "incremental",
                                    "--cursor-field", "updated_at"] + size, in: dir.path)
        #expect(failed.status == 2, "\(failed.stderr)")
        #expect(try cluster.psql(db.name, "SELECT count(*) FROM users") == "\(committed)")
    }

    @Test func killNineMidLoadLosesAndDuplicatesNothing() async throws {
        let dir = try TempDir()
        let db = try database()
        let records = CommandTests.killRecords
        try writeUsersTable(dir.file("src.db"), count: records)
        let incremental = try await CommandTests().killRepeatedly(
            ["sync", "sqlite:src.db#users", db.url + "#users", "--mode", "incremental", "--cursor-field", "updated_at"], in: dir)
        #expect(incremental >= 1, "no kill landed while the sync ran")
        try await verifyEqual("sqlite:src.db#users", db.url + "#users", count: records, in: dir)
        #expect(try cluster.psql(db.name, "SELECT count(*), count(DISTINCT id) FROM users") == "\(records)|\(records)")

        try writeUsers(dir.file("users.jsonl"), count: records)
        // A full run from a file goes straight from the lines' bytes (PostgresWriter+Load.swift).
        let full = try await CommandTests().killRepeatedly(["sync", "file:users.jsonl", db.url + "#fromfile"], in: dir)
        #expect(full >= 1)
        try await verifyEqual("file:users.jsonl", db.url + "#fromfile", count: records, in: dir)
        #expect(try cluster.psql(db.name, "SELECT count(*), count(DISTINCT id) FROM fromfile") == "\(records)|\(records)")
    }

    /// The server ends the session mid-run (what a restart does to every connection): the run
    /// fails with one clear line, and the next resumes from the checkpoint.
    @Test func theDatabaseGoingAwayMidRunFailsClearlyAndTheNextRunResumes() async throws {
        let dir = try TempDir()
        let db = try database()
        let records = 200_000
        try writeUsersTable(dir.file("src.db"), count: records)
        let arguments = ["sync", "sqlite:src.db#users", db.url + "#users", "--mode", "incremental", "--cursor-field", "updated_at", "--job", "cut"]
        let run = LongRunning(arguments, in: dir)
        var loaded = 0
        for _ in 0..<600 where loaded == 0 {
            try await Task.sleep(for: .milliseconds(50))
            loaded = Int((try? cluster.psql(db.name, "SELECT count(*) FROM users")) ?? "") ?? 0
        }
        #expect(loaded > 0 && loaded < records, "the sync was not caught mid-run (\(loaded) rows)")
        try cluster.psql(db.name, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'ferry'")
        await run.ended()
        let stderr = run.stderr
        #expect(run.process.terminationStatus == 2)
        #expect(stderr.split(separator: "\n").count == 1 && stderr.contains("lost the connection to 127.0.0.1:\(cluster.port)"), "\(stderr)")
        #expect(!stderr.contains(PostgresCluster.password))
        let committed = Int(try cluster.psql(db.name, "SELECT count(*) FROM users"))!
        let cursor = try JSON.parse(try cluster.psql(db.name, "SELECT cursor FROM _ferry_checkpoints WHERE job = 'cut'"))
        #expect(cursor["key"] == .string(String(format: "u%07d", committed - 1)), "checkpoint \(cursor) for \(committed) rows")

        let resumed = try await sync(Array(arguments.dropFirst()), in: dir)
        #expect(resumed["read"] == .int(Int64(records - committed)) && resumed["created"] == .int(Int64(records - committed)), "\(resumed.serialized())")
        try await verifyEqual("sqlite:src.db#users", db.url + "#users", count: records, in: dir)
    }

    // MARK: bad input: one line, exit 2, nothing changed

    @Test func badSourcesFailWithOneLineAndChangeNothing() async throws {
        let dir = try TempDir()
        let db = try database()
        try makeSourceTable(db.name, count: 3)
        try cluster.psql(db.name, "CREATE VIEW slow AS SELECT 'a'::text AS id, pg_sleep(2)::text AS nap")
        let queue = try DatabaseQueue(path: dir.file("target.db"))
        try await queue.write { try $0.execute(sql: "CREATE TABLE users (id TEXT PRIMARY KEY, age INTEGER); INSERT INTO users VALUES ('keep', 1)") }
        try queue.close()
        let before = fileBytes(dir.file("target.db"))
        let port = cluster.port
        let silent = try SilentListener()
        let password = PostgresCluster.password
        let cases: [(String, String)] = [
            (cluster.url(database: db.name, password: "wrong-secret") + "#users", #"the server refused the credentials of user "ferry" (password authentication failed"#),
            ("postgres://ferry:\(password)@127.0.0.1:1/\(db.name)#users", "cannot reach 127.0.0.1:1: connection refused"),
            ("postgres://ferry:\(password)@127.0.0.1:\(silent.port)/x?connect_timeout=1#users", "cannot reach 127.0.0.1:\(silent.port): no answer within 1 s (connect_timeout)"),
            (cluster.url(database: "nope") + "#users", #"no database "nope" on 127.0.0.1:\#(port)"#),
            (db.url + "#missing", #"no table "missing" in database \#(db.name) (tables: slow, users)"#),
            (db.url + "#nowhere.users", #"no schema "nowhere""#),
            (db.url, "name the table after #"),
            (db.url + "?sslmode=require#users", "does not accept TLS (sslmode=require)"),
            (db.url + "?sslmode=prefer#users", "sslmode must be disable, require, verify-full"),
            (db.url + "?pool=3#users", #"unknown setting "pool" (known: sslmode, connect_timeout, statement_timeout)"#),
            (db.url + "?connect_timeout=0#users", "connect_timeout must be a whole number of seconds"),
            (db.url + "?statement_timeout=300#slow", "a statement was cancelled: canceling statement due to statement timeout (statement_timeout=300)"),
            (db.url + "#users", #"no column "nope" for --cursor-field"#),
        ]
        for (index, (url, message)) in cases.enumerated() {
            let extra = index == cases.count - 1 ? ["--mode", "incremental", "--cursor-field", "nope"] : []
            let result = try await Ferry.run(["sync", url, "sqlite:target.db#users"] + extra, in: dir.path)
            #expect(result.status == 2, "\(url): \(result.stderr)")
            #expect(result.stderr.split(separator: "\n").count == 1, "\(result.stderr)")
            #expect(result.stderr.hasPrefix("ferry: error: ") && result.stderr.contains(message), "\(result.stderr)")
            #expect(!result.stderr.contains(password) && !result.stderr.contains("wrong-secret"), "\(result.stderr)")
            #expect(fileBytes(dir.file("target.db")) == before)
        }
    }

    @Test(arguments: [
        "users;DROP TABLE users", "users\"", "\"users\"", "users--", "1users", "users.a.b", "", "pg_users", "_ferry_checkpoints",
        "a_very_long_table_name_that_goes_beyond_the_sixty_three_bytes_limit",
    ])
    func tableNamesThatAreNotPlainIdentifiersAreRefused(table: String) async throws {
        let dir = try TempDir()
        let db = try database()
        try makeSourceTable(db.name, count: 3)
        try writeUsers(dir.file("users.jsonl"), count: 3)
        let before = try contents(db.name, "users")
        let result = try await Ferry.run(["sync", "file:users.jsonl", db.url + "#" + table], in: dir.path)
        #expect(result.status == 2)
        #expect(result.stderr.split(separator: "\n").count == 1 && (result.stderr.contains("is not a plain table name") || result.stderr.contains("cannot be a table name here")), "\(result.stderr)")
        #expect(try tables(db.name) == ["users"] && contents(db.name, "users") == before)
    }

    @Test func badTargetsFailWithOneLineAndChangeNothing() async throws {
        let dir = try TempDir()
        let db = try database()
        try makeSourceTable(db.name, count: 3)
        try cluster.psql(db.name, "CREATE TABLE nokey (id text, age integer); CREATE VIEW adults AS SELECT * FROM users WHERE age >= 18")
        try writeUsers(dir.file("users.jsonl"), count: 3)
        let before = try contents(db.name, "users")
        let cases: [(String, String)] = [
            (cluster.url(database: db.name, password: "wrong-secret") + "#users", "password authentication failed"),
            (db.url + "#nokey", #"column "id" is neither the primary key nor under a unique index"#),
            (db.url + "#adults", #""adults" is not a table"#),
            (db.url + "#users?x", "is not a plain table name"),
        ]
        for (url, message) in cases {
            let result = try await Ferry.run(["sync", "file:users.jsonl", url], in: dir.path)
            #expect(result.status == 2 && result.stderr.split(separator: "\n").count == 1 && result.stderr.contains(message), "\(url): \(result.stderr)")
        }
        #expect(try tables(db.name) == ["nokey", "users"] && contents(db.name, "users") == before)
    }

    @Test func valuesTheColumnsCannotHoldAreDeadLetteredAsWithSQLite() async throws {
        let dir = try TempDir()
        let db = try database()
        try cluster.psql(db.name, """
            CREATE TABLE typed (id text PRIMARY KEY, age integer NOT NULL, note varchar(5), born date, CHECK (age >= 0));
            INSERT INTO typed VALUES ('keep', 1, 'x', '2000-01-01');
            """)
        let target = db.url + "#typed"
        // Every record wrong: nothing changes.
        try #"""
            {"id":"a","age":"abc"}
            {"id":"b","age":{"n":1}}
            {"id":"c","age":99999999999}

            """#.write(toFile: dir.file("bad.jsonl"), atomically: true, encoding: .utf8)
        let before = try contents(db.name, "typed")
        let bad = try await Ferry.run(["sync", "file:bad.jsonl", target, "--dead-letter", "dead.jsonl"], in: dir.path)
        #expect(bad.status == 1 && bad.stderr.contains("3 records were rejected; see dead.jsonl"), "\(bad.stderr)")
        let dead = try String(contentsOfFile: dir.file("dead.jsonl"), encoding: .utf8)
        #expect(dead.contains(#"column \"age\" is integer; the value \"abc\" does not fit it"#), "\(dead)")
        #expect(dead.contains(#"the value 99999999999 is out of range"#))
        #expect(try contents(db.name, "typed") == before)

        // Some wrong, as the server sees it (too long, not a date, a NULL, a check, an unknown field): the rest arrive.
        try #"""
            {"id":"ok1","age":5,"note":"short","born":"2001-02-03"}
            {"id":"long","age":5,"note":"far too long"}
            {"id":"date","age":5,"born":"someday"}
            {"id":"null"}
            {"id":"negative","age":-1}
            {"id":"extra","age":1,"colour":"red"}
            {"id":"ok2","age":"7"}

            """#.write(toFile: dir.file("mixed.jsonl"), atomically: true, encoding: .utf8)
        let mixed = try await Ferry.run(["sync", "file:mixed.jsonl", target, "--dead-letter", "dead2.jsonl", "--json"], in: dir.path)
        #expect(mixed.status == 1)
        let report = try JSON.parse(mixed.stdout)
        #expect(report["created"] == 2 && report["failed"] == 5, "\(report.serialized())")
        let reasons = try String(contentsOfFile: dir.file("dead2.jsonl"), encoding: .utf8)
        for reason in ["value too long for type character varying(5)", "invalid input syntax for type date", "violates not-null constraint",
                       "violates check constraint", #"has no column \"colour\""#] {
            #expect(reasons.contains(reason), "\(reason) in \(reasons)")
        }
        #expect(try cluster.psql(db.name, "SELECT string_agg(id || ':' || age, ',' ORDER BY id) FROM typed") == "keep:1,ok1:5,ok2:7")

        let strict = try await Ferry.run(["sync", "file:bad.jsonl", target, "--strict"], in: dir.path)
        #expect(strict.status == 2 && strict.stderr.contains("--strict stops here"))

        // --strict stops after the batch with the refused record: the batches after it are not
        // written, though batches are committed in the background while the next is read.
        try cluster.psql(db.name, "DELETE FROM typed WHERE id <> 'keep'")
        try #"""
            {"id":"ok1","age":1}
            {"id":"long","age":2,"note":"far too long"}
            {"id":"ok2","age":3}
            {"id":"ok3","age":4}

            """#.write(toFile: dir.file("strict.jsonl"), atomically: true, encoding: .utf8)
        let stopped = try await Ferry.run(["sync", "file:strict.jsonl", target, "--strict", "--batch-size", "2"], in: dir.path)
        #expect(stopped.status == 2 && stopped.stderr.contains("record long was rejected"), "\(stopped.stderr)")
        #expect(try cluster.psql(db.name, "SELECT string_agg(id, ',' ORDER BY id) FROM typed") == "keep,ok1")
    }

    @Test func tlsModes() async throws {
        let dir = try TempDir()
        let db = try database()
        try makeSourceTable(db.name, count: 5)
        // A self-signed certificate for the test server, then ssl on (and off again at the end).
        let certificate = cluster.directory + "/server.crt"
        let key = cluster.directory + "/server.key"
        let openssl = try await Spawn.detached("/usr/bin/env", ["openssl", "req", "-new", "-x509", "-days", "1", "-nodes", "-subj", "/CN=localhost",
                                                                "-newkey", "rsa:2048", "-keyout", key, "-out", certificate])
        try #require(openssl.status == 0, "openssl could not make a certificate")
        try FileManager.default.setAttributes([.posixPermissions: 0o600], ofItemAtPath: key)
        if geteuid() == 0 {
            for path in [key, certificate] {
                _ = try await Spawn.detached("/bin/chown", ["postgres", path])
            }
        }
        try cluster.psql(db.name, "ALTER SYSTEM SET ssl_cert_file = '\(certificate)'")
        try cluster.psql(db.name, "ALTER SYSTEM SET ssl_key_file = '\(key)'")
        try cluster.psql(db.name, "ALTER SYSTEM SET ssl = on")
        try cluster.psql(db.name, "SELECT pg_reload_conf()")
        defer {
            for setting in ["ssl", "ssl_cert_file", "ssl_key_file"] { _ = try? cluster.psql(db.name, "ALTER SYSTEM RESET \(setting)") }
            _ = try? cluster.psql(db.name, "SELECT pg_reload_conf()")
        }
        for _ in 0..<50 where try cluster.psql(db.name, "SHOW ssl") != "on" { usleep(100_000) }

        let required = try await Ferry.run(["sync", db.url + "?sslmode=require#users", "file:out.jsonl", "--json"], in: dir.path)
        #expect(required.status == 0, "\(required.stderr)")
        #expect(try JSON.parse(required.stdout)["created"] == 5)
        let verified = try await Ferry.run(["sync", db.url + "?sslmode=verify-full#users", "file:out2.jsonl"], in: dir.path)
        #expect(verified.status == 2 && verified.stderr.contains("cannot reach 127.0.0.1:\(cluster.port): TLS failed"), "\(verified.stderr)")
        #expect(!FileManager.default.fileExists(atPath: dir.file("out2.jsonl")))
    }
}

/// A port that takes connections and never answers (for connect_timeout).
final class SilentListener {
    let fd: Int32
    let port: Int

    init() throws {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        self.fd = fd
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = 0
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard bound == 0, listen(fd, 16) == 0 else { throw SyncTestError("cannot listen") }
        var actual = sockaddr_in()
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &actual) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) } }
        port = Int(UInt16(bigEndian: actual.sin_port))
    }

    deinit { close(fd) }
}

/// `postgres://` URLs: parsed without I/O, passwords never shown.
@Suite struct PostgresLocationTests {
    @Test func partsAndDefaults() throws {
        let location = try PostgresLocation(parsing: "postgresql://ada:p%40ss%2Fw%3Frd@db.example.com/crm#sales.orders")
        #expect(location.user == "ada" && location.password == "p@ss/w?rd" && location.host == "db.example.com" && location.port == 5432)
        #expect(location.database == "crm" && location.schema == "sales" && location.table == "orders")
        #expect(location.sslMode == .disable && location.connectTimeoutSeconds == 10 && location.statementTimeoutMilliseconds == nil)
        #expect(location.displayName == "postgres://ada@db.example.com:5432/crm#sales.orders")

        let tuned = try PostgresLocation(parsing: "postgres://u:x@[::1]:6543/d?sslmode=verify-full&connect_timeout=3&statement_timeout=250#t")
        #expect(tuned.host == "::1" && tuned.port == 6543 && tuned.sslMode == .verifyFull)
        #expect(tuned.connectTimeoutSeconds == 3 && tuned.statementTimeoutMilliseconds == 250 && tuned.schema == nil)
        #expect(tuned.displayName == "postgres://u@[::1]:6543/d#t")
        // The auth option wins over the URL's credentials.
        let auth = try PostgresLocation(parsing: "postgres://u:x@h/d#t", auth: "other:secret")
        #expect(auth.user == "other" && auth.password == "secret")
        // An unencoded "/" or "#" in the password: the credentials still end at the last "@".
        let raw = try PostgresLocation(parsing: "postgres://u:a/b#c@h/d#t")
        #expect(raw.password == "a/b#c" && raw.host == "h" && raw.table == "t")
    }

    @Test(arguments: [
        ("postgres://u:pw@h/d", "name the table after #"),
        ("postgres://u:pw@h/#t", "name the database"),
        ("postgres://u:pw@/d#t", "no host"),
        ("postgres://h/d#t", "no user"),
        ("postgres://u:pw@h:99999/d#t", "the port must be a number from 1 to 65535"),
        ("postgres://u:pw@h/d?sslmode=allow#t", "sslmode must be disable, require, verify-full"),
        ("postgres://u:pw@h/d?statement_timeout=soon#t", "statement_timeout must be a whole number of milliseconds"),
        ("postgres://u:pw@h/d?sslmode=require&sslmode=disable#t", "given twice"),
        ("postgres://u:pw@h/d?password=x#t", #"unknown setting "password""#),
        ("postgres://u:pw@h/d#users; DROP TABLE users", "is not a plain table name"),
    ] as [(String, String)])
    func badURLsSayWhatIsWrongWithoutThePassword(url: String, message: String) {
        #expect {
            _ = try PostgresLocation(parsing: url)
        } throws: { error in
            let text = (error as? SyncError)?.message ?? ""
            return text.contains(message) && !text.contains(":pw@")
        }
    }

    @Test func redactedHidesEveryPassword() {
        #expect(ConnectorRegistry.standard.redacted("postgres://ada:s3cret@h:5432/d?sslmode=require#t") == "postgres://ada:***@h:5432/d?sslmode=require#t")
        #expect(ConnectorRegistry.standard.redacted("postgresql://ada:a/b?c@h/d#t") == "postgresql://ada:***@h/d#t")
        #expect(ConnectorRegistry.standard.redacted("postgres://ada:x#y@h/d") == "postgres://ada:***@h/d")
        #expect(ConnectorRegistry.standard.redacted("postgres://h/d#t") == "postgres://h/d#t")
    }

    @Test func valuesBecomeTheColumnsText() {
        func text(_ value: JSON, _ typeName: String, category: String = "N", copy: Bool = true) -> String {
            let column = PostgresColumn(name: "c", type: typeName, baseType: typeName, typeName: typeName, category: category, generated: false)
            var out: [UInt8] = []
            if let reason = column.append(value, copy: copy, to: &out) { return "refused: " + reason }
            return String(decoding: out, as: UTF8.self)
        }
        #expect(text(5, "int4") == "5" && text(5.0, "int8") == "5" && text(" 7 ", "int2") == "7" && text(true, "int4") == "1")
        #expect(text(70000, "int2").hasPrefix("refused: column \"c\" is int2; the value 70000 is out of range"))
        #expect(text("abc", "int8") == #"refused: column "c" is int8; the value "abc" does not fit it"#)
        #expect(text(1.5, "float8") == "1.5" && text("NaN", "float8") == "NaN" && text(["a": 1], "numeric").hasPrefix("refused"))
        #expect(text(true, "bool", category: "B") == "t" && text("off", "bool", category: "B") == "off" && text(2, "bool", category: "B").hasPrefix("refused"))
        #expect(text("a\\b\tc\nd", "text", category: "S") == #"a\\b\tc\nd"#)
        #expect(text("a\\b", "text", category: "S", copy: false) == "a\\b")
        #expect(text("nul\u{0}", "text", category: "S").hasSuffix("holds a NUL character"))
        #expect(text(["k": "a\\b"], "jsonb", category: "U") == #"{"k":"a\\\\b"}"#)
        #expect(text("plain", "jsonb", category: "U") == #""plain""#)
        #expect(text([1, "a \"b\"", .null, [2]], "_text", category: "A") == #"{1,"a \\"b\\"",NULL,{2}}"#)
        #expect(PostgresColumn.declaredType(for: [1, 2]) == "bigint" && PostgresColumn.declaredType(for: [1, 2.5]) == "double precision")
        #expect(PostgresColumn.declaredType(for: [true]) == "boolean" && PostgresColumn.declaredType(for: ["a", 1]) == "jsonb")
        #expect(PostgresColumn.declaredType(for: [["a": 1]]) == "jsonb" && PostgresColumn.declaredType(for: ["a"]) == "text")
    }
}
