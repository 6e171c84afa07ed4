public import FerryCore
import GRDB

/// The base of two-way jobs (what both sides agreed on after the last run) and their conflict log.
extension StateStore {
    /// One record's base: the agreed content hash and each side's version when it has one.
    public struct Base: Sendable, Equatable {
        public var hash: String
        public var versionA: Int64?
        public var versionB: Int64?
    }

    /// A record changed on both sides that a manual policy left for a person to settle.
    public struct Conflict: Sendable {
        public var id: Int64
        public var job: String
        public var key: String
        /// The field that holds the key in the job's records.
        public var keyField: String
        /// `open` (waiting for `ferry conflicts resolve`), `resolved` (the next run applies the
        /// decision) or `settled` (applied, or both sides came to agree).
        public var status: String
        /// Each side's record when the conflict was found; nil: deleted there.
        public var a: JSON?
        public var b: JSON?
        public var aHash: String?
        public var bHash: String?
        public var detectedAt: String
        /// The decision: the record both sides get (nil with a ``taken`` side: delete on both).
        public var resolution: JSON?
        public var resolutionHash: String?
        /// `a`, `b` or the file the resolution came from.
        public var taken: String?
        public var resolvedAt: String?

        public var json: JSON {
            var out: [String: JSON] = [
                "id": .int(id), "job": .string(job), "key": .string(key), "status": .string(status),
                "a": a ?? .null, "b": b ?? .null, "detectedAt": .string(detectedAt),
            ]
            if let taken {
                out["taken"] = .string(taken)
                out["resolution"] = resolution ?? .null
                out["resolvedAt"] = resolvedAt.map(JSON.string) ?? .null
            }
            return .object(out)
        }
    }

    /// Every base record of a job, by key.
    public func bases(job: String) throws -> [String: Base] {
        try queue.read { db in
            var out: [String: Base] = [:]
            let rows = try Row.fetchCursor(db, sql: "SELECT key, hash, version_a, version_b FROM two_way_base WHERE job = ?", arguments: [job])
            while let row = try rows.next() { out[row[0]] = Base(hash: row[1], versionA: row[2], versionB: row[3]) }
            return out
        }
    }

    /// Sets (or, with nil, forgets) base records in one transaction.
    public func saveBases(job: String, _ changes: [(key: String, base: Base?)]) throws {
        guard !changes.isEmpty else { return }
        try queue.write { db in
            for (key, base) in changes {
                if let base {
                    try db.execute(sql: """
                        INSERT INTO two_way_base (job, key, hash, version_a, version_b) VALUES (?, ?, ?, ?, ?)
                        ON CONFLICT(job, key) DO UPDATE SET hash = excluded.hash, version_a = excluded.version_a, version_b = excluded.version_b
                        """, arguments: [job, key, base.hash, base.versionA, base.versionB])
                } else {
                    try db.execute(sql: "DELETE FROM two_way_base WHERE job = ? AND key = ?", arguments: [job, key])
                }
            }
        }
    }

    /// Forgets a job's base (`--reset`): the next run compares both sides as if for the first time.
    public func resetBases(job: String) throws {
        try queue.write { db in try db.execute(sql: "DELETE FROM two_way_base WHERE job = ?", arguments: [job]) }
    }

    private static let conflictColumns = "id, job, key, key_field, status, a, b, a_hash, b_hash, detected_at, resolution, resolution_hash, taken, resolved_at"

    private static func conflict(_ row: Row) -> Conflict {
        func json(_ text: String?) -> JSON? { text.flatMap { try? JSON.parse($0) } }
        return Conflict(id: row[0], job: row[1], key: row[2], keyField: row[3], status: row[4], a: json(row[5]), b: json(row[6]),
                        aHash: row[7], bHash: row[8], detectedAt: row[9], resolution: json(row[10]), resolutionHash: row[11],
                        taken: row[12], resolvedAt: row[13])
    }

    /// Conflicts, newest first: of one job when given, unsettled ones unless `all`.
    public func conflicts(job: String? = nil, all: Bool = false, limit: Int = 1000) throws -> [Conflict] {
        try queue.read { db in
            var conditions: [String] = []
            var arguments: [(any DatabaseValueConvertible)?] = []
            if let job { conditions.append("job = ?"); arguments.append(job) }
            if !all { conditions.append("status != 'settled'") }
            let filter = conditions.isEmpty ? "" : " WHERE " + conditions.joined(separator: " AND ")
            arguments.append(limit)
            return try Row.fetchAll(db, sql: "SELECT \(Self.conflictColumns) FROM conflicts\(filter) ORDER BY id DESC LIMIT ?",
                                    arguments: StatementArguments(arguments)).map(Self.conflict)
        }
    }

    public func conflict(id: Int64) throws -> Conflict? {
        try queue.read { db in
            try Row.fetchOne(db, sql: "SELECT \(Self.conflictColumns) FROM conflicts WHERE id = ?", arguments: [id]).map(Self.conflict)
        }
    }

    /// Logs a conflict, or refreshes the unsettled one of the same record (its decision, if
    /// any, is dropped: the sides changed since it was taken).
    /// - Returns: whether anything changed (a run that finds the same conflict again logs nothing new).
    @discardableResult
    public func logConflict(job: String, key: String, keyField: String, a: JSON?, b: JSON?, aHash: String?, bHash: String?) throws -> Bool {
        try queue.write { db in
            let existing = try Row.fetchOne(db, sql: "SELECT id, a_hash, b_hash, status FROM conflicts WHERE job = ? AND key = ? AND status != 'settled'", arguments: [job, key])
            if let existing {
                let (oldA, oldB, status): (String?, String?, String) = (existing[1], existing[2], existing[3])
                if oldA == aHash && oldB == bHash && status == "open" { return false }
                try db.execute(sql: """
                    UPDATE conflicts SET status = 'open', a = ?, b = ?, a_hash = ?, b_hash = ?, detected_at = ?,
                        resolution = NULL, resolution_hash = NULL, taken = NULL, resolved_at = NULL WHERE id = ?
                    """, arguments: [a?.serialized(), b?.serialized(), aHash, bHash, Self.now(), existing[0] as Int64])
                return true
            }
            try db.execute(sql: """
                INSERT INTO conflicts (job, key, key_field, status, a, b, a_hash, b_hash, detected_at) VALUES (?, ?, ?, 'open', ?, ?, ?, ?, ?)
                """, arguments: [job, key, keyField, a?.serialized(), b?.serialized(), aHash, bHash, Self.now()])
            return true
        }
    }

    /// Records the decision for an open conflict; the job's next run applies it to both sides.
    public func resolveConflict(id: Int64, resolution: JSON?, resolutionHash: String?, taken: String) throws {
        try queue.write { db in
            try db.execute(sql: """
                UPDATE conflicts SET status = 'resolved', resolution = ?, resolution_hash = ?, taken = ?, resolved_at = ? WHERE id = ?
                """, arguments: [resolution?.serialized(), resolutionHash, taken, Self.now(), id])
        }
    }

    /// Marks conflicts settled: their decision was applied, or both sides came to agree.
    public func settleConflicts(ids: [Int64]) throws {
        guard !ids.isEmpty else { return }
        try queue.write { db in
            for id in ids { try db.execute(sql: "UPDATE conflicts SET status = 'settled' WHERE id = ?", arguments: [id]) }
        }
    }
}
