import FerryCore
@testable import FerryServer
@testable import FerryStore
import FerryTestSupport
import HTTPTypes
import Testing

/// `POST /v1/buckets/B/collections/C/reconcile` through ``KintoAPI``: the answers a client
/// reconciles with, who may ask, and what bad messages get.
@Suite struct ReconcileTests {
    static let path = "/buckets/main/collections/users/reconcile"

    static func post(_ server: TestServer, _ body: [UInt8], user: String? = "alice", path: String = path,
                     contentType: String? = ReconcileMessage.mediaType) async throws -> APIResponse {
        let identity = try await server.parts.api.authenticate(authorization: user.map { TestServer.basic($0) })
        var headers: [String: String] = [:]
        if let contentType { headers["content-type"] = contentType }
        return await server.parts.api.handle(APIRequest(method: .post, path: path, headers: headers, body: body, identity: identity))
    }

    static func bytes(_ response: APIResponse) -> [UInt8]? {
        if case .bytes(let bytes, let type) = response.body, type == ReconcileMessage.mediaType { return bytes }
        return nil
    }

    /// The item the sync engine computes for a record read from the server.
    static func item(_ id: String, _ fields: [String: JSON]) -> ReconcileItem {
        var fields = fields
        fields["id"] = .string(id)
        return ReconcileItem(id: id, hash: RecordHash(fields: fields, keyField: "id", keyText: id))
    }

    @Test func helloAnnouncesReconciliation() async throws {
        let server = try TestServer()
        let hello = try await server.request("GET", "/", user: nil).json
        #expect(hello["capabilities"]?["reconcile"]?["version"] == .int(Int64(ReconcileMessage.version)))
        #expect(hello["capabilities"]?["reconcile"]?["frame_limit"] == .int(Int64(KintoAPI.reconcileFrameLimit)))
    }

    /// A client holding the records as the engine hashes them finds exactly what differs:
    /// a changed record, one it lacks, one it holds that the server deleted (the tombstone is
    /// not an item), one it holds that the server never had.
    @Test func aClientFindsExactlyTheDifferences() async throws {
        let server = try TestServer()
        try await server.seedUsers()
        var local: [ReconcileItem] = []
        for n in 0..<300 {
            let fields: [String: JSON] = ["name": .string("user \(n)"), "n": .int(Int64(n)), "note": n % 7 == 0 ? .null : "x"]
            var stored = fields
            if n % 7 == 0 { stored["note"] = nil }
            #expect(try await server.request("PUT", "/buckets/main/collections/users/records/u\(n)", json: ["data": .object(stored)]).status == 201)
            switch n {
            case 5: local.append(Self.item("u5", ["name": "changed", "n": 5]))
            case 6: break  // the client lacks u6
            default: local.append(Self.item("u\(n)", fields))
            }
        }
        #expect(try await server.request("DELETE", "/buckets/main/collections/users/records/u7").status == 200)
        local.append(Self.item("zz-only-here", ["name": "extra"]))

        let exchange = ReconcileExchange(Reconciler(SortedReconcileItems(local)))
        let outcome = try await exchange.run { body in
            let response = try await Self.post(server, body)
            #expect(response.status == 200)
            return try #require(Self.bytes(response))
        }
        #expect(outcome.differences.changed.map(\.idText) == ["u5"])
        #expect(outcome.differences.onlyThere.map(\.idText) == ["u6"])
        #expect(Set(outcome.differences.onlyHere.map(\.idText)) == ["u7", "zz-only-here"])
        #expect(outcome.rounds <= 4)

        // Equal sets: one round trip, an empty answer.
        var same: [ReconcileItem] = []
        for n in 0..<300 where n != 7 {
            let note: JSON = n % 7 == 0 ? .null : "x"
            same.append(Self.item("u\(n)", ["name": .string("user \(n)"), "n": .int(Int64(n)), "note": note]))
        }
        let equal = try await ReconcileExchange(Reconciler(SortedReconcileItems(same))).run { body in
            try #require(Self.bytes(try await Self.post(server, body)))
        }
        #expect(equal.rounds == 1 && equal.differences.count == 0)
        // A write between exchanges is seen (the kept items catch up with the writes since).
        #expect(try await server.request("DELETE", "/buckets/main/collections/users/records/u8").status == 200)
        let after = try await ReconcileExchange(Reconciler(SortedReconcileItems(same))).run { body in
            try #require(Self.bytes(try await Self.post(server, body)))
        }
        #expect(after.differences.onlyHere.map(\.idText) == ["u8"] && after.differences.count == 1)
    }

