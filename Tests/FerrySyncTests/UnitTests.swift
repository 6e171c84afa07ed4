import FerryCore
import Foundation
import Testing
@testable import FerrySync

@Suite struct TransformTests {
    @Test func stepsRunInOrder() throws {
        var t = Transform()
        t.rename = ["username": "name", "name": "username"]
        t.drop = ["secret"]
        t.set = ["source": "crm"]
        t.cast = ["age": .int, "zip": .string]
        let out = t.apply(["id": "1", "username": "ada", "name": "x", "secret": 1, "age": "36", "zip": 1234])
        #expect(out == .keep(["id": "1", "name": "ada", "username": "x", "source": "crm", "age": 36, "zip": "1234"]))
    }

    @Test func castFailureSaysWhich() {
        var t = Transform()
        t.cast = ["age": .int]
        #expect(t.apply(["age": "old"]) == .failed(#"cannot cast field "age" value "old" to int"#))
        // A missing or null field is left alone.
        #expect(t.apply(["id": 1]) == .keep(["id": 1]))
    }

    @Test(arguments: [
        ("age>=18", 18, true), ("age>=18", 17, false), ("age<18", 17, true), ("age!=18", 18, false),
        ("age=18", 18, true), ("age>18", "19", false),  // a string is not greater than a number
    ] as [(String, JSON, Bool)])
    func conditions(text: String, age: JSON, expected: Bool) throws {
        let condition = try Transform.Condition(parsing: text)
        #expect(condition.matches(["age": age]) == expected)
    }

    @Test func conditionTextValues() throws {
        let c = try Transform.Condition(parsing: "status = active")
        #expect(c.field == "status" && c.value == "active")
        let quoted = try Transform.Condition(parsing: #"zip="01234""#)
        #expect(quoted.value == "01234")
        #expect(try Transform.Condition(parsing: "address.city=Paris").matches(["address": ["city": "Paris"]]))
    }

    @Test(arguments: ["age", "=3", "", "<3"])
    func badConditions(text: String) {
        #expect(throws: SyncError.self) { try Transform.Condition(parsing: text) }
    }
}

@Suite struct CSVTests {
    @Test(arguments: [
        ("42", JSON.int(42)), ("-7", .int(-7)), ("042", .string("042")), ("1.5", .double(1.5)), ("1.50", .string("1.50")),
        ("true", .bool(true)), ("True", .string("True")), ("[1,2]", .array([1, 2])), ("{x", .string("{x")),
        ("2026-11-29", .string("2026-11-29")), ("+1", .string("+1")),
        ("0", .int(0)), ("-0", .string("-0")), ("00", .string("00")), ("-", .string("-")), ("-012", .string("-012")),
        ("9223372036854775807", .int(Int64.max)), ("-9223372036854775808", .int(Int64.min)),
        ("9223372036854775808", .string("9223372036854775808")), ("12a", .string("12a")),
    ] as [(String, JSON)])
    func inference(text: String, expected: JSON) {
        #expect(CSV.infer(text) == expected)
    }

    @Test func emptyCellIsMissing() {
        #expect(CSV.infer("") == nil)
        #expect(CSV.value(of: .init(text: "", quoted: true)) == .string(""))
    }

    @Test func writtenCellsReadBackAsTheSameValue() throws {
        let values: [JSON] = ["42", "", "true", "a,b", "say \"hi\"", "line\nbreak", 42, 1.5, true, ["a": [1, 2]], [1, "x"], "[1]",
                              // Found by bench/fuzz.sh csv: a large double was written as 93223720368547760000, read back as a string.
                              9.322372036854776e+19, 1e300, -2.5e-300]
        var parser = CSV.Parser()
        for value in values {
            let text = CSV.cellText(value)
            var cells: [CSV.Cell]? = nil
            for line in text.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false) {
                cells = try parser.feed(line)
            }
            let cell = try #require(cells?.first)
            // A JSON-looking string is the one value that cannot round-trip (documented).
            if value == "[1]" { #expect(CSV.value(of: cell) == [1]); continue }
            #expect(CSV.value(of: cell) == value, "\(value.serialized()) → \(String(decoding: text, as: UTF8.self))")
        }
    }

    @Test func malformedRows() {
        var p = CSV.Parser()
        #expect(throws: SyncError.self) { _ = try p.feed(Array("a\"b,c".utf8)[...]) }
        var q = CSV.Parser()
        #expect(throws: SyncError.self) { _ = try q.feed(Array("\"ab\"c".utf8)[...]) }
        var r = CSV.Parser()
        #expect(throws: SyncError.self) { _ = try r.feed([0x61, 0x2C, 0xC3, 0x28][...]) }  // a truncated two-byte sequence
        var t = CSV.Parser()
        #expect(throws: SyncError.self) { _ = try t.feed([0x22, 0x61, 0xC3, 0x28, 0x22][...]) }  // the same, quoted
    }

