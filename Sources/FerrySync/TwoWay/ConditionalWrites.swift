import FerryCore
import GRDB
import PostgresNIO

// Compare-and-set for the table sides of a two-way run: a row changed after the run read it
// (by an app, between the read and the write) is left as it is and reported as changed
// meanwhile; the next run reads it and decides again. The row is read again inside the write
// transaction, which holds the database's write lock, so nothing can change it in between.

extension SyncEngine {
    /// A record's hash as a two-way run compares it: without the fields either side manages
    /// itself (nil: the record has no usable key).
    static func twoWayHash(_ fields: [String: JSON], keyField: String, managed: Set<String>) -> String? {
        var fields = fields
        for field in managed { fields.removeValue(forKey: field) }
        guard let key = fields[keyField].flatMap(RecordKey.init) else { return nil }
        return RecordHash(fields: fields, keyField: keyField, keyText: key.text).description
    }
}

extension SQLiteWriter {
    func expect(key: RecordKey, exists: Bool, version: Int64?, hash: String?) {
        expected[key.text] = exists ? hash : .some(nil)
    }

    func hashRecords(with hash: @escaping ([String: JSON]) -> String?) { recordHash = hash }

    /// The keys of `changes` whose rows are no longer as the two-way run read them (and forgets
    /// the conditions, which hold for one batch).
    func changedMeanwhile(_ changes: [Change], in db: Database) throws -> Set<String> {
        guard !expected.isEmpty, let recordHash else { return [] }
        defer { expected = [:] }
        guard !endpoint.columns.isEmpty else { return [] }  // no table yet: every row is absent
        // Takes the write lock before reading, so the rows read stay so until the commit.
        try db.execute(sql: "UPDATE \(FerryTables.checkpoints) SET job = job WHERE 0")
        let keyField = endpoint.options.keyField
        let keyType = endpoint.columns.first { $0.name == keyField }?.type ?? ""
        let sql = "SELECT * FROM \(endpoint.quotedTable) WHERE \(SQLiteEndpoint.quote(keyField)) = ?"
        var changed = Set<String>()
        for change in changes {
            guard let wanted = expected[change.key.text] else { continue }
            let row = try endpoint.fetch(db, sql, [SQLiteEndpoint.databaseValue(change.key.value, type: keyType)]).first
            if row.flatMap({ recordHash($0.fields) }) != wanted { changed.insert(change.key.text) }
        }
        return changed
    }
}

extension PostgresWriter {
    func expect(key: RecordKey, exists: Bool, version: Int64?, hash: String?) {
        expected[key.text] = exists ? hash : .some(nil)
    }

    func hashRecords(with hash: @escaping ([String: JSON]) -> String?) { recordHash = hash }

    /// In the batch's transaction: locks the rows of `changes` that have a condition (`FOR
    /// UPDATE`, so nothing changes them until the commit) and returns the keys of those no longer
    /// as the two-way run read them. A row inserted by another session after this read, where the
    /// run read none, is not locked by it: that narrow case is overwritten.
    func lockChangedMeanwhile(_ changes: [Change]) async throws -> [RecordKey] {
        guard !conditions.isEmpty, let recordHash, !endpoint.columns.isEmpty else { return [] }
        let checked = changes.filter { conditions[$0.key.text] != nil }
        guard !checked.isEmpty else { return [] }
        let keyField = endpoint.options.keyField
        var binds = PostgresBindings()
        binds.append(checked.map(\.key.text))
        let rows = try await session.query(
            "SELECT row_to_json(r.*)::text FROM \(endpoint.quotedTable) r WHERE \(PostgresEndpoint.quote(keyField))::text = ANY($1) FOR UPDATE", binds)
        var current: [String: String] = [:]
        for row in rows {
            let fields = try endpoint.fields(row)
            if let key = fields[keyField].flatMap(RecordKey.init) { current[key.text] = recordHash(fields) }
        }
        return checked.filter { current[$0.key.text] != conditions[$0.key.text]! }.map(\.key)
    }
}