    /// The server keeps a collection's items between exchanges and applies the writes since
    /// (``ReconcileItemsCache``): after creates, updates, deletes, a batch, tombstones purged past
    /// the kept timestamp and the collection deleted and made again, every exchange still finds
    /// exactly the differences from the records as stored (the linear reference: the client's
    /// set against the server's records read in full).
    @Test func keptItemsFollowEveryWrite() async throws {
        try await Self.checkKeptItems(try TestServer())
    }

    @Test func keptItemsFollowEveryWriteOnPostgres() async throws {
        guard PostgresCluster.enabled else { return }
        let storage = try await PostgresStorage(configuration: .init(url: try PostgresCluster.shared().createDatabase("reconcile")))
        try await Self.checkKeptItems(try TestServer(storage: storage))
    }

    static func checkKeptItems(_ server: TestServer) async throws {
        try await server.seedUsers()
        let records = "/buckets/main/collections/users/records"
        var random = SplitMix(seed: 17)
        var truth: [String: [String: JSON]] = [:]
        func put(_ id: String) async throws {
            let fields: [String: JSON] = ["n": .int(Int64(random.next() % 1000)), "tag": random.next() % 4 == 0 ? "shared" : .string(String(random.next(), radix: 36))]
            #expect([200, 201].contains(try await server.request("PUT", "\(records)/\(id)", json: ["data": .object(fields)]).status))
            truth[id] = fields
        }
        func delete(_ id: String) async throws {
            #expect(try await server.request("DELETE", "\(records)/\(id)").status == 200)
            truth[id] = nil
        }
        for n in 0..<400 { try await put("r\(n)") }
        let local = truth.map { Self.item($0.key, $0.value) }
        func expectExact(_ context: String) async throws {
            let outcome = try await ReconcileExchange(Reconciler(SortedReconcileItems(local))).run { body in
                let response = try await Self.post(server, body)
                #expect(response.status == 200, "\(context)")
                return try #require(Self.bytes(response))
            }
            let here = Dictionary(uniqueKeysWithValues: local.map { ($0.idText, $0.hash) })
            let there = Dictionary(uniqueKeysWithValues: truth.map { ($0.key, Self.item($0.key, $0.value).hash) })
            #expect(Set(outcome.differences.onlyHere.map(\.idText)) == Set(here.keys).subtracting(there.keys), "\(context)")
            #expect(Set(outcome.differences.onlyThere.map(\.idText)) == Set(there.keys).subtracting(here.keys), "\(context)")
            #expect(Set(outcome.differences.changed.map(\.idText)) == Set(here.keys.filter { there[$0] != nil && there[$0] != here[$0] }), "\(context)")
            // The server's items as stored, read in full: the same set as the truth.
            let stored = try await server.parts.storage.read { s in try KintoAPI.reconcileItems(session: s, key: ResourceKey(parentID: "/buckets/main/collections/users", resourceName: "record"), ids: nil) }
            #expect(Dictionary(uniqueKeysWithValues: stored.map { ($0.idText, $0.hash) }) == there, "\(context)")
        }
        try await expectExact("at first")
        for round in 0..<6 {
            for _ in 0..<(round * 40 + 1) {
                let id = "r\(random.next() % 600)"
                if truth[id] != nil, random.next() % 3 == 0 { try await delete(id) } else { try await put(id) }
            }
            try await expectExact("after round \(round) of writes")
        }
        // Writes in one batch.
        let batch = (0..<20).map { n -> JSON in ["method": "PUT", "path": .string("/v1\(records)/b\(n)"), "body": ["data": ["n": .int(Int64(n))]]] }
        #expect(try await server.request("POST", "/batch", json: ["requests": .array(batch)]).status == 200)
        for n in 0..<20 { truth["b\(n)"] = ["n": .int(Int64(n))] }
        try await expectExact("after a batch")
        // A delete whose tombstone is purged before the next exchange: the feed since the kept
        // items no longer shows it, the horizon says so.
        let gone = try #require(truth.keys.sorted().first)
        try await delete(gone)
        let key = ResourceKey(parentID: "/buckets/main/collections/users", resourceName: "record")
        let purged = try await server.parts.storage.write { s in try s.purgeTombstones(key, retention: TombstoneRetention(maxCount: 0), now: Int64.max / 2) }
        #expect(purged > 0)
        try await expectExact("after tombstones were purged")
        // The collection deleted and made again with other records: no tombstone of the old ones.
        #expect(try await server.request("DELETE", "/buckets/main/collections/users").status == 200)
        #expect(try await server.request("PUT", "/buckets/main/collections/users").status == 201)
        truth = [:]
        try await put("fresh")
        try await expectExact("after the collection was made again")
    }

