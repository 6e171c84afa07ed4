import FerryCore
import FerryTestSupport
@testable import FerryServer
@testable import FerryStore
import Foundation
import HTTPTypes
import Testing

/// A batch's record PUTs take the bulk path (bodies serialized and checked against the schema
/// before the transaction, whether the records exist read once, no savepoint per record). It
/// must answer and store exactly what the path of one request at a time does.
@Suite struct BulkWriteTests {
    static let collection = "/buckets/main/collections/users"
    static let records = collection + "/records"
    /// A timestamp ahead of the clock (in 2096).
    static let future: Int64 = 4_000_000_000_000
    static let schema: JSON = ["type": "object", "properties": ["age": ["type": "integer"], "email": ["type": "string"]]]

    /// A server driven through an API with the bulk path on or off.
    struct Run {
        let server: TestServer
        let api: KintoAPI


        @discardableResult
        func request(_ method: String, _ path: String, json: JSON? = nil, user: String = "alice") async throws -> APIResponse {
            try await server.request(method, path, json: json, user: user, through: api)
        }

        /// The bucket, and the collection with a schema and a unique field, where anyone
        /// authenticated may create records. Both ask for a timestamp far ahead of the clock, so
        /// every timestamp after them is the one before plus one: the same on every server.
        func seed() async throws {
            try await request("PUT", "/buckets/main", json: ["data": ["last_modified": .int(BulkWriteTests.future)]])
            try await request("PUT", BulkWriteTests.collection, json: [
                "data": ["schema": BulkWriteTests.schema, "unique_fields": ["email"], "last_modified": .int(BulkWriteTests.future)],
                "permissions": ["record:create": ["system.Authenticated"]],
            ])
        }

        /// The live record's timestamp (nil: absent).
        func timestamp(_ id: String) async throws -> Int64? {
            let key = ResourceKey(parentID: BulkWriteTests.collection, resourceName: "record")
            return try await server.parts.storage.read { try $0.get(key, id: id, includeDeleted: false)?.lastModified }
        }
    }

    /// What one sub-request asks, before it is written for a given server (its preconditions
    /// name that server's timestamps).
    enum Precondition: CaseIterable { case none, absent, current, stale, any }

    struct Step {
        var method: String
        var path: String
        var body: JSON?
        var precondition: Precondition = .none
        var id: String
    }

    /// A random batch: mostly PUTs (valid, against the schema, with a clashing unique field, with
    /// a mismatched id, without data, with a requested or malformed last_modified), some into a
    /// collection that does not exist, DELETEs, PATCHes, reads, and now and then a change of the
    /// collection's schema in the middle.
    static func randomBatch(_ random: inout SplitMix) -> [Step] {
        var steps: [Step] = []
        for _ in 0..<Int.random(in: 1...60, using: &random) {
            let id = "r\(Int.random(in: 0..<12, using: &random))"
            let path = records + "/" + id
            var data: [String: JSON] = ["age": .int(Int64.random(in: 0..<100, using: &random)), "name": .string("n\(Int.random(in: 0..<5, using: &random))")]
            if Bool.random(using: &random) { data["email"] = .string("e\(Int.random(in: 0..<20, using: &random))") }
            let precondition = [Precondition.none, .none, .none] + Precondition.allCases
            var step = Step(method: "PUT", path: path, body: ["data": .object(data)], precondition: precondition.randomElement(using: &random)!, id: id)
            switch Int.random(in: 0..<20, using: &random) {
            case 0: step.body = ["data": ["age": "not a number"]]
            case 1: step.body = ["data": ["id": "someone-else", "age": 1]]
            case 2: step.body = ["permissions": ["read": ["system.Everyone"]]]
            case 3: step.body = ["data": ["age": 2, "last_modified": "soon"]]
            case 4: step.body = ["data": ["age": 3, "last_modified": 1000]]
            case 5: step.body = nil
            case 6: step.path = "/buckets/main/collections/nope/records/" + id
            case 7, 8: step.method = "DELETE"; step.body = nil
            case 9: step.method = "PATCH"; step.body = ["data": ["age": .int(Int64.random(in: 0..<9, using: &random))]]
            case 10: step.method = "GET"; step.body = nil
            case 11 where Int.random(in: 0..<4, using: &random) == 0:
                // The schema changes in the middle: records checked before the batch against the
                // old one are checked again.
                var schema = Self.schema
                schema["properties"]?["age"]?["maximum"] = .int(Int64.random(in: 10..<90, using: &random))
                step = Step(method: "PATCH", path: collection, body: ["data": ["schema": schema]], id: "")
            default: break
            }
            steps.append(step)
        }
        return steps
    }

