public import FerryCore

/// A job from JSON (or any `Decoder`), with a jobs file's keys, for callers of the library:
///
/// ```swift
/// let spec = try JSONDecoder().decode(JobSpec.self, from: Data(#"{"source": "file:a.jsonl", "target": "sqlite:b.db#t", "batch_size": 500}"#.utf8))
/// ```
/// Unknown keys are errors; text settings go through the parsers the jobs file and the flags
/// use, and the result through ``JobSpec/validate(_:)``, so a bad value fails with the jobs
/// file's message (a `DecodingError.dataCorrupted` whose coding path is the setting's key).
extension JobSpec: Decodable {
    enum Key: String, CodingKey, CaseIterable {
        case name, source, target, mode, delete, key, cursorField = "cursor_field", batchSize = "batch_size", transform, verify, strict
        case deadLetter = "dead_letter", sourceAuth = "source_auth", targetAuth = "target_auth", schedule, dryRun = "dry_run", retries
        case sourceREST = "source_rest", targetREST = "target_rest", onConflict = "on_conflict", newestField = "newest_field", reconcile
        case fillFactor = "fill_factor"

        /// The key of a setting a rule names.
        init(_ setting: JobRules.Setting) {
            self = switch setting {
            case .mode: .mode
            case .delete: .delete
            case .batchSize: .batchSize
            case .retries: .retries
            case .onConflict: .onConflict
            case .newestField: .newestField
            case .key: .key
            case .cursorField: .cursorField
            case .dryRun: .dryRun
            case .verify: .verify
            case .schedule: .schedule
            case .fillFactor: .fillFactor
            }
        }
    }

    /// A key the container holds that a job does not have.
    private struct AnyKey: CodingKey {
        var stringValue: String
        var intValue: Int? { nil }
        init(stringValue: String) { self.stringValue = stringValue }
        init?(intValue: Int) { nil }
    }

    public init(from decoder: any Decoder) throws {
        let all = try decoder.container(keyedBy: AnyKey.self)
        for key in all.allKeys where Key(rawValue: key.stringValue) == nil {
            throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath + [key],
                                                    debugDescription: "unknown key \"\(key.stringValue)\" (expected one of \(Key.allCases.map(\.rawValue).sorted().joined(separator: ", ")))"))
        }
        let c = try decoder.container(keyedBy: Key.self)
        func invalid(_ key: Key, _ message: String) -> DecodingError {
            .dataCorrupted(.init(codingPath: c.codingPath + [key], debugDescription: message))
        }
        func parsed<T>(_ key: Key, _ parse: (String) throws(SyncError) -> T) throws -> T? {
            guard let text = try c.decodeIfPresent(String.self, forKey: key) else { return nil }
            do { return try parse(text) } catch { throw invalid(key, error.message) }
        }
        self.init(source: try c.decode(String.self, forKey: .source), target: try c.decode(String.self, forKey: .target))
        name = try c.decodeIfPresent(String.self, forKey: .name)
        mode = try parsed(.mode) { text throws(SyncError) in try JobRules.mode(parsing: text, .jobsFile) } ?? mode
        onConflict = try parsed(.onConflict) { text throws(SyncError) in try JobRules.onConflict(parsing: text, .jobsFile) }
        trigger = try parsed(.schedule) { text throws(SyncError) in try JobTrigger.parse(text) } ?? trigger
        delete = try c.decodeIfPresent(Bool.self, forKey: .delete) ?? delete
        key = try c.decodeIfPresent(String.self, forKey: .key) ?? key
        cursorField = try c.decodeIfPresent(String.self, forKey: .cursorField)
        batchSize = try c.decodeIfPresent(Int.self, forKey: .batchSize)
        retries = try c.decodeIfPresent(Int.self, forKey: .retries) ?? retries
        fillFactor = try c.decodeIfPresent(Int.self, forKey: .fillFactor)
        newestField = try c.decodeIfPresent(String.self, forKey: .newestField)
        verify = try c.decodeIfPresent(Bool.self, forKey: .verify) ?? verify
        strict = try c.decodeIfPresent(Bool.self, forKey: .strict) ?? strict
        dryRun = try c.decodeIfPresent(Bool.self, forKey: .dryRun) ?? dryRun
        reconcile = try c.decodeIfPresent(Bool.self, forKey: .reconcile) ?? reconcile
        deadLetter = try c.decodeIfPresent(String.self, forKey: .deadLetter)
        sourceAuth = try c.decodeIfPresent(String.self, forKey: .sourceAuth)
        targetAuth = try c.decodeIfPresent(String.self, forKey: .targetAuth)
        sourceREST = try c.decodeIfPresent([String: String].self, forKey: .sourceREST) ?? [:]
        targetREST = try c.decodeIfPresent([String: String].self, forKey: .targetREST) ?? [:]
        if let steps = try c.decodeIfPresent(TransformSteps.self, forKey: .transform) {
            do { transform = try steps.transform() } catch { throw invalid(.transform, error.message) }
        }
        do { try validate(.jobsFile) } catch { throw invalid(Key(error.setting), error.message) }
    }

    /// A transform as a jobs file writes it: `{rename: {old: new}, drop: [f], set: {f: v}, cast: {f: int}, filter: ["age>=18"]}`.
    private struct TransformSteps: Decodable {
        var rename: [String: String]?
        var drop: [String]?
        var set: [String: DecodedJSON]?
        var cast: [String: String]?
        var filter: [String]?

        func transform() throws(SyncError) -> Transform {
            var transform = Transform()
            transform.rename = rename ?? [:]
            transform.drop = drop ?? []
            transform.set = (set ?? [:]).mapValues(\.value)
            for (field, name) in cast ?? [:] {
                guard let type = Transform.CastType(name: name) else { throw .badInput("cast types are int, double, string, bool or json") }
                transform.cast[field] = type
            }
            for text in filter ?? [] { transform.filter.append(try Transform.Condition(parsing: text)) }
            return transform
        }
    }

    /// Any JSON value a decoder holds.
    private struct DecodedJSON: Decodable {
        var value: JSON

        init(from decoder: any Decoder) throws {
            if var list = try? decoder.unkeyedContainer() {
                var items: [JSON] = []
                while !list.isAtEnd { items.append(try list.decode(DecodedJSON.self).value) }
                value = .array(items)
            } else if let object = try? decoder.container(keyedBy: AnyKey.self) {
                var fields: [String: JSON] = [:]
                for key in object.allKeys { fields[key.stringValue] = try object.decode(DecodedJSON.self, forKey: key).value }
                value = .object(fields)
            } else {
                let one = try decoder.singleValueContainer()
                if one.decodeNil() {
                    value = .null
                } else if let bool = try? one.decode(Bool.self) {
                    value = .bool(bool)
                } else if let int = try? one.decode(Int64.self) {
                    value = .int(int)
                } else if let double = try? one.decode(Double.self) {
                    value = .double(double)
                } else {
                    value = .string(try one.decode(String.self))
                }
            }
        }
    }
}