    @Test func onlyReadersMayReconcile() async throws {
        let server = try TestServer()
        try await server.seedUsers()
        let first = Reconciler(SortedReconcileItems([ReconcileItem]())).initiate().encoded()
        #expect(try await Self.post(server, first, user: nil).status == 401)
        #expect(try await Self.post(server, first, user: "bob").status == 403)
        #expect(try await Self.post(server, first, path: "/buckets/main/collections/nope/reconcile").status == 404)
        // A bad message from who may not read is refused as a 403: nothing learnt from a 400.
        #expect(try await Self.post(server, [0x00], user: "bob").status == 403)
        let bob = server.userID("bob")
        #expect(try await server.request("PATCH", "/buckets/main/collections/users", json: ["permissions": ["read": [.string(bob)]]]).status == 200)
        #expect(try await Self.post(server, first, user: "bob").status == 200)
    }

    @Test(arguments: [
        ([], "ends inside the version byte"),
        ([0x61, 0x00], "does not start with the version byte"),
        ([0xF1, 0x02, 0x62, 0x00, 0x02, 0x61, 0x00], "does not end above the range before it"),
        ([0xF1, 0x00, 0x02, 0x02, 0x01, 0x62] + [UInt8](repeating: 0, count: 16) + [0x01, 0x61] + [UInt8](repeating: 0, count: 16), "not above the item before it"),
        ([0xF1, 0x00, 0x09], "unknown mode 9"),
        ([0xF1] + [UInt8](repeating: 0x00, count: 200_000), "the limit is 131072"),
    ] as [([UInt8], String)])
    func badMessagesGet400AndChangeNothing(body: [UInt8], reason: String) async throws {
        let server = try TestServer()
        try await server.seedUsers()
        try await server.request("PUT", "/buckets/main/collections/users/records/a", json: ["data": ["x": 1]])
        let before = try await server.dump()
        let response = try await Self.post(server, body)
        #expect(response.status == 400)
        #expect(response.json["errno"] == 107)
        let message = response.json["message"]?.stringValue ?? ""
        #expect(message.contains("Invalid reconciliation message") && message.contains(reason), "\(message)")
        #expect(try await server.dump() == before)
    }

    @Test func wrongMethodTypeOrBatchIsRefused() async throws {
        let server = try TestServer()
        try await server.seedUsers()
        let first = Reconciler(SortedReconcileItems([ReconcileItem]())).initiate().encoded()
        let json = try await Self.post(server, first, contentType: "application/json")
        #expect(json.status == 400 && (json.json["message"]?.stringValue ?? "").contains("sent as application/vnd.ferry.reconcile"))
        #expect(try await server.request("GET", Self.path).status == 405)
        let batch = try await server.request("POST", "/batch", json: ["requests": [["method": "POST", "path": .string("/v1" + Self.path)]]])
        #expect(batch.json["responses"]?[0]?["status"] == 400 || batch.status == 400)
    }
}
