import FerryCore
import GRDB

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
    /// statements (``DirectUpsert``, `last_modified` left out); tombstones, and any record the
    /// direct path declines, through the engine's path in the same transaction.
    ///
    /// Measured on a full read of 200,000 records: parsing each page into dictionaries, and the
    /// lookups that followed, were a third of the engine's time.
    func load(_ page: KintoEndpoint.Feed.RawPage, from server: KintoEndpoint, run: inout Run) throws {
        let outcome = try page.body.withUnsafeBytes { body -> ApplyOutcome in
            func element(_ index: Int) -> UnsafeRawBufferPointer { UnsafeRawBufferPointer(rebasing: body[page.elements[index]]) }
            return try transaction { db in
                var outcome = ApplyOutcome()
                try self.load(count: page.elements.count, incremental: true, in: db, run: &run, outcome: &outcome,
                              item: { try server.item(JSON.parse(element($0))).0 }) { direct, index, outcome in
                    guard !page.tombstones[index] else { return false }
                    return try direct.upsert(line: element(index), ignoring: KintoEndpoint.Feed.lastModifiedName, outcome: &outcome)
                }
                try db.run(self.tables.saveCheckpoint(job: self.job, cursor: .since(page.last)))
                return outcome
            }
        }
        try run.absorb(outcome)
    }
}