    /// The batch body of `steps` for `run`: `current` and `stale` name its own timestamps.
    static func batchBody(_ steps: [Step], for run: Run) async throws -> JSON {
        var requests: [JSON] = []
        for step in steps {
            var request: [String: JSON] = ["method": .string(step.method), "path": .string("/v1" + step.path)]
            if let body = step.body { request["body"] = body }
            switch step.precondition {
            case .none: break
            case .absent: request["headers"] = ["If-None-Match": "*"]
            case .any: request["headers"] = ["If-Match": "*"]
            case .current, .stale:
                let ts = try await run.timestamp(step.id) ?? 0
                request["headers"] = ["If-Match": .string("\"\(step.precondition == .current ? ts : ts + 1)\"")]
            }
            requests.append(.object(request))
        }
        return ["requests": .array(requests)]
    }

    /// A run's transcript with the one thing that differs between two servers by construction
    /// made equal: user ids (keyed with each server's own secret) by name.
    static func normalized(_ lines: [String], users: [String: String]) -> [String] {
        lines.map { line in
            var out = line
            for (id, name) in users { out = out.replacingOccurrences(of: id, with: name) }
            return out
        }
    }

    /// A random batch of plain record PUTs into one collection (what a sync pushes), which the
    /// batch answers through ``RecordPuts``: valid records, records against the schema, clashing
    /// unique fields, the same id twice, preconditions; now and then all into a collection that
    /// does not exist (which goes the general way).
    static func randomRecordPuts(_ random: inout SplitMix) -> [Step] {
        let into = Int.random(in: 0..<6, using: &random) == 0 ? "/buckets/main/collections/nope/records" : records
        return (0..<Int.random(in: 1...120, using: &random)).map { _ in
            let id = "p\(Int.random(in: 0..<40, using: &random))"
            var data: [String: JSON] = ["age": .int(Int64.random(in: 0..<100, using: &random)), "name": .string("n\(Int.random(in: 0..<5, using: &random))")]
            if Int.random(in: 0..<3, using: &random) == 0 { data["email"] = .string("e\(Int.random(in: 0..<60, using: &random))") }
            if Int.random(in: 0..<15, using: &random) == 0 { data["age"] = "old" }
            let precondition = Array(repeating: Precondition.none, count: 8) + Precondition.allCases
            return Step(method: "PUT", path: into + "/" + id, body: ["data": .object(data)],
                        precondition: precondition.randomElement(using: &random)!, id: id)
        }
    }

    @Test(arguments: [UInt64(14), 1914, 271_828])
    func bulkPathAnswersAndStoresAsOneRequestAtATime(seed: UInt64) async throws {
        try await compare(seed: seed, storage: { nil })
    }

    /// Batches of nothing but record PUTs take a path of their own (``RecordPuts``); it answers
    /// and stores what the general path does, one request at a time.
    @Test(arguments: [UInt64(7), 1066, 31_415])
    func recordPutsAnswerAndStoreAsOneRequestAtATime(seed: UInt64) async throws {
        try await compare(seed: seed, storage: { nil }, batches: Self.randomRecordPuts, expecting: [200, 201, 400, 403, 404, 409, 412])
    }

    @Test func recordPutsOnPostgresAnswerAndStoreAsOneRequestAtATime() async throws {
        guard PostgresCluster.enabled else { return }
        try await compare(seed: 4242, storage: {
            try await PostgresStorage(configuration: .init(url: try PostgresCluster.shared().createDatabase("recordputs")))
        }, batches: Self.randomRecordPuts, expecting: [200, 201, 400, 403, 404, 409, 412])
    }

