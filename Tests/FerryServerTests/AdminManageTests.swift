import FerryCore
@testable import FerryServer
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Testing

/// `/admin`'s groups, schema, webhooks and accounts pages, and the sign-in form's own guards:
/// each change goes through the API as the signed-in user; a user who may not read an object
/// sees nothing of it; bad input, a stale version or a missing CSRF token changes nothing.
@Suite struct AdminManageTests {
    let admin = AdminTests()

    @Test func groupsAreCreatedAndEditedWithTheirVersion() async throws {
        let server = try TestServer()
        try await server.seedUsers()
        try await server.request("PUT", "/buckets/main/groups/staff", json: ["data": ["members": ["account:secret-member"]]])
        try await server.application.test(.router) { client in
            let alice = try await admin.signIn(client)
            let bob = try await admin.signIn(client, user: "bob")
            let (_, bucket) = try await admin.get(client, "/admin/buckets/main", alice)
            #expect(bucket.contains("/admin/buckets/main/groups/staff\"") && bucket.contains("account:secret-member"))

            // Bob may not read the bucket: nothing of its groups, and no change.
            let before = try await server.dump()
            for uri in ["/admin/buckets/main/groups/staff", "/admin/buckets/main"] {
                let (status, page) = try await admin.get(client, uri, bob)
                #expect(status == .forbidden && !page.contains("secret-member"), "\(uri)")
            }
            let (bobSave, _, _) = try await admin.post(client, "/admin/buckets/main/groups/staff", bob, [("if_match", "1"), ("members", "bob")])
            #expect(bobSave == .forbidden || bobSave == .preconditionFailed)
            let (bobCreate, _, _) = try await admin.post(client, "/admin/buckets/main/groups", bob, [("id", "mine"), ("members", "bob")])
            #expect(bobCreate == .forbidden)
            // Without the session's token: refused.
            let (forged, _, _) = try await admin.post(client, "/admin/buckets/main/groups/staff/delete", alice, [("if_match", "1")], csrf: "forged")
            #expect(forged == .forbidden)
            // Bad input: a bad id, a group that exists, a form without its version, members the API refuses.
            let (badID, badPage, _) = try await admin.post(client, "/admin/buckets/main/groups", alice, [("id", "no/slash"), ("members", "x")])
            #expect(badID == .badRequest && badPage.contains("is not an id") && badPage.contains("Nothing was created"))
            let (exists, existsPage, _) = try await admin.post(client, "/admin/buckets/main/groups", alice, [("id", "staff"), ("members", "x")])
            #expect(exists == .badRequest && existsPage.contains("exists already"))
            let (noVersion, _, _) = try await admin.post(client, "/admin/buckets/main/groups/staff", alice, [("if_match", "soon"), ("members", "x")])
            #expect(noVersion == .badRequest)
            let (stale, stalePage, _) = try await admin.post(client, "/admin/buckets/main/groups/staff", alice, [("if_match", "1"), ("members", "account:mallory")])
            #expect(stale == .preconditionFailed && stalePage.contains("changed by someone else") && stalePage.contains("account:mallory"))
            #expect(try await server.dump() == before)

            // A new group, then its members changed at the version read.
            let (created, _, location) = try await admin.post(client, "/admin/buckets/main/groups", alice, [("id", "editors"), ("members", "account:ada\r\n\r\naccount:eve, system.Authenticated\n")])
            #expect(created == .seeOther && location == "/admin/buckets/main/groups/editors")
            let group = try await server.request("GET", "/buckets/main/groups/editors").data
            #expect(group["members"] == ["account:ada", "account:eve", "system.Authenticated"])
            let version = try #require(group["last_modified"]?.intValue)
            let (page, groupPage) = try await admin.get(client, "/admin/buckets/main/groups/editors", alice)
            #expect(page == .ok && groupPage.contains("value=\"\(version)\""))
            let (saved, _, _) = try await admin.post(client, "/admin/buckets/main/groups/editors", alice, [("if_match", String(version)), ("members", "account:ada")])
            #expect(saved == .seeOther)
            #expect(try await server.request("GET", "/buckets/main/groups/editors").data["members"] == ["account:ada"])
        }
    }

