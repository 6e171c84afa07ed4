import FerryCore
@testable import FerryServer
import Foundation
import Testing

/// A caller without the right to write is refused (401/403) before anything about its request is
/// validated: no 400 that describes the body, no DNS look-up of a webhook URL, nothing stored.
@Suite struct PermissionBeforeValidationTests {
    /// The host names looked up through a policy; the look-ups themselves are the system's.
    final class LookUps: @unchecked Sendable {
        private let lock = NSLock()
        private var hosts: [String] = []
        func record(_ host: String) { lock.withLock { hosts.append(host) } }
        var all: [String] { lock.withLock { hosts } }
    }

    /// alice's bucket `main` and collection `users`, and an API whose webhook policy counts the
    /// host names it looks up (a name under `.invalid` never resolves).
    func server(allowHosts: [String] = []) async throws -> (TestServer, KintoAPI, LookUps) {
        let server = try TestServer()
        try await server.seedUsers()
        let lookUps = LookUps()
        var settings = server.parts.api.settings
        settings.webhookPolicy = WebhookAddressPolicy(allowHosts: allowHosts) { host in
            lookUps.record(host)
            return WebhookAddressPolicy.systemLookUp(host)
        }
        let api = KintoAPI(storage: server.parts.api.storage, settings: settings, authenticator: server.parts.api.authenticator)
        return (server, api, lookUps)
    }

    static let hook: JSON = ["data": ["url": "http://ferry-hook.invalid/deliveries", "secret": "0123456789abcdef0123"]]
    static let hookPath = "/buckets/main/collections/users/webhooks/h1"

    @Test func aWebhookRegisteredWithoutWritePermissionIs403BeforeAnyDNSLookUp() async throws {
        let (server, api, lookUps) = try await server()
        let bob = try await server.request("PUT", Self.hookPath, json: Self.hook, user: "bob", through: api)
        #expect(bob.status == 403, "\(bob.json)")
        let anonymous = try await server.request("PUT", Self.hookPath, json: Self.hook, user: nil, through: api)
        #expect(anonymous.status == 401, "\(anonymous.json)")
        // A body that is not even a registration: still the permission that answers.
        let garbage = try await server.request("PUT", Self.hookPath, body: "{not json", user: "bob", through: api)
        #expect(garbage.status == 403, "\(garbage.json)")
        let batch = try await server.request("POST", "/batch", json: ["requests": [["method": "PUT", "path": .string(Self.hookPath), "body": Self.hook]]],
                                             user: "bob", through: api)
        #expect(batch.json["responses"]?[0]?["status"] == 403, "\(batch.json)")
        #expect(lookUps.all.isEmpty, "looked up \(lookUps.all) for a caller without permission")
        let list = try await server.request("GET", "/buckets/main/collections/users/webhooks", through: api)
        #expect(list.data == [], "\(list.json)")

        // The owner gets the URL's verdict, from a real look-up (so the count above could fail).
        let alice = try await server.request("PUT", Self.hookPath, json: Self.hook, through: api)
        #expect(alice.status == 400 && "\(alice.json)".contains("does not resolve"), "\(alice.json)")
        #expect(lookUps.all == ["ferry-hook.invalid"])
    }

    /// A collection created earlier in the same batch: the snapshot before the batch could not
    /// grant the registration, so its URL is checked in the transaction, after the permission.
    @Test func aWebhookOnACollectionCreatedInTheSameBatchIsStillChecked() async throws {
        let (server, api, lookUps) = try await server()
        let batch = try await server.request("POST", "/batch", json: ["requests": [
            ["method": "PUT", "path": "/buckets/main/collections/fresh"],
            ["method": "PUT", "path": "/buckets/main/collections/fresh/webhooks/h1", "body": Self.hook],
            ["method": "PUT", "path": "/buckets/main/collections/fresh/webhooks/h2",
             "body": ["data": ["url": "http://127.0.0.1:9/", "secret": "0123456789abcdef0123"]]],
        ]], through: api)
        let statuses = (batch.json["responses"]?.arrayValue ?? []).map { $0["status"]?.intValue }
        #expect(statuses == [201, 400, 400], "\(batch.json)")
        #expect(lookUps.all == ["ferry-hook.invalid"])
    }

    @Test func aRecordWriteWithoutPermissionIs403WhateverItsBody() async throws {
        let (server, _, _) = try await server()
        let records = "/buckets/main/collections/users/records"
        for (method, path, body) in [("POST", records, "{not json"), ("POST", records, #"{"data": {"id": "not an id!"}}"#),
                                     ("POST", records, #"{"data": 3}"#), ("PUT", records + "/r1", "{not json"),
                                     ("PATCH", records + "/r1", "[1, 2"), ("PUT", "/buckets/main/collections/users", #"{"data": []}"#)] {
            let bob = try await server.request(method, path, body: body, user: "bob")
            #expect(bob.status == 403, "\(method) \(path) \(body): \(bob.json)")
            let anonymous = try await server.request(method, path, body: body, user: nil)
            #expect(anonymous.status == 401, "\(method) \(path) \(body): \(anonymous.json)")
        }
        // Who may write still hears what is wrong with the body.
        let alice = try await server.request("POST", records, body: "{not json")
        #expect(alice.status == 400, "\(alice.json)")
        let aliceID = try await server.request("POST", records, body: #"{"data": {"id": "not an id!"}}"#)
        #expect(aliceID.status == 400, "\(aliceID.json)")
        #expect(try await server.request("GET", records).data == [])
    }

    @Test func anAccountWriteWithoutPermissionIsRefusedBeforeItsBodyIsRead() async throws {
        let server = try TestServer { $0.accountCreatePrincipals = ["account:admin"]; $0.passwordRounds = 1000 }
        // A password far too short, and a body that is no account at all.
        for body in [#"{"data": {"password": "x"}}"#, "{not json"] {
            let anonymous = try await server.request("PUT", "/accounts/eve", body: body, user: nil)
            #expect(anonymous.status == 401, "\(body): \(anonymous.json)")
            let bob = try await server.request("PUT", "/accounts/eve", body: body, user: "bob")
            #expect(bob.status == 403, "\(body): \(bob.json)")
            let post = try await server.request("POST", "/accounts", body: body, user: "bob")
            #expect(post.status == 403, "\(body): \(post.json)")
        }
        // Where creating is allowed, the body is checked as before.
        let open = try TestServer { $0.passwordRounds = 1000 }
        let short = try await open.request("PUT", "/accounts/eve", body: #"{"data": {"password": "x"}}"#, user: nil)
        #expect(short.status == 400, "\(short.json)")
    }
}