    /// What a sync sends takes the record PUTs' path; a batch with anything else in it does not.
    @Test func whichBatchesAreRecordPuts() throws {
        let run = try Run(bulk: true)
        let request = APIRequest(method: .post, path: "/batch", query: [], headers: [:], identity: Identity(userID: nil, principals: []), baseURL: "")
        func puts(_ items: [JSON], defaults: JSON = .object([:]), request: APIRequest = request) -> Int? {
            run.api.recordPuts(items, defaults: defaults, request: request)?.items.count
        }
        let put: JSON = ["method": "PUT", "path": .string("/v1" + Self.records + "/a"), "body": ["data": ["age": 1]]]
        #expect(puts([put, put]) == 2)
        #expect(puts([["path": .string(Self.records + "/b"), "body": ["data": [:]]]], defaults: ["method": "put"]) == 1)
        #expect(puts([put, ["method": "PUT", "path": .string(Self.records + "/c"), "body": ["data": [:]], "headers": ["If-None-Match": "*"]]]) == 2)
        var ifMatch = request
        ifMatch.headers["if-match"] = "*"
        for refused: [JSON] in [
            [put, ["method": "DELETE", "path": .string(Self.records + "/a")]],
            [put, ["method": "PUT", "path": "/buckets/main/collections/other/records/a", "body": ["data": [:]]]],
            [["method": "PUT", "path": .string(Self.records + "/a"), "body": ["data": ["id": "a"]]]],
            [["method": "PUT", "path": .string(Self.records + "/a"), "body": ["data": ["last_modified": 1]]]],
            [["method": "PUT", "path": .string(Self.records + "/a"), "body": ["data": [:], "permissions": ["read": ["x"]]]]],
            [["method": "PUT", "path": .string(Self.records + "/a"), "body": ["data": [:]], "headers": ["Authorization": "x"]]],
            [["method": "PUT", "path": .string(Self.records + "/a?x=1"), "body": ["data": [:]]]],
            [["method": "PUT", "path": .string(Self.records + "/a"), "body": ["data": 3]]],
            [["method": "PUT", "path": .string(Self.records + "/a b"), "body": ["data": [:]]]],
            [["method": "PUT", "path": "/buckets/default/collections/c/records/a", "body": ["data": [:]]]],
        ] {
            #expect(puts(refused) == nil, "\(refused)")
        }
        #expect(puts([put], request: ifMatch) == nil)
    }

