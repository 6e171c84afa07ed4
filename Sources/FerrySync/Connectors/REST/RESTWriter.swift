import FerryCore
import NIOConcurrencyHelpers
import NIOHTTP1

/// The requests a REST target is written with; shared by the concurrent requests of a batch.
struct RESTCalls: Sendable {
    let http: HTTPTransport
    let config: RESTConfiguration
    let keyField: String
    let origin: String
    let displayName: String
    /// `upsert=auto`: whether the last upsert turned out to be a create.
    let lastWasCreate = NIOLockedValueBox(false)

    init(endpoint: RESTEndpoint) {
        http = endpoint.http
        config = endpoint.config
        keyField = endpoint.options.keyField
        origin = endpoint.origin
        displayName = endpoint.displayName
    }

    enum Outcome: Sendable {
        case created, updated, written, deleted, alreadyGone
        case rejected(String)
    }

    /// A call's answer: the status and the request as messages name it.
    struct Answer {
        var status: Int
        var request: String
        var response: HTTPTransport.Response

        var succeeded: Bool { (200..<300).contains(status) }
    }

    func body(_ record: Record) -> [UInt8] {
        var fields = record.fields
        if !config.sendKey { fields.removeValue(forKey: keyField) }
        for name in config.managedFields { fields.removeValue(forKey: name) }
        let document: JSON = config.wrap.map { .object([$0: .object(fields)]) } ?? .object(fields)
        return document.serializedBytes()
    }

    /// Sends one templated request; nil when the record lacks a field the path needs.
    func call(_ template: RESTConfiguration.Template, key: RecordKey, record: Record?) async throws -> Result<Answer, RESTConfiguration.Template.MissingField> {
        let path: String
        switch template.path(key: key, fields: record?.fields, keyField: keyField) {
        case .success(let p): path = p
        case .failure(let missing): return .failure(missing)
        }
        let url = path.hasPrefix("/") ? origin + path : path
        let body = record.map(self.body)
        let response = try await http.send(HTTPMethod(rawValue: template.method), url, body: template.method == "DELETE" ? nil : body)
        let answer = Answer(status: response.status, request: "\(template.method) \(http.redact(path))", response: response)
        // Not about this record: stop the run (nothing after this batch's checkpoint is lost).
        switch response.status {
        case 401, 403:
            throw SyncError(.unauthorized, "\(displayName): the API refused \(answer.request) (\(response.status))\(RESTEndpoint.excerpt(response.body).map { ": " + $0 } ?? ""); check --target-auth")
        case 500...:
            throw SyncError(.protocolError, "\(displayName): the API answered \(response.status) to \(answer.request) after \(http.policy.maxAttempts) attempts\(RESTEndpoint.excerpt(response.body).map { ": " + $0 } ?? "")")
        default:
            return .success(answer)
        }
    }

    /// The record is refused: what each call answered.
    func rejection(_ answers: Answer...) -> Outcome {
        .rejected(answers.map { "\($0.request) answered \($0.status)\(RESTEndpoint.excerpt($0.response.body).map { ": " + $0 } ?? "")" }
            .joined(separator: "; then "))
    }

    func missing(_ field: RESTConfiguration.Template.MissingField, _ template: RESTConfiguration.Template) -> Outcome {
        .rejected("the record has no usable \"\(field.name)\" for \(template)")
    }

    /// Creates or replaces one record.
    /// - Parameter exists: what a diff already knows about the target, if anything.
    func upsert(_ record: Record, exists: Bool?) async throws -> Outcome {
        if config.upsert == .put {
            switch try await call(config.update, key: record.key, record: record) {
            case .failure(let field): return missing(field, config.update)
            case .success(let answer):
                guard answer.succeeded else { return rejection(answer) }
                return answer.status == 201 ? .created : .written
            }
        }
        let createFirst: Bool
        if let exists {
            createFirst = !exists
        } else {
            switch config.upsert {
            case .createFirst: createFirst = true
            case .updateFirst, .put: createFirst = false
            case .auto: createFirst = lastWasCreate.withLockedValue { $0 }
            }
        }
        let steps = createFirst ? [config.create, config.update] : [config.update, config.create]
        var answers: [Answer] = []
        for (index, template) in steps.enumerated() {
            let answer: Answer
            switch try await call(template, key: record.key, record: record) {
            case .failure(let field): return missing(field, template)
            case .success(let a): answer = a
            }
            let isCreate = template == config.create
            if answer.succeeded {
                if config.upsert == .auto { lastWasCreate.withLockedValue { $0 = isCreate } }
                return isCreate ? .created : .updated
            }
            answers.append(answer)
            // Only "already exists" after a create, or "not there" after an update, tries the other call.
            let tryOther = isCreate ? config.existsStatus.contains(answer.status) : config.goneStatus.contains(answer.status)
            guard tryOther, index == 0 else { break }
        }
        return answers.count == 2 ? rejection(answers[0], answers[1]) : rejection(answers[0])
    }

    func delete(_ key: RecordKey) async throws -> Outcome {
        switch try await call(config.delete, key: key, record: nil) {
        case .failure(let field): return missing(field, config.delete)
        case .success(let answer):
            if answer.succeeded { return .deleted }
            if config.goneStatus.contains(answer.status) { return .alreadyGone }
            return rejection(answer)
        }
    }
}

/// Writes a batch as one request per record, `concurrency` at a time.
final class RESTWriter: TargetWriter {
    let calls: RESTCalls
    /// What a diff learnt about keys of the coming batch: true when the target has it.
    private var known: [RecordKey: Bool] = [:]

    init(calls: RESTCalls) { self.calls = calls }

    var commitsEachBatch: Bool { true }
    var keepsCheckpoint: Bool { false }
    func storedCursor() async throws -> Cursor? { nil }
    func finish(cursor: Cursor?) async throws -> ApplyOutcome { ApplyOutcome() }

    func note(key: RecordKey, exists: Bool) { known[key] = exists }

    func apply(_ changes: [Change], cursor: Cursor?) async throws -> ApplyOutcome {
        // The last change of a key wins, so two requests for one record never race.
        var latest: [RecordKey: Int] = [:]
        for (index, change) in changes.enumerated() { latest[change.key] = index }
        let work: [(Change, Bool?)] = changes.enumerated().compactMap { index, change in
            latest[change.key] == index ? (change, known.removeValue(forKey: change.key)) : nil
        }
        var outcome = ApplyOutcome()
        let calls = self.calls
        let limit = calls.config.concurrency
        try await withThrowingTaskGroup(of: (Change, RESTCalls.Outcome).self) { group in
            var next = 0
            func add() {
                let (change, exists) = work[next]
                next += 1
                group.addTask {
                    switch change {
                    case .upsert(let record): (change, try await calls.upsert(record, exists: exists))
                    case .delete(let key): (change, try await calls.delete(key))
                    }
                }
            }
            while next < min(limit, work.count) { add() }
            while let (change, result) = try await group.next() {
                switch result {
                case .created: outcome.created += 1
                case .updated: outcome.updated += 1
                case .written: outcome.written += 1
                case .deleted: outcome.deleted += 1
                case .alreadyGone: outcome.alreadyGone += 1
                case .rejected(let reason): outcome.rejected.append((change, reason))
                }
                if next < work.count { add() }
            }
        }
        return outcome
    }
}