    /// The direct load's typing from a cell's bytes (`CSV.withValue`) gives every cell the value
    /// `CSV.value(of:)` gives its text.
    @Test func valuesFromBytesMatchValuesFromText() throws {
        let texts = ["", "42", "-7", "0", "-0", "00", "042", "-", "-012", "+1", "12a", "1.5", "1.50", "-2.5e-300", "1e300",
                     "9223372036854775807", "-9223372036854775808", "9223372036854775808", "-9223372036854775809",
                     "99999999999999999999", "true", "false", "True", "TRUE", "truex", "[1,2]", "{\"a\":1}", "{x", "[",
                     "2026-11-29", "plain", "Zoë", "日本", "a\u{0}b", "\u{0}", " 42", "u0000001", "1 Main Street, Springfield"]
        for text in texts {
            for quoted in [false, true] {
                var row = CSV.Row()
                var parser = CSV.Parser()
                let line = quoted ? "\"" + text.replacingOccurrences(of: "\"", with: "\"\"") + "\"" : text
                if !quoted && (text.contains(",") || text.contains("\"")) { continue }
                #expect(try parser.feed(Array(line.utf8)[...], into: &row))
                let expected = CSV.value(of: CSV.Cell(text: text, quoted: quoted))
                let fromBytes = CSV.withValue(of: row, 0) { value -> JSON? in
                    switch value {
                    case nil: nil
                    case .null: .null
                    case .bool(let b): .bool(b)
                    case .int(let i): .int(i)
                    case .double(let d): .double(d)
                    case .text(let t): .string(t.string)
                    case .nested(let json): json
                    }
                }
                #expect(fromBytes == expected, "\(quoted ? "quoted" : "unquoted") \(text.debugDescription)")
            }
        }
    }

    /// Rows parsed into one buffer keep each cell's bytes and quoting, across lines.
    @Test func rowsShareOneBuffer() throws {
        var rows = CSV.Row()
        var parser = CSV.Parser()
        #expect(try parser.feed(Array("a,\"b,c\",".utf8)[...], into: &rows))
        #expect(try !parser.feed(Array("\"multi".utf8)[...], into: &rows))
        #expect(try parser.feed(Array("line\",\"\"\"\",x".utf8)[...], into: &rows))
        #expect(rows.count == 6)
        #expect((0..<rows.count).map(rows.text) == ["a", "b,c", "", "multi\nline", "\"", "x"])
        #expect(rows.quoted == [false, true, false, true, true, false])
        rows.removeCells(from: 3)
        #expect(rows.cells(0..<rows.count).map(\.text) == ["a", "b,c", ""])
    }

    /// ASCII cells skip UTF-8 validation; the others are still validated and kept whole.
    @Test func cellsKeepTheirText() throws {
        var parser = CSV.Parser()
        let cells = try #require(try parser.feed(Array("plain,Zoë Ørsted,\"quoted, ü\",,日本".utf8)[...]))
        #expect(cells.map(\.text) == ["plain", "Zoë Ørsted", "quoted, ü", "", "日本"])
        #expect(cells.map(\.quoted) == [false, false, true, false, false])
    }
}

@Suite struct RetryPolicyTests {
    @Test func exponentialWithJitterAndCap() {
        let p = RetryPolicy(maxAttempts: 5, baseDelay: 1, maxDelay: 5)
        #expect(p.delay(afterAttempt: 1, retryAfter: nil, random: 1) == 1)
        #expect(p.delay(afterAttempt: 2, retryAfter: nil, random: 1) == 2)
        #expect(p.delay(afterAttempt: 2, retryAfter: nil, random: 0) == 1)
        #expect(p.delay(afterAttempt: 4, retryAfter: nil, random: 1) == 5)
        #expect(p.delay(afterAttempt: 5, retryAfter: nil, random: 1) == nil)
    }

    @Test func retryAfterWinsWhenLonger() {
        let p = RetryPolicy(maxAttempts: 3, baseDelay: 0.1, maxDelay: 60)
        #expect(p.delay(afterAttempt: 1, retryAfter: 7, random: 1) == 7)
        #expect(p.delay(afterAttempt: 1, retryAfter: 600, random: 1) == 60)
    }

    @Test func headers() {
        #expect(RetryPolicy.seconds(fromHeader: "3") == 3)
        #expect(RetryPolicy.seconds(fromHeader: "soon") == nil)
        let now = Date(timeIntervalSince1970: 1_000_000_000)
        #expect(RetryPolicy.seconds(fromHeader: "Sun, 09 Sep 2001 01:46:50 GMT", now: now) == 10)
        #expect(RetryPolicy.isRetryable(status: 503) && RetryPolicy.isRetryable(status: 429))
        #expect(!RetryPolicy.isRetryable(status: 400) && !RetryPolicy.isRetryable(status: 501))
    }
}

@Suite struct CursorAndHashTests {
    @Test func compoundCursorBreaksTiesByKey() throws {
        let cursor = Cursor.compound(value: 10, key: "b")
        #expect(Cursor.isAfter(value: 10, key: try #require(RecordKey("c")), cursor: cursor))
        #expect(!Cursor.isAfter(value: 10, key: try #require(RecordKey("b")), cursor: cursor))
        #expect(!Cursor.isAfter(value: 10, key: try #require(RecordKey("a")), cursor: cursor))
        #expect(Cursor.isAfter(value: 11, key: try #require(RecordKey("a")), cursor: cursor))
        #expect(!Cursor.isAfter(value: 9, key: try #require(RecordKey("z")), cursor: cursor))
        #expect(Cursor(json: cursor.json) == cursor)
        #expect(Cursor(json: Cursor.since(5).json) == .since(5))
    }

