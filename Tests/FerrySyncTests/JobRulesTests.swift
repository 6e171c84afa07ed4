import Testing
@testable import FerrySync

/// One rule, two spellings: the jobs file says what `ferry sync`'s flags say, in its own names.
@Suite struct JobRulesTests {
    func message(_ body: () throws -> Void) -> String? {
        do { try body() } catch { return (error as? SyncError)?.message ?? "\(error)" }
        return nil
    }

    @Test func eachRuleNamesTheSettingAsItWasWritten() {
        #expect(message { try JobRules.batchSize(0, .flags) } == "--batch-size must be between 1 and 100000, not 0")
        #expect(message { try JobRules.batchSize(100_001, .jobsFile) } == "batch_size must be between 1 and 100000, not 100001")
        #expect(message { try JobRules.batchSize(100_000, .jobsFile) } == nil)
        #expect(message { try JobRules.retries(-1, .jobsFile) } == "retries must be between 0 and 100, not -1")
        #expect(message { try JobRules.retries(0, .flags) } == nil)
        #expect(message { try JobRules.delete(mode: .diff, .flags) } == "--delete goes with --mode full (incremental and diff runs already apply deletes)")
        #expect(message { try JobRules.delete(mode: .incremental, .jobsFile) } == "delete goes with mode: full (incremental and diff runs already apply deletes)")
        #expect(message { try JobRules.delete(mode: .twoWay, .flags) } == "--delete does not go with --two-way (deletes already go both ways)")
        #expect(message { try JobRules.delete(mode: .full, .jobsFile) } == nil)
        #expect(message { try JobRules.onConflict(mode: .full, .flags) } == "--on-conflict goes with --two-way")
        #expect(message { try JobRules.onConflict(mode: .diff, .jobsFile) } == "on_conflict goes with mode: two-way")
        #expect(message { try JobRules.newestField(policy: .aWins, .flags) } == "--newest-field goes with --on-conflict newest-wins")
        #expect(message { try JobRules.newestField(policy: .newestWins, .jobsFile) } == nil)
    }

    @Test func theJobsFileChecksTheSameRulesAndNamesTheLine() {
        for (text, expected) in [
            ("    batch_size: 0\n", "ferry.yml:5: batch_size must be between 1 and 100000, not 0"),
            ("    batch_size: lots\n", "ferry.yml:5: batch_size must be a whole number, not \"lots\""),
            ("    retries: 101\n", "ferry.yml:5: retries must be between 0 and 100, not 101"),
            ("    retries: some\n", "ferry.yml:5: retries must be a whole number, not \"some\""),
            ("    mode: diff\n    delete: true\n", "ferry.yml:6: delete goes with mode: full"),
            ("    mode: two-way\n    delete: yes\n", "ferry.yml:6: delete does not go with mode: two-way"),
        ] {
            let yaml = "jobs:\n  j:\n    source: file:a.jsonl\n    target: sqlite:b.db#t\n" + text
            var got: String?
            do { _ = try JobsFile.parse(yaml, file: "ferry.yml", environment: [:]) } catch { got = error.message }
            #expect(got?.hasPrefix(expected) == true, "\(text): \(got ?? "accepted")")
        }
        let fine = try? JobsFile.parse("jobs:\n  j:\n    source: file:a.jsonl\n    target: sqlite:b.db#t\n    delete: true\n    batch_size: 100000\n    retries: 0\n",
                                       file: "ferry.yml", environment: [:])
        #expect(fine?.first?.job.batchSize == 100_000 && fine?.first?.job.deleteMissing == true && fine?.first?.job.retry.maxAttempts == 1)
    }

    @Test func theEngineChecksAJobALibraryCallerBuilt() async throws {
        var job = SyncJob(source: "file:a.jsonl", target: "sqlite:b.db#t")
        job.mode = .incremental
        job.deleteMissing = true
        await #expect(throws: SyncError.self) { try await SyncEngine().run(job) }
        #expect(message { try JobRules.check(job) }?.hasPrefix("--delete goes with --mode full") == true)
        job.deleteMissing = false
        job.batchSize = 0
        #expect(message { try JobRules.check(job) } == "--batch-size must be between 1 and 100000, not 0")
    }
}