    @Test func schemaEditsGoThroughTheAPIsValidation() async throws {
        let server = try TestServer()
        try await server.seedUsers()
        try await server.request("PUT", "/buckets/main/collections/users/records/r1", json: ["data": ["name": "Ada"]])
        // Bob may read the collection but not write it.
        try await server.request("PATCH", "/buckets/main/collections/users", json: ["permissions": ["read": [.string(server.userID("bob"))]]])
        let collection = try await server.request("GET", "/buckets/main/collections/users").data
        let version = String(try #require(collection["last_modified"]?.intValue))
        let schemaURI = "/admin/buckets/main/collections/users/schema"
        try await server.application.test(.router) { client in
            let alice = try await admin.signIn(client)
            let bob = try await admin.signIn(client, user: "bob")
            let before = try await server.dump()
            for (schema, unique, message) in [
                ("{not json", "", "The schema is not valid JSON"),
                ("[1]", "", "The schema must be a JSON object"),
                (#"{"type": 5}"#, "", "data.schema"),
                ("", "id", "data.unique_fields"),
            ] {
                let (status, page, _) = try await admin.post(client, schemaURI, alice, [("if_match", version), ("schema", schema), ("unique_fields", unique)])
                #expect(status == .badRequest, "\(schema) \(unique)")
                #expect(page.contains(HTML.escape(message)) && page.contains("Nothing was changed"), "\(schema) \(unique): \(page)")
                #expect(schema.isEmpty || page.contains(HTML.escape(schema)), "the text is kept in the form")
            }
            let (stale, stalePage, _) = try await admin.post(client, schemaURI, alice, [("if_match", "1"), ("schema", #"{"type": "object"}"#)])
            #expect(stale == .preconditionFailed && stalePage.contains("changed by someone else"))
            let (noVersion, _, _) = try await admin.post(client, schemaURI, alice, [("schema", #"{"type": "object"}"#)])
            #expect(noVersion == .badRequest)
            // Bob sees the schema section but his change is the API's 403.
            let (bobSave, _, _) = try await admin.post(client, schemaURI, bob, [("if_match", version), ("schema", #"{"type": "object"}"#)])
            #expect(bobSave == .forbidden)
            let (forged, _, _) = try await admin.post(client, schemaURI, alice, [("if_match", version), ("schema", "")], csrf: "")
            #expect(forged == .forbidden)
            // Carol may not read the collection: nothing of it, schema included.
            let carol = try await admin.signIn(client, user: "carol")
            let (carolPage, carolText) = try await admin.get(client, "/admin/buckets/main/collections/users", carol)
            #expect(carolPage == .forbidden && !carolText.contains("Schema") && !carolText.contains("Ada"))
            let (carolSave, _, _) = try await admin.post(client, schemaURI, carol, [("if_match", version), ("schema", "")])
            #expect(carolSave == .forbidden)
            #expect(try await server.dump() == before)

            let schema = #"{"type": "object", "required": ["name"], "properties": {"name": {"type": "string"}}}"#
            let (saved, _, location) = try await admin.post(client, schemaURI, alice, [("if_match", version), ("schema", schema), ("unique_fields", "name")])
            #expect(saved == .seeOther && location == "/admin/buckets/main/collections/users#schema")
            let data = try await server.request("GET", "/buckets/main/collections/users").data
            #expect(data["unique_fields"] == ["name"] && data["schema"]?["required"] == ["name"])
            // The schema applies to records made through the pages: the API's message, nothing created.
            let (refused, refusedPage, _) = try await admin.post(client, "/admin/buckets/main/collections/users/records", alice, [("id", "r2"), ("data", #"{"age": 3}"#)])
            #expect(refused == .badRequest && refusedPage.contains("Nothing was created"))
            #expect(try await server.request("GET", "/buckets/main/collections/users/records/r2").status == 404)
            // Emptied: no schema, no unique fields.
            let now = String(try #require(data["last_modified"]?.intValue))
            let (removed, _, _) = try await admin.post(client, schemaURI, alice, [("if_match", now), ("schema", " "), ("unique_fields", "")])
            #expect(removed == .seeOther)
            let after = try await server.request("GET", "/buckets/main/collections/users").data
            #expect(after["schema"] == nil && after["unique_fields"] == nil)
        }
    }

    @Test func webhooksAndTheirLogAreForWritersOnlyAndNeverShowTheSecret() async throws {
        let server = try TestServer { $0.webhookAllowHosts = ["127.0.0.1"] }
        try await server.seedUsers()
        try await server.request("PATCH", "/buckets/main/collections/users", json: ["permissions": ["read": [.string(server.userID("bob"))]]])
        let secret = "a very secret webhook secret"
        let base = "/admin/buckets/main/collections/users"
        try await server.application.test(.router) { client in
            let alice = try await admin.signIn(client)
            let bob = try await admin.signIn(client, user: "bob")
            let before = try await server.dump()
            for (fields, message) in [
                ([("id", "hook"), ("url", "ftp://127.0.0.1/"), ("secret", secret)], "data.url"),
                ([("id", "hook"), ("url", "http://127.0.0.1:9/in"), ("secret", "short")], "secret is required"),
                ([("id", "hook"), ("url", "http://127.0.0.1:9/in"), ("secret", secret), ("batch_size", "lots")], "batch size must be a number"),
                ([("id", "hook"), ("url", "http://127.0.0.1:9/in"), ("secret", secret), ("batch_size", "5000")], "batch_size must be a number from 1 to 1000"),
                ([("id", "../x"), ("url", "http://127.0.0.1:9/in"), ("secret", secret)], "is not an id"),
            ] {
                let (status, page, _) = try await admin.post(client, base + "/webhooks", alice, fields)
                #expect(status == .badRequest && page.contains(message) && page.contains("Nothing was registered"), "\(message): \(page)")
                #expect(!page.contains(secret))
            }
            let (bobRegister, _, _) = try await admin.post(client, base + "/webhooks", bob, [("id", "hook"), ("url", "http://127.0.0.1:9/in"), ("secret", secret)])
            #expect(bobRegister == .forbidden)
            let (forged, _, _) = try await admin.post(client, base + "/webhooks", alice, [("id", "hook"), ("url", "http://127.0.0.1:9/in"), ("secret", secret)], csrf: "x")
            #expect(forged == .forbidden)
            #expect(try await server.dump() == before)

            let (created, _, location) = try await admin.post(client, base + "/webhooks", alice, [("id", "hook"), ("url", "http://127.0.0.1:9/in"), ("secret", secret), ("batch_size", "7")])
            #expect(created == .seeOther && location == base + "/webhooks/hook")
            let (status, page) = try await admin.get(client, base + "/webhooks/hook", alice)
            #expect(status == .ok && page.contains("http://127.0.0.1:9/in") && page.contains("Delivery log") && !page.contains(secret))
            let (_, list) = try await admin.get(client, base, alice)
            #expect(list.contains(base + "/webhooks/hook\"") && !list.contains(secret))

            // Bob reads the collection, not its webhooks.
            let (_, bobList) = try await admin.get(client, base, bob)
            #expect(bobList.contains("Only who may write this collection") && !bobList.contains("127.0.0.1:9"))
            let (bobPage, bobText) = try await admin.get(client, base + "/webhooks/hook", bob)
            #expect(bobPage == .forbidden && !bobText.contains("127.0.0.1:9"))
            let kept = try await server.dump()
            let (bobDelete, _, _) = try await admin.post(client, base + "/webhooks/hook/delete", bob, [])
            #expect(bobDelete == .forbidden)
            let (forgedDelete, _, _) = try await admin.post(client, base + "/webhooks/hook/delete", alice, [], csrf: "")
            #expect(forgedDelete == .forbidden)
            #expect(try await server.dump() == kept)
            let (deleted, _, _) = try await admin.post(client, base + "/webhooks/hook/delete", alice, [])
            #expect(deleted == .seeOther)
            #expect(try await server.request("GET", "/buckets/main/collections/users/webhooks/hook").status == 404)
        }
    }

    @Test func theDeliveryLogIsShownNewestFirst() async throws {
        let server = try TestServer { $0.webhookAllowHosts = ["127.0.0.1"] }
        try await server.seedUsers()
        try await server.request("PUT", "/buckets/main/collections/users/webhooks/hook", json: ["data": ["url": "http://127.0.0.1:9/in", "secret": "a very secret webhook secret"]])
        // Two attempts, as the dispatcher records them (its own code path: no receiver needed).
        let id = KintoAPI.webhookStorageID(bucket: "main", collection: "users", id: "hook")
        try await server.parts.webhooks.record(.init(delivery: "first-delivery", lastTimestamp: 1, count: 3, status: 500,
                                                     error: "<b>receiver</b> answered 500", milliseconds: 12, at: 1_700_000_000_000), storageID: id)
        try await server.parts.webhooks.record(.init(delivery: "second-delivery", lastTimestamp: 1, count: 3, status: 200,
                                                     error: nil, milliseconds: 9, at: 1_700_000_060_000), storageID: id)
        try await server.application.test(.router) { client in
            let alice = try await admin.signIn(client)
            let (status, page) = try await admin.get(client, "/admin/buckets/main/collections/users/webhooks/hook", alice)
            #expect(status == .ok)
            let first = try #require(page.range(of: "first-delivery")), second = try #require(page.range(of: "second-delivery"))
            #expect(second.lowerBound < first.lowerBound, "newest first")
            #expect(page.contains("2023-11-14T22:13:20") && page.contains("&lt;b&gt;receiver&lt;/b&gt; answered 500") && page.contains("class=\"bad\""))
        }
    }

    @Test func accountsShowOnlyWhatTheUserMayAndNeverAPassword() async throws {
        let server = try TestServer { $0.authPolicies = ["account"]; $0.passwordRounds = 1000 }
        for name in ["ada", "eve"] {
            try await server.request("PUT", "/accounts/\(name)", json: ["data": ["password": .string("password of \(name)")]], user: nil)
        }
        try await server.application.test(.router) { client in
            let ada = try await admin.signIn(client, user: "ada", password: "password of ada")
            let (status, list) = try await admin.get(client, "/admin/accounts", ada)
            #expect(status == .ok && list.contains("/admin/accounts/ada\"") && !list.contains("eve") && list.contains("href=\"/admin/accounts\""))
            let (evePage, eveText) = try await admin.get(client, "/admin/accounts/eve", ada)
            #expect(evePage == .forbidden && !eveText.contains("account:eve"))
            let (own, ownText) = try await admin.get(client, "/admin/accounts/ada", ada)
            #expect(own == .ok && !ownText.contains("password of ada") && !ownText.contains("pbkdf2"))

            let before = try await server.dump()
            let (short, shortText, _) = try await admin.post(client, "/admin/accounts/ada/password", ada, [("password", "short")])
            #expect(short == .badRequest && shortText.contains("data.password must be at least") && shortText.contains("Nothing was changed"))
            let (forged, _, _) = try await admin.post(client, "/admin/accounts/ada/password", ada, [("password", "a new long password")], csrf: "")
            #expect(forged == .forbidden)
            let (other, _, _) = try await admin.post(client, "/admin/accounts/eve/password", ada, [("password", "taken over by ada")])
            #expect(other == .forbidden)
            let (otherDelete, _, _) = try await admin.post(client, "/admin/accounts/eve/delete", ada, [])
            #expect(otherDelete == .forbidden)
            let (badName, _, _) = try await admin.post(client, "/admin/accounts", ada, [("id", "a/b"), ("password", "long enough password")])
            #expect(badName == .badRequest)
            #expect(try await server.dump() == before)
            #expect(try await server.request("GET", "/accounts/eve", user: "eve", password: "password of eve").status == 200)

            // Her own new password: the old one stops working (and with it this session).
            let (changed, _, _) = try await admin.post(client, "/admin/accounts/ada/password", ada, [("password", "a new long password")])
            #expect(changed == .seeOther)
            #expect(try await server.request("GET", "/accounts/ada", user: "ada", password: "a new long password").status == 200)
            let (ended, _) = try await admin.get(client, "/admin/accounts/ada", ada)
            #expect(ended == .unauthorized || ended == .seeOther)
        }
        // Without the account policy there is no accounts page, and no link to one.
        let basic = try TestServer { $0.authPolicies = ["basicauth"] }
        try await basic.application.test(.router) { client in
            let alice = try await admin.signIn(client)
            let (status, _) = try await admin.get(client, "/admin/accounts", alice)
            #expect(status == .notFound)
            let (_, home) = try await admin.get(client, "/admin", alice)
            #expect(!home.contains("/admin/accounts"))
        }
    }

    @Test func theSignInFormNeedsItsOwnCookieAndFailuresAreLimited() async throws {
        let server = try TestServer { $0.authPolicies = ["account"]; $0.passwordRounds = 1000 }
        try await server.request("PUT", "/accounts/ada", json: ["data": ["password": "long enough password"]], user: nil)
        try await server.application.test(.router) { client in
            // A form posted from elsewhere: no sign-in cookie, or one that does not match its token.
            let form = try await AdminTests.signInForm(client)
            for (cookie, token) in [(nil, form.token), (form.cookie, String(repeating: "0", count: 64)), (form.cookie, "")] as [(String?, String)] {
                var headers = AdminTests.formType
                headers[.cookie] = cookie
                try await client.execute(uri: "/admin/signin", method: .post, headers: headers,
                                         body: AdminTests.form([("signin", token), ("user", "ada"), ("password", "long enough password")])) { response in
                    #expect(response.status == .forbidden && AdminTests.text(response).contains("not sent from a page of this server"))
                    #expect(!(response.headers[.setCookie] ?? "").hasPrefix(AdminPages.cookieName + "="))
                }
            }
            // Ten wrong passwords for ada: then even the right one waits.
            for _ in 0..<10 {
                try await AdminTests.postSignIn(client, user: "ada", password: "wrong password") { #expect($0.status == .unauthorized) }
            }
            try await AdminTests.postSignIn(client, user: "ada", password: "long enough password") { response in
                #expect(response.status == .tooManyRequests && AdminTests.text(response).contains("Too many failed sign-ins"))
                #expect(Int(response.headers[.retryAfter] ?? "") ?? 0 > 0)
                #expect(!(response.headers[.setCookie] ?? "").hasPrefix(AdminPages.cookieName + "="))
            }
        }
    }
}