    @Test func keysCompareAsText() {
        #expect(RecordKey(5) == RecordKey("5"))
        #expect(RecordKey(.null) == nil && RecordKey("") == nil && RecordKey(true) == nil)
    }

    @Test func hashIgnoresNullsAndKeyType() {
        let a = RecordHash(fields: ["id": 5, "name": "x", "gone": .null], keyField: "id", keyText: "5")
        let b = RecordHash(fields: ["name": "x", "id": "5"], keyField: "id", keyText: "5")
        let c = RecordHash(fields: ["name": "y", "id": "5"], keyField: "id", keyText: "5")
        #expect(a == b && a != c)
    }

    @Test func collectionDigestIsOrderIndependent() {
        let hashes = (0..<50).map { RecordHash(fields: ["n": .int(Int64($0))], keyField: "id", keyText: "\($0)") }
        var forward = CollectionDigest()
        var backward = CollectionDigest()
        hashes.forEach { forward.add($0) }
        hashes.reversed().forEach { backward.add($0) }
        #expect(forward == backward && forward.count == 50)
        var fewer = CollectionDigest()
        hashes.dropLast().forEach { fewer.add($0) }
        #expect(fewer != forward)
    }
}

@Suite struct JobsFileTests {
    @Test func parsesJobs() throws {
        let yaml = """
            server:
              port: 9999
            jobs:
              backup:
                source: file:a.jsonl
                target: sqlite:b.db#users
                mode: incremental
                cursor_field: updated_at
                source_auth: ${SECRET}
                transform:
                  rename: { username: name }
                  drop: [internal]
                  set: { origin: crm, n: 3, q: "3" }
                  cast: { age: int }
                  filter: ["age>=18"]
                verify: true
              second:
                source: file:a.csv
                target: file:b.jsonl
            """
        let jobs = try JobsFile.parse(yaml, file: "ferry.yml", environment: ["SECRET": "u:p"])
        #expect(jobs.count == 2)
        let job = jobs[0].job
        #expect(job.name == "backup" && job.mode == .incremental && job.cursorField == "updated_at" && job.verify)
        #expect(job.sourceAuth == "u:p")
        #expect(job.transform.rename == ["username": "name"] && job.transform.drop == ["internal"])
        #expect(job.transform.set == ["origin": "crm", "n": 3, "q": "3"])
        #expect(job.transform.cast == ["age": .int] && job.transform.filter.count == 1)
        #expect(jobs[1].schedule == "once")
        #expect(job.reconcile && jobs[1].job.reconcile, "reconciliation is on unless the file turns it off")
    }

    /// `reconcile: false` is `--no-reconcile`: diff and verify read a server in full.
    @Test func reconcileKeyTurnsReconciliationOff() throws {
        for (value, expected) in [("false", false), ("no", false), ("true", true), ("on", true)] {
            let yaml = "jobs:\n  a:\n    source: file:a.jsonl\n    target: http://127.0.0.1:1/v1/buckets/b/collections/c\n    mode: diff\n    reconcile: \(value)\n"
            #expect(try JobsFile.parse(yaml, file: "ferry.yml", environment: [:])[0].job.reconcile == expected, "\(value)")
        }
    }

    @Test(arguments: [
        ("jobs:\n  a:\n    source: file:a.jsonl\n    target: file:b.jsonl\n    colour: red\n", "ferry.yml:5: unknown key \"colour\""),
        ("jobs:\n  a:\n    source: file:a.jsonl\n", "ferry.yml:2: job a needs both source and target"),
        ("jobs:\n  a:\n    source: file:a.jsonl\n    target: file:b.jsonl\n    mode: sometimes\n", "ferry.yml:5: mode must be full, incremental, diff or two-way"),
        ("jobs:\n  a:\n    source: ${NOPE}\n    target: file:b.jsonl\n", "ferry.yml:3: environment variable NOPE is not set"),
        ("jobz:\n  a: {}\n", "ferry.yml:1: unknown section \"jobz\""),
        ("jobs:\n  a:\n    source: file:a.jsonl\n    target: file:b.jsonl\n    transform: { upper: [x] }\n", "unknown transform step \"upper\""),
        ("jobs: [\n", "not valid YAML"),
        ("jobs:\n  a:\n    source: file:a.jsonl\n    target: file:b.jsonl\n    reconcile: sometimes\n", "ferry.yml:5: reconcile must be true or false"),
        ("jobs:\n  a:\n    source: file:a.jsonl\n    target: file:b.jsonl\n    reconcile: [false]\n", "ferry.yml:5: reconcile must be true or false"),
    ])
    func errorsNameTheLine(yaml: String, message: String) {
        #expect {
            try JobsFile.parse(yaml, file: "ferry.yml", environment: [:])
        } throws: { error in
            (error as? SyncError)?.message.contains(message) == true
        }
    }
}
