import FerryCore
import FerryStore
import Foundation
import NIOConcurrencyHelpers

/// What a collection's metadata asks of its records:
/// - `schema`: a JSON Schema every record must match (Kinto's schema validation); a record
///   that does not is refused with 400, the failing path in `details`.
/// - `unique_fields`: top-level fields no two live records may share a value of; a duplicate
///   is refused with 409.
/// - `tombstones`: how long its tombstones are kept (``TombstoneRules``), for the purge.
struct CollectionRules: Sendable {
    var schema: JSONSchema? = nil
    var uniqueFields: [String] = []
    var tombstones = TombstoneRules()

    init() {}

    /// Reads and checks the rules of a collection's data (400 when they are malformed).
    init(_ data: [String: JSON]) throws(KintoError) {
        if let value = data["schema"], value != .null {
            guard case .object = value else {
                throw .invalidParameters(location: "body", name: "data.schema", description: "data.schema must be a JSON Schema object")
            }
            do {
                schema = try JSONSchema(value)
            } catch {
                throw .invalidParameters(location: "body", name: "data.schema", description: "data.schema is not a valid JSON Schema: \(error.message)")
            }
        }
        if let value = data["unique_fields"], value != .null {
            guard case .array(let list) = value, list.count <= 16,
                  let names = Optional(list.compactMap(\.stringValue)), names.count == list.count,
                  names.allSatisfy({ !$0.isEmpty && !$0.contains(".") && $0 != "id" && $0 != "last_modified" && FieldName.isValid($0) })
            else {
                throw .invalidParameters(location: "body", name: "data.unique_fields",
                                         description: "data.unique_fields must be a list of at most 16 top-level field names (id is unique already)")
            }
            uniqueFields = names
        }
        if let value = data["tombstones"], value != .null {
            tombstones = try TombstoneRules(value)
        }
    }

    /// Refuses a record that breaks the rules.
    /// - Parameter schemaChecked: the schema's verdict on `data`, when it was reached before the
    ///   transaction (``PreparedRecord``): nil passed, else the error to answer.
    func check(record data: [String: JSON], id: String, key: ResourceKey, session: any StorageSession,
               schemaChecked: KintoError?? = nil) throws {
        if let schemaChecked {
            if let error = schemaChecked { throw error }
        } else {
            try checkSchema(record: data)
        }
        try checkUnique(record: data, id: id, key: key, session: session)
    }

    /// Refuses a record that does not match the schema (400); needs no storage.
    func checkSchema(record data: [String: JSON]) throws(KintoError) {
        if let schema {
            var fields = data
            fields.removeValue(forKey: "id")
            fields.removeValue(forKey: "last_modified")
            let violations = schema.validate(.object(fields), limit: 10)
            if let first = violations.first {
                let details: [JSON] = violations.map { violation in
                    ["location": "body", "name": .string(Self.dotted(violation.path)), "description": .string(violation.message)]
                }
                throw KintoError(status: 400, errno: KintoError.Errno.invalidParameters, error: "Invalid parameters",
                                 message: "\(Self.dotted(first.path)) in body: \(first.message)", details: .array(details))
            }
        }
    }

    /// Refuses a record that shares a unique field's value with another live record (409).
    func checkUnique(record data: [String: JSON], id: String, key: ResourceKey, session: any StorageSession) throws {
        for field in uniqueFields {
            guard let value = data[field], value != .null else { continue }
            let query = ListQuery(filters: [Filter(field, .eq, value)], sort: [], limit: 2)  // any two will do
            var clash = false
            try session.list(key, query: query) { other in
                if other.id != id { clash = true }
                return !clash
            }
            if clash {
                throw KintoError(status: 409, errno: KintoError.Errno.constraintViolated, error: "Conflict",
                                 message: "Another record already has this \(field)",
                                 details: ["field": .string(field), "value": value])
            }
        }
    }

    /// `data.address.city` for the JSON pointer `/address/city`.
    static func dotted(_ pointer: String) -> String {
        pointer.isEmpty ? "data" : "data" + pointer.replacingOccurrences(of: "/", with: ".")
    }
}

/// Compiled rules, per collection version: a schema is compiled once, not for every record.
final class RulesCache: Sendable {
    private let entries = NIOLockedValueBox<[String: (Int64, CollectionRules)]>([:])

    func rules(uri: String, version: Int64, make: () throws -> CollectionRules) throws -> CollectionRules {
        if let (v, rules) = entries.withLockedValue({ $0[uri] }), v == version { return rules }
        let rules = try make()
        entries.withLockedValue { entries in
            if entries.count > 1000 { entries.removeAll() }
            entries[uri] = (version, rules)
        }
        return rules
    }
}

extension KintoAPI {
    /// The rules of a stored collection (compiled once per version).
    func rules(of collection: StoredObject, uri: String) throws -> CollectionRules {
        try rulesCache.rules(uri: uri, version: collection.lastModified) {
            let data = try collection.parsed()
            guard data["schema"] != nil || data["unique_fields"] != nil else { return CollectionRules() }
            return try CollectionRules(data)
        }
    }
}
