import FerryCore
@testable import FerryServer
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
        // A write between exchanges is seen (the server's items are kept per collection timestamp).
        #expect(try await server.request("DELETE", "/buckets/main/collections/users/records/u8").status == 200)
        let after = try await ReconcileExchange(Reconciler(SortedReconcileItems(same))).run { body in
            try #require(Self.bytes(try await Self.post(server, body)))
        }
        #expect(after.differences.onlyHere.map(\.idText) == ["u8"] && after.differences.count == 1)
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
