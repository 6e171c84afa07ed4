import ArgumentParser
import FerryCore
import FerrySync
import FerryTestSupport
import Foundation
import Testing
@testable import ferry

/// One job specification for `ferry sync`'s flags, a jobs file and a library caller's JSON: the
/// same job from each is the same ``JobSpec``, and a bad value gets the same message from each
/// (in its own spelling, a jobs file's with the line), before anything is created.
@Suite(.serialized) struct JobSpecTests {
    /// A bad value as flags and as a jobs file's lines (after source and target, from line 5),
    /// and the message each gets.
    static let badValues: [(flags: [String], yaml: String, flagMessage: String, fileMessage: String)] = [
        (["--batch-size", "0"], "    batch_size: 0\n",
         "--batch-size must be between 1 and 100000, not 0", "j.yml:5: batch_size must be between 1 and 100000, not 0"),
        (["--retries", "101"], "    retries: 101\n",
         "--retries must be between 0 and 100, not 101", "j.yml:5: retries must be between 0 and 100, not 101"),
        (["--fill-factor", "9"], "    fill_factor: 9\n",
         "--fill-factor must be between 10 and 100 (percent of each page), not 9", "j.yml:5: fill_factor must be between 10 and 100 (percent of each page), not 9"),
        (["--fill-factor", "101"], "    fill_factor: 101\n",
         "--fill-factor must be between 10 and 100 (percent of each page), not 101", "j.yml:5: fill_factor must be between 10 and 100 (percent of each page), not 101"),
        (["--mode", "sometimes"], "    mode: sometimes\n",
         "--mode must be full, incremental, diff or two-way, not \"sometimes\"", "j.yml:5: mode must be full, incremental, diff or two-way, not \"sometimes\""),
        (["--mode", "diff", "--delete"], "    mode: diff\n    delete: true\n",
         "--delete goes with --mode full (incremental and diff runs already apply deletes)",
         "j.yml:6: delete goes with mode: full (incremental and diff runs already apply deletes)"),
        (["--two-way", "--delete"], "    mode: two-way\n    delete: true\n",
         "--delete does not go with --two-way (deletes already go both ways)", "j.yml:6: delete does not go with mode: two-way (deletes already go both ways)"),
        (["--on-conflict", "a-wins"], "    on_conflict: a-wins\n",
         "--on-conflict goes with --two-way", "j.yml:5: on_conflict goes with mode: two-way"),
        (["--two-way", "--on-conflict", "oldest-wins"], "    mode: two-way\n    on_conflict: oldest-wins\n",
         "--on-conflict must be a-wins, b-wins, newest-wins, manual, not \"oldest-wins\"",
         "j.yml:6: on_conflict must be a-wins, b-wins, newest-wins, manual, not \"oldest-wins\""),
        (["--two-way", "--newest-field", "n"], "    mode: two-way\n    newest_field: n\n",
         "--newest-field goes with --on-conflict newest-wins", "j.yml:6: newest_field goes with on_conflict: newest-wins"),
        (["--two-way", "--on-conflict", "newest-wins", "--newest-field", ""], "    mode: two-way\n    on_conflict: newest-wins\n    newest_field: \"\"\n",
         "--newest-field cannot be empty", "j.yml:7: newest_field cannot be empty"),
        (["--key", ""], "    key: \"\"\n", "--key cannot be empty", "j.yml:5: key cannot be empty"),
        (["--cursor-field", ""], "    cursor_field: \"\"\n", "--cursor-field cannot be empty", "j.yml:5: cursor_field cannot be empty"),
        (["--mode", "diff", "--follow"], "    mode: diff\n    schedule: follow\n",
         "--follow applies changes incrementally (or both ways with --two-way); --mode diff does not go with it",
         "j.yml:6: schedule: follow applies changes incrementally (or both ways with mode: two-way); mode: diff does not go with it"),
        (["--follow", "--verify"], "    schedule: follow 2s\n    verify: true\n",
         "--follow does not go with --delete, --dry-run or --verify", "j.yml:5: schedule: follow does not go with delete, dry_run or verify"),
    ]

    static let head = "jobs:\n  j:\n    source: file:users.jsonl\n    target: sqlite:t.db#users\n"

