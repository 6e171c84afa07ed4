import FerryCore
import GRDB
import GRDBSQLite

extension SQLiteWriter {
    /// Whether a server's change feed can go into this table from the records' text
    /// (``load(_:from:run:)``): the job changes nothing in the records, the key is the server's
    /// `id`, no version field is added, and this is not a two-way run's write.
    func takesFeedDirectly(from server: KintoEndpoint, job: SyncJob) -> Bool {
        job.transform.isIdentity && job.keyField == "id" && endpoint.options.keyField == "id"
            && server.options.keyField == "id" && server.options.versionField == nil
            && expected.isEmpty && recordHash == nil
    }

    /// One page of a server's change feed, in one transaction with its checkpoint, as the
    /// engine's path (``KintoEndpoint/item(_:)``, ``Run/prepare(_:incremental:)``,
    /// ``apply(_:cursor:)``) would write it: each record straight from its text to the table's
    /// statements (``DirectUpsert``, `last_modified` left out), each tombstone's `id` straight
    /// to the table's delete (``DirectDelete``); any the direct path declines through the
    /// engine's path in the same transaction.
    ///
    /// Measured on a full read of 200,000 records: parsing each page into dictionaries, and the
    /// lookups that followed, were a third of the engine's time.
    func load(_ page: KintoEndpoint.Feed.RawPage, from server: KintoEndpoint, run: inout Run) throws {
        let outcome = try page.body.withUnsafeBytes { body -> ApplyOutcome in
            func element(_ index: Int) -> UnsafeRawBufferPointer { UnsafeRawBufferPointer(rebasing: body[page.elements[index]]) }
            return try transaction { db in
                var outcome = ApplyOutcome()
                var delete: DirectDelete? = nil
                try self.load(count: page.elements.count, incremental: true, in: db, run: &run, outcome: &outcome,
                              item: { try server.item(JSON.parse(element($0))).0 }) { direct, index, outcome in
                    if page.tombstones[index] {
                        if delete == nil { delete = try DirectDelete(db, sql: self.deleteSQL) }
                        return try delete!.delete(tombstone: element(index), stepping: direct, outcome: &outcome)
                    }
                    return try direct.upsert(line: element(index), ignoring: KintoEndpoint.Feed.lastModifiedName, outcome: &outcome)
                }
                try db.run(self.tables.saveCheckpoint(job: self.job, cursor: .since(page.last)))
                return outcome
            }
        }
        committedCursor = .since(page.last)
        try run.absorb(outcome)
    }
}

/// The delete of ``SQLiteWriter/apply(_:in:outcome:)`` for a tombstone of a server's feed, its
/// `id` bound from the tombstone's text. It declines (returns false) where that path would do
/// something else: an `id` that is no key the direct path binds as it is (a whole-number double,
/// null, an empty string), a statement the table refuses.
struct DirectDelete {
    private let statement: SQLiteStatement

    init(_ db: Database, sql: String) throws {
        statement = try db.cachedStatement(sql: sql).sqliteStatement
    }

    /// Deletes the row of the tombstone's `id` (the last one, as a parse keeps), counted as
    /// deleted or already gone; false when the engine's path must take the tombstone.
    /// `direct` runs the statement, with the same answers to a refusal as an upsert.
    func delete(tombstone: UnsafeRawBufferPointer, stepping direct: DirectUpsert, outcome: inout ApplyOutcome) throws -> Bool {
        sqlite3_reset(statement)  // GRDB may have left it stepped: binding would then fail
        sqlite3_clear_bindings(statement)
        var bound: Bool? = nil  // nil: no id yet
        let statement = statement
        do {
            guard try JSON.forEachMember(ofObject: tombstone, { name, value in
                guard name.equals(Self.idName) else { return true }
                bound = DirectUpsert.isKey(value) && DirectUpsert.bind(value, to: statement, at: 1) == SQLITE_OK
                return true
            }), bound == true else { return false }
        } catch {
            return false  // the engine's path reports it
        }
        guard let deleted = try direct.step(statement) else { return false }
        if deleted { outcome.deleted += 1 } else { outcome.alreadyGone += 1 }
        return true
    }

    private static let idName = Array("id".utf8)
}