    /// A push's batch read from its bytes (``KintoAPI/scannedRecordPuts(_:)``) gives exactly the
    /// record PUTs the parsed batch gives; anything the walk does not read as the parse would
    /// (duplicate names, other members, a malformed or too deep body) it leaves to the parse.
    @Test func scannedBatchesReadAsTheParsedOnes() async throws {
        let run = try Run(bulk: true)
        func describe(_ puts: RecordPuts?) -> [String]? {
            puts.map { puts in
                [puts.records.uri(id: "")] + puts.items.map { "\($0.path)|\($0.id)|\(JSON.object($0.data).serialized())|\($0.ifMatch ?? "-")|\($0.ifNoneMatch ?? "-")" }
            }
        }
        func request(_ text: String) -> APIRequest {
            APIRequest(method: .post, path: "/batch", query: [], headers: [:], body: Array(text.utf8), identity: Identity(userID: nil, principals: []), baseURL: "")
        }
        func scanned(_ text: String) async -> [String]? { describe(await run.api.scannedRecordPuts(request(text))) }
        func parsed(_ text: String) -> [String]? {
            guard case .object(let top)? = try? JSON.parse(text), case .array(let items)? = top["requests"], !items.isEmpty else { return nil }
            return describe(run.api.recordPuts(items, defaults: top["defaults"] ?? .object([:]), request: request(text)))
        }
        let r = Self.records
        let put = #"{"method":"PUT","path":"\#(r)/a","body":{"data":{"age":1,"name":"Zoë \"q\"","tags":["x",{"y":null}]}}}"#
        let many = (0..<300).map { #"{"method":"put","path":"/v1\#(r)/r\#($0)","body":{"data":{"n":\#($0)}}}"# }.joined(separator: ",")
        let taken = [
            #"{"requests":[\#(put),\#(put)]}"#,
            #"{"requests":[\#(many)]}"#,
            #"{"defaults":{"method":"put"},"requests":[{"path":"\#(r)/b","body":{"data":{}}},{"path":"/v1\#(r)/c","body":{"data":{"a":1.5e3}}}]}"#,
            #"{"requests":[{"method":"PUT","path":"\#(r)/b","body":{"data":{}},"headers":{"If-None-Match":"*"}},{"headers":{"if-match":"\"12\""},"body":{"data":{"k":true}},"path":"\#(r)/c","method":"PUT"}]}"#,
            #"{"requests":[{"meth\u006fd":"PUT","p\u0061th":"\#(r)/\u0061b","body":{"data":{"\u00e9":"\ud83d\ude00"}}}]}"#,
            #"{"requests":[{"method":"PUT","path":"/buckets/m%61in/collections/users/records/%41bc","body":{"data":{}}},{"method":"PUT","path":"\#(r)/x%2Dy","body":{"data":{}}},{"method":"PUT","path":"\#(r)/d","body":{"data":{}}}]}"#,
            " \n{ \"requests\" : [ { \"method\" : \"PUT\" , \"path\" : \"\(r)/w\" , \"body\" : { \"data\" : { \"a\" : [ 1 , 2 ] } } } ] } \n",
            // The defaults after the requests they complete (the walk reads the body once).
            #"{"requests":[{"path":"\#(r)/b","body":{"data":{}}},\#(put)],"defaults":{"method":"PUT"}}"#,
        ]
        for text in taken {
            let walked = await scanned(text)
            #expect(walked != nil, "\(text.prefix(200))")
            #expect(walked == parsed(text), "\(text.prefix(200))")
        }
        let deep = String(repeating: #"{"a":"#, count: 62) + "1" + String(repeating: "}", count: 62)
        let left = [
            #"{"requests":[\#(put)]} x"#, #"{"requests":[\#(put)],"requests":[\#(put)]}"#, #"{"requests":[\#(put)],"other":1}"#,
            #"{"requests":[]}"#, #"{"requests":{}}"#, #"{"defaults":{"headers":{"If-Match":"*"}},"requests":[\#(put)]}"#,
            #"{"defaults":{"method":"DELETE"},"requests":[{"path":"\#(r)/a","body":{"data":{}}}]}"#, #"{"defaults":null,"requests":[\#(put)]}"#,
            #"{"requests":[{"method":"PUT","method":"PUT","path":"\#(r)/a","body":{"data":{}}}]}"#,
            #"{"requests":[{"method":"PUT","path":"\#(r)/a","body":{"data":{"id":"a"}}}]}"#,
            #"{"requests":[{"method":"PUT","path":"\#(r)/a","body":{"data":{},"permissions":{}}}]}"#,
            #"{"requests":[{"method":"PUT","path":"\#(r)/a","body":{"data":{},"data":{}}}]}"#,
            #"{"requests":[{"method":"PUT","path":"\#(r)/a","body":{"data":\#(deep)}}]}"#,
            #"{"requests":[{"method":"PUT","path":"\#(r)/a?x=1","body":{"data":{}}}]}"#,
            #"{"requests":[\#(put),{"method":"PUT","path":"/buckets/main/collections/other/records/a","body":{"data":{}}}]}"#,
            #"{"requests":[\#(put),{"method":"PUT","path":"\#(r)/a/b","body":{"data":{}}}]}"#,
            #"{"requests":[\#(put),{"method":"PUT","path":"\#(r)/","body":{"data":{}}}]}"#,
            "{\"requests\":[{\"method\":\"PUT\",\"path\":\"\(r)/a\",\"body\":{\"data\":{\"s\":\"\u{1}\"}}}]}",
            #"{"requests":[{"method":"PUT","path":"\#(r)/a","body":{"data":{"n":01}}}]}"#,
            #"{"requests":[{"method":"PUT","path":"\#(r)/a","body":{"data":{}},"headers":{"X":"y"}}]}"#,
            #"{"requests":[{"path":"\#(r)/b","body":{"data":{}}}],"defaults":{"method":"DELETE"}}"#,
            #"{"requests":[{"path":"\#(r)/b","body":{"data":{}}}],"defaults":{}}"#, #"{"requests":[{"path":"\#(r)/b","body":{"data":{}}}]}"#,
            #"{"requests":[\#(put),]}"#, #"{"requests":[\#(put)],}"#, #"{"requests":[{"method":"PUT","path":"\#(r)/a","body":{"data":{}},}]}"#,
            #"{"requests":[{"method":"PUT","path":"\#(r)/a","body":{"data":{"a":1}}]}"#, #"{"requests":[\#(put)"#,
        ]
        for text in left { #expect(await scanned(text) == nil, "\(text.prefix(200))") }
    }

    /// The same on PostgreSQL (its backend reads the records one by one, through the same path).
    @Test func bulkPathOnPostgresAnswersAndStoresAsOneRequestAtATime() async throws {
        guard PostgresCluster.enabled else { return }
        try await compare(seed: 2718, storage: {
            try await PostgresStorage(configuration: .init(url: try PostgresCluster.shared().createDatabase("bulk")))
        })
    }

    /// Runs the same random batches through the bulk path and through the path of one request at
    /// a time, each on a fresh storage, and compares every answer and every stored row.
    func compare(seed: UInt64, storage: () async throws -> (any Storage)?,
                 batches: (inout SplitMix) -> [Step] = BulkWriteTests.randomBatch,
                 expecting: [Int] = [200, 201, 400, 403, 404, 409, 412]) async throws {
        var transcripts: [[String]] = []
        var statuses: [Int: Int] = [:]
        for bulk in [true, false] {
            let run = try Run(bulk: bulk, storage: try await storage())
            try await run.seed()
            var random = SplitMix(seed: seed)
            var lines: [String] = []
            for round in 0..<30 {
                let steps = batches(&random)
                let user = round % 4 == 3 ? "bob" : "alice"
                let response = try await run.request("POST", "/batch", json: try await Self.batchBody(steps, for: run), user: user)
                lines.append("\(response.status) " + response.json.serialized())
                if bulk {
                    for answer in response.json["responses"]?.arrayValue ?? [] { statuses[Int(answer["status"]?.intValue ?? 0), default: 0] += 1 }
                }
            }
            lines += try await run.server.dump()
            transcripts.append(Self.normalized(lines, users: [run.server.userID("alice"): "<alice>", run.server.userID("bob"): "<bob>"]))
        }
        // The batches reached what they are meant to: creations, updates, and each refusal.
        for status in expecting { #expect(statuses[status, default: 0] > 0, "no \(status) among \(statuses)") }
        let (bulk, single) = (transcripts[0], transcripts[1])
        #expect(bulk.count == single.count)
        if let first = bulk.indices.first(where: { $0 < single.count && bulk[$0] != single[$0] }) {
            Issue.record("line \(first) differs:\nbulk:   \(bulk[first])\nsingle: \(single[first])")
        }
    }

    /// The schema's verdict reached before the transaction holds only for the collection's
    /// version it was reached on: a batch that changes the schema has the records after the
    /// change checked again (and a record it makes valid is accepted).
    @Test func schemaChangedInTheBatchIsCheckedAgain() async throws {
        let run = try Run(bulk: true)
        try await run.seed()
        var stricter = Self.schema
        stricter["properties"]?["age"]?["maximum"] = 3
        let response = try await run.request("POST", "/batch", json: ["requests": [
            ["method": "PUT", "path": .string(Self.records + "/a"), "body": ["data": ["age": 5]]],
            ["method": "PATCH", "path": .string(Self.collection), "body": ["data": ["schema": stricter]]],
            ["method": "PUT", "path": .string(Self.records + "/b"), "body": ["data": ["age": 5]]],
            ["method": "PATCH", "path": .string(Self.collection), "body": ["data": ["schema": ["type": "object"]]]],
            ["method": "PUT", "path": .string(Self.records + "/c"), "body": ["data": ["age": "five"]]],
        ]])
        let answers = response.json["responses"]?.arrayValue ?? []
        #expect(answers.map { $0["status"]?.intValue ?? 0 } == [201, 200, 400, 200, 201], "\(response.json.serialized())")
        #expect(answers[2]["body"]?["message"]?.stringValue?.contains("data.age") == true)
        #expect(try await run.timestamp("b") == nil)
        #expect(try await run.timestamp("c") != nil)
    }

    /// A write that is not a record's own may change records the batch read before it (a flush
    /// empties the server): what the bulk path knows of them goes, and it answers as one request
    /// at a time does.
    @Test func flushInTheBatchForgetsWhatTheBulkPathRead() async throws {
        var answers: [[Int]] = []
        for bulk in [true, false] {
            let server = try TestServer { $0.flushEndpoint = true }
            var settings = server.parts.api.settings
            settings.bulkRecordWrites = bulk
            let run = Run(server: server, api: KintoAPI(storage: server.parts.storage, settings: settings, authenticator: server.parts.api.authenticator))
            try await run.seed()
            let response = try await run.request("POST", "/batch", json: ["requests": [
                ["method": "PUT", "path": .string(Self.records + "/a"), "body": ["data": ["age": 1]]],
                ["method": "POST", "path": "/__flush__"],
                ["method": "PUT", "path": .string(Self.records + "/a"), "body": ["data": ["age": 2]]],
            ]])
            answers.append(response.json["responses"]?.arrayValue?.map { Int($0["status"]?.intValue ?? 0) } ?? [])
            #expect(try await run.timestamp("a") == nil)
        }
        #expect(answers[0] == answers[1])
        #expect(answers[0].first == 201 && answers[0].dropFirst().first == 202 && answers[0].last != 200 && answers[0].last != 201, "\(answers)")
    }

    /// One id twice in a batch: the second write sees the first (it was read once before both).
    @Test func secondWriteOfAnIdSeesTheFirst() async throws {
        let run = try Run(bulk: true)
        try await run.seed()
        let response = try await run.request("POST", "/batch", json: ["requests": [
            ["method": "PUT", "path": .string(Self.records + "/a"), "body": ["data": ["age": 1]], "headers": ["If-None-Match": "*"]],
            ["method": "PUT", "path": .string(Self.records + "/a"), "body": ["data": ["age": 2]], "headers": ["If-None-Match": "*"]],
            ["method": "PUT", "path": .string(Self.records + "/a"), "body": ["data": ["age": 3]]],
            ["method": "DELETE", "path": .string(Self.records + "/a")],
            ["method": "PUT", "path": .string(Self.records + "/a"), "body": ["data": ["age": 4]], "headers": ["If-Match": "*"]],
            ["method": "PUT", "path": .string(Self.records + "/a"), "body": ["data": ["age": 5]], "headers": ["If-None-Match": "*"]],
        ]])
        let answers = response.json["responses"]?.arrayValue ?? []
        #expect(answers.map { $0["status"]?.intValue ?? 0 } == [201, 412, 200, 200, 412, 201], "\(response.json.serialized())")
        let stored = try await run.request("GET", Self.records + "/a")
        #expect(stored.data["age"] == 5)
    }
}

extension BulkWriteTests.Run {
    init(bulk: Bool, storage: (any Storage)? = nil) throws {
        let server = try TestServer(storage: storage) { $0.batchMaxRequests = 1000 }
        var settings = server.parts.api.settings
        settings.bulkRecordWrites = bulk
        self.init(server: server, api: KintoAPI(storage: server.parts.storage, settings: settings, authenticator: server.parts.api.authenticator))
    }
}