    @Test(arguments: 0..<badValues.count)
    func aBadValueGetsTheSameMessageFromAFlagAndFromTheJobsFile(index: Int) async throws {
        let (flags, yaml, flagMessage, fileMessage) = Self.badValues[index]
        let dir = try TempDir()
        try (0..<3).map { #"{"id":"u\#($0)","updated_at":\#($0)}"# + "\n" }.joined()
            .write(toFile: dir.file("users.jsonl"), atomically: true, encoding: .utf8)
        try (Self.head + yaml).write(toFile: dir.file("j.yml"), atomically: true, encoding: .utf8)

        // The parsers, as the commands call them.
        var fromFlags: String?
        do { _ = try Sync.parse(["file:users.jsonl", "sqlite:t.db#users"] + flags).spec() } catch { fromFlags = Sync.message(for: error) }
        #expect(fromFlags == flagMessage)
        var fromFile: String?
        do { _ = try JobsFile.parse(Self.head + yaml, file: "j.yml", environment: [:]) } catch { fromFile = error.message }
        #expect(fromFile == fileMessage)

        // The commands: one error, exit status 2 (argument-parser's 64 for flags), and nothing created.
        let sync = try await FerryTestSupport.Ferry.run(["sync", "file:users.jsonl", "sqlite:t.db#users"] + flags, in: dir.path)
        #expect(sync.status != 0 && sync.status != 1 && sync.stderr.contains(flagMessage), "\(sync.stderr)")
        let run = try await FerryTestSupport.Ferry.run(["run", "j.yml"], in: dir.path)
        #expect(run.status == 2 && run.stderr == "ferry: error: \(fileMessage)\n", "\(run.stderr)")
        #expect(!FileManager.default.fileExists(atPath: dir.file("t.db")))
        #expect(!FileManager.default.fileExists(atPath: dir.file(".ferry")), "no state database, no dead-letter folder")
    }

    /// A library caller's JSON is decoded with the jobs file's keys and checked by the same rules.
    @Test(arguments: 0..<badValues.count)
    func decodingABadValueGivesTheJobsFileMessage(index: Int) throws {
        let (_, yaml, _, fileMessage) = Self.badValues[index]
        var object: [String: Any] = ["source": "file:users.jsonl", "target": "sqlite:t.db#users"]
        for line in yaml.split(separator: "\n") {
            let parts = line.trimmingCharacters(in: .whitespaces).split(separator: ":", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces) }
            let value = parts[1]
            object[parts[0]] = value == "\"\"" ? "" : value == "true" ? true as Any : Int(value).map { $0 as Any } ?? value
        }
        let data = try JSONSerialization.data(withJSONObject: object)
        var message: String?
        do {
            _ = try JSONDecoder().decode(JobSpec.self, from: data)
        } catch DecodingError.dataCorrupted(let context) {
            message = context.debugDescription
            #expect(context.codingPath.count == 1, "the path names the setting")
        }
        #expect(message != nil && message == String(fileMessage.drop { $0 != " " }.dropFirst()), "\(message ?? "accepted")")
    }

    /// The same job from flags, from a jobs file and from JSON is the same spec, and the engine's
    /// job it makes is the one the commands ran before there was a spec.
    @Test func theSameJobFromEachPlaceIsTheSameSpec() throws {
        let flags = try Sync.parse([
            "sqlite:a.db#users", "http://127.0.0.1:1/v1/buckets/b/collections/c", "--mode", "incremental", "--cursor-field", "updated_at",
            "--key", "uid", "--batch-size", "250", "--fill-factor", "70", "--retries", "2", "--verify", "--strict", "--no-reconcile", "--every", "5m",
            "--rename", "username=name", "--drop", "internal", "--set", "origin=\"crm\"", "--cast", "age=int", "--where", "age>=18",
            "--source-rest", "pagination=page", "--dead-letter", "dl.jsonl", "--job", "backup", "--source-auth", "u:p",
        ]).spec()
        let yaml = """
            jobs:
              backup:
                source: sqlite:a.db#users
                target: http://127.0.0.1:1/v1/buckets/b/collections/c
                mode: incremental
                cursor_field: updated_at
                key: uid
                batch_size: 250
                fill_factor: 70
                retries: 2
                verify: true
                strict: true
                reconcile: false
                schedule: every 5m
                transform: { rename: { username: name }, drop: [internal], set: { origin: crm }, cast: { age: int }, filter: ["age>=18"] }
                source_rest: { pagination: page }
                dead_letter: dl.jsonl
                source_auth: u:p
            """
        let file = try JobsFile.parse(yaml, file: "ferry.yml", environment: [:])[0].spec
        #expect(flags == file)
        #expect(file.trigger == .schedule(.every(seconds: 300)) && file.mode == .incremental && file.retries == 2)

        let json = #"""
            {"name": "backup", "source": "sqlite:a.db#users", "target": "http://127.0.0.1:1/v1/buckets/b/collections/c",
             "mode": "incremental", "cursor_field": "updated_at", "key": "uid", "batch_size": 250, "fill_factor": 70, "retries": 2, "verify": true,
             "strict": true, "reconcile": false, "schedule": "every 5m", "source_rest": {"pagination": "page"},
             "dead_letter": "dl.jsonl", "source_auth": "u:p",
             "transform": {"rename": {"username": "name"}, "drop": ["internal"], "set": {"origin": "crm"}, "cast": {"age": "int"}, "filter": ["age>=18"]}}
            """#
        let decoded = try JSONDecoder().decode(JobSpec.self, from: Data(json.utf8))
        #expect(decoded == file)

        let job = file.job
        #expect(job.name == "backup" && job.keyField == "uid" && job.batchSize == 250 && job.fillFactor == 70 && job.retry.maxAttempts == 3 && !job.reconcile)
        #expect(job.verify && job.strict && job.deadLetterPath == "dl.jsonl" && job.sourceREST == ["pagination": "page"])

        // Defaults agree too: no flags, no keys.
        let plain = try Sync.parse(["file:a.jsonl", "file:b.jsonl"]).spec()
        let plainFile = try JobsFile.parse("jobs:\n  j:\n    source: file:a.jsonl\n    target: file:b.jsonl\n", file: "f", environment: [:])[0].spec
        var named = plain
        named.name = "j"
        #expect(named == plainFile && plain.job.retry.maxAttempts == RetryPolicy().maxAttempts && plain.trigger == .once)
    }

    @Test func unknownJSONKeysAreErrors() {
        let json = #"{"source": "file:a.jsonl", "target": "file:b.jsonl", "batchsize": 5}"#
        var message: String?
        do { _ = try JSONDecoder().decode(JobSpec.self, from: Data(json.utf8)) } catch DecodingError.dataCorrupted(let context) {
            message = context.debugDescription
        } catch {}
        #expect(message?.hasPrefix("unknown key \"batchsize\" (expected one of batch_size, cursor_field,") == true, "\(message ?? "accepted")")
    }
}
