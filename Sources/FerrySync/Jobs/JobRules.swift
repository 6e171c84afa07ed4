/// The rules a job's settings obey, written once for every way of giving a job: `ferry sync`'s
/// flags, a jobs file's keys and the engine (a library caller). Each rule takes how the
/// settings are spelled where the job came from, so the message names what the person wrote.
///
/// ```swift
/// try JobRules.batchSize(0, .flags)      // "--batch-size must be between 1 and 100000, not 0"
/// try JobRules.batchSize(0, .jobsFile)   // "batch_size must be between 1 and 100000, not 0"
/// ```
public enum JobRules {
    /// Records per batch a job may ask for.
    public static let batchSizes = 1...100_000
    /// Retries of one request a job may ask for.
    public static let retryCounts = 0...100
    /// How full a PostgreSQL table Ferry creates may fill its pages, in percent (PostgreSQL's own range).
    public static let fillFactors = 10...100

    /// A setting a rule names.
    public enum Setting: Sendable, Hashable {
        case mode, delete, batchSize, retries, onConflict, newestField, key, cursorField, dryRun, verify, fillFactor
        /// What starts the job's runs: `--follow`/`--every`/`--cron`, or a jobs file's `schedule:`.
        case schedule
    }

    /// How settings are written where a job comes from.
    public enum Spelling: Sendable {
        /// `ferry sync`'s flags: `--batch-size`, `--mode full`, `--two-way`.
        case flags
        /// A jobs file's keys: `batch_size`, `mode: full`.
        case jobsFile

        /// The setting's name: `--batch-size` or `batch_size`.
        public func name(_ setting: Setting) -> String {
            let flag = switch setting {
            case .mode: "--mode"
            case .delete: "--delete"
            case .batchSize: "--batch-size"
            case .retries: "--retries"
            case .onConflict: "--on-conflict"
            case .newestField: "--newest-field"
            case .key: "--key"
            case .cursorField: "--cursor-field"
            case .dryRun: "--dry-run"
            case .verify: "--verify"
            case .schedule: "--schedule"
            case .fillFactor: "--fill-factor"
            }
            return self == .flags ? flag : String(flag.dropFirst(2).map { $0 == "-" ? "_" : $0 })
        }

        /// The setting with a value: `--mode full` or `mode: full` (`--two-way` for that mode's flag,
        /// `--follow` for `schedule: follow`).
        public func name(_ setting: Setting, is value: String) -> String {
            if self == .flags, setting == .mode, value == SyncMode.twoWay.rawValue { return "--two-way" }
            if self == .flags, setting == .schedule { return "--" + value }
            return name(setting) + (self == .flags ? " " : ": ") + value
        }
    }

    public static func batchSize(_ size: Int, _ spelling: Spelling) throws(SyncError) {
        guard batchSizes.contains(size) else {
            throw .badInput("\(spelling.name(.batchSize)) must be between \(batchSizes.lowerBound) and \(batchSizes.upperBound), not \(size)")
        }
    }

    public static func retries(_ count: Int, _ spelling: Spelling) throws(SyncError) {
        guard retryCounts.contains(count) else {
            throw .badInput("\(spelling.name(.retries)) must be between \(retryCounts.lowerBound) and \(retryCounts.upperBound), not \(count)")
        }
    }

    public static func fillFactor(_ percent: Int, _ spelling: Spelling) throws(SyncError) {
        guard fillFactors.contains(percent) else {
            throw .badInput("\(spelling.name(.fillFactor)) must be between \(fillFactors.lowerBound) and \(fillFactors.upperBound) (percent of each page), not \(percent)")
        }
    }

    /// Deleting what the source lacks is a full run's: other modes already apply deletes.
    public static func delete(mode: SyncMode, _ spelling: Spelling) throws(SyncError) {
        if mode == .twoWay {
            throw .badInput("\(spelling.name(.delete)) does not go with \(spelling.name(.mode, is: mode.rawValue)) (deletes already go both ways)")
        }
        guard mode == .full else {
            throw .badInput("\(spelling.name(.delete)) goes with \(spelling.name(.mode, is: SyncMode.full.rawValue)) (incremental and diff runs already apply deletes)")
        }
    }

    /// A conflict policy is a two-way run's.
    public static func onConflict(mode: SyncMode, _ spelling: Spelling) throws(SyncError) {
        guard mode == .twoWay else {
            throw .badInput("\(spelling.name(.onConflict)) goes with \(spelling.name(.mode, is: SyncMode.twoWay.rawValue))")
        }
    }

    /// The field that says which side is newer is newest-wins's.
    public static func newestField(policy: ConflictPolicy?, _ spelling: Spelling) throws(SyncError) {
        guard policy == .newestWins else {
            throw .badInput("\(spelling.name(.newestField)) goes with \(spelling.name(.onConflict, is: "newest-wins"))")
        }
    }

    /// The mode named by its text; the message lists the modes.
    public static func mode(parsing text: String, _ spelling: Spelling) throws(SyncError) -> SyncMode {
        guard let mode = SyncMode(rawValue: text) else {
            throw .badInput("\(spelling.name(.mode)) must be \(SyncMode.allCases.map(\.rawValue).dropLast().joined(separator: ", ")) or \(SyncMode.twoWay.rawValue), not \"\(text)\"")
        }
        return mode
    }

    /// The conflict policy named by its text; the message lists the policies.
    public static func onConflict(parsing text: String, _ spelling: Spelling) throws(SyncError) -> ConflictPolicy {
        guard let policy = ConflictPolicy(rawValue: text) else {
            throw .badInput("\(spelling.name(.onConflict)) must be \(ConflictPolicy.allCases.map(\.rawValue).joined(separator: ", ")), not \"\(text)\"")
        }
        return policy
    }

    /// A field name a setting gives (`--key`, `--cursor-field`, `--newest-field`) is not empty.
    public static func field(_ name: String, _ setting: Setting, _ spelling: Spelling) throws(SyncError) {
        if name.isEmpty { throw .badInput("\(spelling.name(setting)) cannot be empty") }
    }

    /// A follow job applies changes as they come: incrementally (or both ways), and it neither
    /// mirrors deletes of a full run, nor plans without changing, nor verifies a finished run.
    public static func follow(mode: SyncMode, delete: Bool, dryRun: Bool, verify: Bool, _ spelling: Spelling) throws(SyncError) {
        let follow = spelling.name(.schedule, is: "follow")
        if mode == .diff {
            throw .badInput("\(follow) applies changes incrementally (or both ways with \(spelling.name(.mode, is: SyncMode.twoWay.rawValue))); \(spelling.name(.mode, is: mode.rawValue)) does not go with it")
        }
        if delete || dryRun || verify {
            throw .badInput("\(follow) does not go with \(spelling.name(.delete)), \(spelling.name(.dryRun)) or \(spelling.name(.verify))")
        }
    }

    /// The rules a finished job obeys, whichever way it was given (the engine checks them before a
    /// run, for callers of the library; the flags and the jobs file check them as they read).
    public static func check(_ job: SyncJob, _ spelling: Spelling = .flags) throws(SyncError) {
        if let size = job.batchSize { try batchSize(size, spelling) }
        if let percent = job.fillFactor { try fillFactor(percent, spelling) }
        if job.deleteMissing { try delete(mode: job.mode, spelling) }
    }
}
