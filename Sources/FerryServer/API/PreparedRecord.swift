import FerryCore
import FerryStore

/// The part of a record write that needs no transaction, done before the batch takes SQLite's
/// single writer: the body's `data` serialized (``RecordText``) and checked against the
/// collection's schema as it was read just before. In the transaction the write uses both only
/// where they still hold: the text when the record's data is the body's, the schema's verdict
/// when the collection is still at the version it was checked against (else it checks again).
struct PreparedRecord: Sendable {
    /// The body's `data` as stored, without `id` and `last_modified`.
    var text: RecordText
    /// The schema's verdict on the body's `data` (nil inside: it passed), and the version (the
    /// collection's `last_modified`) of the schema it holds for; nil when none was reached.
    var schema: (version: Int64, error: KintoError?)?

    /// The verdict, when it was reached for `collection`'s current version.
    func schemaVerdict(for collection: StoredObject) -> KintoError?? {
        guard let schema, schema.version == collection.lastModified else { return nil }
        return .some(schema.error)
    }
}
