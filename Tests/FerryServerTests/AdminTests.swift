import FerryCore
@testable import FerryServer
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import NIOCore
import Testing

/// `/admin` through the whole responder (Hummingbird's in-memory client): sign-in, the cookie,
/// CSRF, escaping, the API's permissions, and bad input that changes nothing.
@Suite struct AdminTests {
    /// A signed-in browser: its cookie and the session's CSRF token.
    struct Browser {
        let cookie: String
        let csrf: String
    }

    static func form(_ fields: [(String, String)]) -> ByteBuffer {
        var allowed = CharacterSet.alphanumerics
        allowed.insert(charactersIn: "-._~")
        return ByteBuffer(string: fields.map { "\($0.0)=\($0.1.addingPercentEncoding(withAllowedCharacters: allowed)!)" }.joined(separator: "&"))
    }

    static let formType = Wire.fields(["Content-Type": "application/x-www-form-urlencoded"])

    static func text(_ response: TestResponse) -> String { String(buffer: response.body) }

    static func csrf(in page: String) -> String? {
        guard let range = page.range(of: #"name="csrf" value="([0-9a-f]{64})""#, options: .regularExpression) else { return nil }
        return String(page[range].dropFirst(#"name="csrf" value=""#.count).dropLast())
    }

    /// The sign-in form's cookie and token (what `GET /admin` gives a browser that is not signed in).
    static func signInForm(_ client: some TestClientProtocol) async throws -> (cookie: String, token: String) {
        try await client.execute(uri: "/admin", method: .get) { response in
            let cookie = String((response.headers[.setCookie] ?? "").split(separator: ";")[0])
            let page = Self.text(response)
            let token = try #require(page.range(of: #"name="signin" value="([0-9a-f]{64})""#, options: .regularExpression)
                .map { String(page[$0].dropFirst(#"name="signin" value=""#.count).dropLast()) })
            #expect(cookie == "\(AdminPages.signInCookieName)=\(token)")
            return (cookie, token)
        }
    }

    /// Posts the sign-in form as a browser that opened it.
    static func postSignIn<T: Sendable>(_ client: some TestClientProtocol, user: String, password: String,
                                        _ check: @escaping @Sendable (TestResponse) throws -> T) async throws -> T {
        let form = try await signInForm(client)
        var headers = formType
        headers[.cookie] = form.cookie
        return try await client.execute(uri: "/admin/signin", method: .post, headers: headers,
                                        body: Self.form([("signin", form.token), ("user", user), ("password", password)]), testCallback: check)
    }

    func signIn(_ client: some TestClientProtocol, user: String = "alice", password: String = "secret") async throws -> Browser {
        let cookie = try await Self.postSignIn(client, user: user, password: password) { response in
            #expect(response.status == .seeOther)
            let setCookie = response.headers[.setCookie] ?? ""
            return String(setCookie.split(separator: ";")[0])
        }
        let csrf = try await client.execute(uri: "/admin", method: .get, headers: [.cookie: cookie]) { Self.csrf(in: Self.text($0)) }
        return Browser(cookie: cookie, csrf: try #require(csrf))
    }

    func post(_ client: some TestClientProtocol, _ uri: String, _ browser: Browser, _ fields: [(String, String)], csrf: String? = nil) async throws -> (HTTPResponse.Status, String, String?) {
        var headers = Self.formType
        headers[.cookie] = browser.cookie
        return try await client.execute(uri: uri, method: .post, headers: headers, body: Self.form([("csrf", csrf ?? browser.csrf)] + fields)) {
            ($0.status, Self.text($0), $0.headers[.location])
        }
    }

    func get(_ client: some TestClientProtocol, _ uri: String, _ browser: Browser) async throws -> (HTTPResponse.Status, String) {
        try await client.execute(uri: uri, method: .get, headers: [.cookie: browser.cookie]) { ($0.status, Self.text($0)) }
    }

    @Test func signInGivesAStrictCookieAndEveryPageAStrictPolicy() async throws {
        let server = try TestServer()
        try await server.application.test(.router) { client in
            try await client.execute(uri: "/admin", method: .get) { response in
                #expect(response.status == .ok)
                #expect(Self.text(response).contains("Sign in"))
                #expect(response.headers[HTTPField.Name("Content-Security-Policy")!]?.contains("default-src 'none'") == true)
                #expect(response.headers[HTTPField.Name("Content-Security-Policy")!]?.contains("unsafe-inline") == false)
                #expect(response.headers[.contentType] == "text/html; charset=utf-8")
            }
            try await Self.postSignIn(client, user: "alice", password: "secret") { response in
                #expect(response.status == .seeOther)
                let cookie = response.headers[.setCookie] ?? ""
                #expect(cookie.hasPrefix("ferry_admin=") && cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict") && cookie.contains("Path=/admin"))
            }
            let browser = try await signIn(client)
            let (status, page) = try await get(client, "/admin", browser)
            #expect(status == .ok && page.contains("Buckets") && page.contains("Sign out"))
            // The server's own figures, from its metrics.
            let (serverStatus, serverPage) = try await get(client, "/admin/server", browser)
            #expect(serverStatus == .ok && serverPage.contains("requests answered") && serverPage.contains("<svg role=\"img\""), "\(serverPage)")
            // The database's size, read when the page is asked for (a SQLite file is never empty).
            #expect(serverPage.contains("<th>storage on disk</th><td>") && serverPage.contains(" MB</td>"), "\(serverPage)")
            #expect(serverPage.contains("data-source=\"/admin/server/figures\"") && serverPage.contains("/admin/static/figures.js"))
            let (fragmentStatus, fragment) = try await get(client, "/admin/server/figures", browser)
            #expect(fragmentStatus == .ok && fragment.contains("requests per second") && !fragment.contains("<html"))
            // The password is never on a page.
            #expect(!page.contains("secret") && !page.contains(TestServer.basic("alice")))
            // Signing out ends the session.
            let (out, _, _) = try await post(client, "/admin/signout", browser, [])
            #expect(out == .seeOther)
            let (after, _) = try await get(client, "/admin/buckets/main", browser)
            #expect(after == .seeOther)
        }
    }

    @Test func wrongPasswordIsRefused() async throws {
        let server = try TestServer { $0.authPolicies = ["account"]; $0.passwordRounds = 1000 }
        try await server.request("PUT", "/accounts/ada", json: ["data": ["password": "long enough password"]], user: nil)
        try await server.application.test(.router) { client in
            for (user, password) in [("ada", "wrong password"), ("nobody", "long enough password"), ("", "x"), ("a:b", "x")] {
                try await Self.postSignIn(client, user: user, password: password) { response in
                    #expect(response.status == .unauthorized || response.status == .badRequest, "\(user)")
                    #expect(!(response.headers[.setCookie] ?? "").hasPrefix(AdminPages.cookieName + "="), "no session")
                }
            }
            let browser = try await signIn(client, user: "ada", password: "long enough password")
            #expect(browser.csrf.count == 64)
        }
    }

    @Test func formsWithoutTheSessionsTokenChangeNothing() async throws {
        let server = try TestServer()
        try await server.seedUsers()
        let before = try await server.dump()
        try await server.application.test(.router) { client in
            let browser = try await signIn(client)
            // One character off (never the token itself), empty, and made up.
            let oneOff = (browser.csrf.first == "0" ? "1" : "0") + String(browser.csrf.dropFirst())
            for csrf in ["", oneOff, "forged"] {
                let (status, page, _) = try await post(client, "/admin/buckets", browser, [("id", "evil")], csrf: csrf)
                #expect(status == .forbidden && page.contains("CSRF"))
                let (recordStatus, _, _) = try await post(client, "/admin/buckets/main/collections/users/records", browser,
                                                          [("id", "x1"), ("data", "{}")], csrf: csrf)
                #expect(recordStatus == .forbidden)
            }
            // Without a session: no change either.
            try await client.execute(uri: "/admin/buckets", method: .post, headers: Self.formType, body: Self.form([("id", "evil")])) { response in
                #expect(response.status == .unauthorized)
            }
            // Another session's token does not do.
            let other = try await signIn(client, user: "bob")
            let (status, _, _) = try await post(client, "/admin/buckets", browser, [("id", "evil")], csrf: other.csrf)
            #expect(status == .forbidden)
        }
        #expect(try await server.dump() == before)
    }

    @Test func dataIsEscapedOnEveryPage() async throws {
        let server = try TestServer()
        try await server.seedUsers()
        let hostile = #"<script>alert("x")</script>' onmouseover='x"#
        try await server.request("PUT", "/buckets/main/collections/users/records/r1", json: ["data": ["name": .string(hostile), hostile: 1]])
        try await server.application.test(.router) { client in
            let browser = try await signIn(client)
            for uri in ["/admin/buckets/main/collections/users", "/admin/buckets/main/collections/users/records/r1"] {
                let (status, page) = try await get(client, uri, browser)
                #expect(status == .ok, "\(uri)")
                #expect(!page.contains("<script>alert"), "\(uri)")
                #expect(!page.contains("' onmouseover='"), "\(uri)")
                #expect(page.contains("&lt;script&gt;alert("), "\(uri)")
            }
            // A filter that echoes back is escaped too.
            let (_, page) = try await get(client, "/admin/buckets/main/collections/users?filters=name%3D%22%3E%3Cb%3E", browser)
            #expect(!page.contains("\"><b>") && page.contains("&quot;&gt;&lt;b&gt;"))
        }
    }

    @Test func createEditAndDeleteARecordWithItsVersion() async throws {
        let server = try TestServer()
        try await server.seedUsers()
        try await server.application.test(.router) { client in
            let browser = try await signIn(client)
            let (created, _, location) = try await post(client, "/admin/buckets/main/collections/users/records", browser,
                                                        [("id", "ada"), ("data", #"{"name": "Ada"}"#)])
            #expect(created == .seeOther && location == "/admin/buckets/main/collections/users/records/ada")
            let version = try #require(try await server.request("GET", "/buckets/main/collections/users/records/ada").data["last_modified"]?.intValue)
            let (saved, _, _) = try await post(client, "/admin/buckets/main/collections/users/records/ada", browser,
                                               [("if_match", String(version)), ("data", #"{"name": "Ada L."}"#)])
            #expect(saved == .seeOther)
            let record = try await server.request("GET", "/buckets/main/collections/users/records/ada").data
            #expect(record["name"] == "Ada L.")

            // A stale version: 412, the conflict shown, the newer content kept.
            let (stale, page, _) = try await post(client, "/admin/buckets/main/collections/users/records/ada", browser,
                                                  [("if_match", String(version)), ("data", #"{"name": "Overwrite"}"#)])
            #expect(stale == .preconditionFailed)
            #expect(page.contains("changed by someone else") && page.contains("Ada L.") && page.contains("Overwrite"))
            #expect(try await server.request("GET", "/buckets/main/collections/users/records/ada").data["name"] == "Ada L.")
            let stalDelete = try await post(client, "/admin/buckets/main/collections/users/records/ada/delete", browser, [("if_match", String(version))])
            #expect(stalDelete.0 == .preconditionFailed)
            #expect(try await server.request("GET", "/buckets/main/collections/users/records/ada").status == 200)

            let current = try #require(record["last_modified"]?.intValue)
            let deleted = try await post(client, "/admin/buckets/main/collections/users/records/ada/delete", browser, [("if_match", String(current))])
            #expect(deleted.0 == .seeOther)
            #expect(try await server.request("GET", "/buckets/main/collections/users/records/ada").status == 404)
        }
    }

    @Test func badJSONAndBadIdsShowAnErrorAndChangeNothing() async throws {
        let server = try TestServer()
        try await server.seedUsers()
        try await server.request("PUT", "/buckets/main/collections/users/records/r1", json: ["data": ["name": "Ada"]])
        let version = try #require(try await server.request("GET", "/buckets/main/collections/users/records/r1").data["last_modified"]?.intValue)
        let before = try await server.dump()
        try await server.application.test(.router) { client in
            let browser = try await signIn(client)
            let record = "/admin/buckets/main/collections/users/records/r1"
            for (text, message) in [("{not json", "not valid JSON"), ("[1, 2]", "must be a JSON object"), ("", "not valid JSON")] {
                let (status, page, _) = try await post(client, record, browser, [("if_match", String(version)), ("data", text)])
                #expect(status == .badRequest, "\(text)")
                #expect(page.contains(message) && page.contains("Nothing was changed"), "\(text)")
            }
            let (noVersion, _, _) = try await post(client, record, browser, [("if_match", "yesterday"), ("data", "{}")])
            #expect(noVersion == .badRequest)
            for id in ["a/b", "../r1", "<b>", "-x", "a b"] {
                let (status, page, _) = try await post(client, "/admin/buckets/main/collections/users/records", browser, [("id", id), ("data", "{}")])
                #expect(status == .badRequest, "\(id)")
                #expect(page.contains("is not an id") && page.contains("Nothing was created"), "\(id)")
                #expect(!page.contains("<b>\""), "\(id)")
            }
            let (badBucket, _, _) = try await post(client, "/admin/buckets", browser, [("id", "../x")])
            #expect(badBucket == .badRequest)
            let (badCollection, _, _) = try await post(client, "/admin/buckets/main/collections", browser, [("id", "a.b")])
            #expect(badCollection == .badRequest)
            // A record id that exists is not overwritten by "create".
            let (exists, page, _) = try await post(client, "/admin/buckets/main/collections/users/records", browser, [("id", "r1"), ("data", #"{"name": "Eve"}"#)])
            #expect(exists == .badRequest && page.contains("exists already"))
            // Ids in the address are checked before anything is built from them.
            let (path, _) = try await get(client, "/admin/buckets/main/collections/users/records/a%2F..", browser)
            #expect(path == .badRequest || path == .notFound)
        }
        #expect(try await server.dump() == before)
    }

    @Test func pagesShowOnlyWhatTheUserMayAndRefuseTheRest() async throws {
        let server = try TestServer()
        try await server.seedUsers()
        try await server.request("PUT", "/buckets/main/collections/users/records/r1", json: ["data": ["name": "Ada"]])
        let before = try await server.dump()
        try await server.application.test(.router) { client in
            let bob = try await signIn(client, user: "bob")
            let (buckets, list) = try await get(client, "/admin", bob)
            #expect(buckets == .ok && !list.contains("/admin/buckets/main\""))
            let (bucket, _) = try await get(client, "/admin/buckets/main", bob)
            #expect(bucket == .forbidden)
            let (record, page) = try await get(client, "/admin/buckets/main/collections/users/records/r1", bob)
            #expect(record == .forbidden && !page.contains("Ada"))
            let (create, _, _) = try await post(client, "/admin/buckets/main/collections/users/records", bob, [("id", "r2"), ("data", "{}")])
            #expect(create == .forbidden)
            let (edit, _, _) = try await post(client, "/admin/buckets/main/collections/users/records/r1", bob, [("if_match", "1"), ("data", "{}")])
            #expect(edit == .forbidden || edit == .preconditionFailed)
            let (delete, _, _) = try await post(client, "/admin/buckets/main/collections/users/records/r1/delete", bob, [("if_match", "1")])
            #expect(delete == .forbidden || delete == .preconditionFailed)
        }
        #expect(try await server.dump() == before)
    }

    @Test func permissionsAreChangedThroughTheAPIAndBadOnesChangeNothing() async throws {
        let server = try TestServer()
        try await server.seedUsers()
        try await server.application.test(.router) { client in
            let alice = try await signIn(client)
            let bob = try await signIn(client, user: "bob")
            let collection = "/admin/buckets/main/collections/users"
            #expect(try await server.request("GET", "/buckets/main/collections/users", user: "bob").status == 403)
            let before = try await server.dump()
            for (text, message) in [("{not json", "not valid JSON"), (#"{"read": "bob"}"#, "list of principals"), (#"{"read": [1]}"#, "list of principals")] {
                let (status, page, _) = try await post(client, collection + "/permissions", alice, [("permissions", text)])
                #expect(status == .badRequest && page.contains(message) && page.contains("Nothing was changed"), "\(text)")
            }
            // An unknown permission is the API's 400.
            let (unknown, _, _) = try await post(client, collection + "/permissions", alice, [("permissions", #"{"fly": ["bob"]}"#)])
            #expect(unknown == .badRequest)
            // Bob may not change what he cannot write.
            let (refused, _, _) = try await post(client, collection + "/permissions", bob, [("permissions", #"{"read": ["system.Everyone"]}"#)])
            #expect(refused == .forbidden)
            #expect(try await server.dump() == before)

            let bobID = server.userID("bob")
            let (saved, _, location) = try await post(client, collection + "/permissions", alice, [("permissions", #"{"read": ["\#(bobID)"]}"#)])
            #expect(saved == .seeOther && location == collection)
            #expect(try await server.request("GET", "/buckets/main/collections/users", user: "bob").status == 200)
            let (_, page) = try await get(client, collection, alice)
            #expect(page.contains(bobID))
        }
    }

    @Test func listsPageWithTheAPIsFiltersAndSort() async throws {
        let server = try TestServer()
        try await server.seedUsers()
        for i in 1...5 {
            try await server.request("PUT", "/buckets/main/collections/users/records/r\(i)", json: ["data": ["n": .int(Int64(i)), "team": i % 2 == 0 ? "even" : "odd"]])
        }
        try await server.application.test(.router) { client in
            let browser = try await signIn(client)
            let (status, page) = try await get(client, "/admin/buckets/main/collections/users?_sort=n&_limit=2", browser)
            #expect(status == .ok)
            #expect(page.contains("records/r1\"") && page.contains("records/r2\"") && !page.contains("records/r3\""))
            #expect(page.contains("rel=\"next\""))
            let next = try #require(page.range(of: #"rel="next" href="([^"]+)""#, options: .regularExpression).map { String(page[$0]) })
            let href = String(next.dropFirst(#"rel="next" href=""#.count).dropLast()).replacingOccurrences(of: "&amp;", with: "&")
            let (second, secondPage) = try await get(client, href, browser)
            #expect(second == .ok && secondPage.contains("records/r3\"") && !secondPage.contains("records/r1\""))
            let (_, filtered) = try await get(client, "/admin/buckets/main/collections/users?filters=team%3Deven", browser)
            #expect(filtered.contains("records/r2\"") && filtered.contains("records/r4\"") && !filtered.contains("records/r1\""))
            // A filter the API refuses: its message, on the page.
            let (bad, badPage) = try await get(client, "/admin/buckets/main/collections/users?_sort=n&_limit=-3", browser)
            #expect(bad == .badRequest && badPage.contains("_limit"))
        }
    }

    @Test func theSettingTurnsThePagesOff() async throws {
        let server = try TestServer { $0.adminEnabled = false }
        let before = try await server.dump()
        try await server.application.test(.router) { client in
            // Like any other path outside /v1: redirected under /v1, where nothing is.
            for uri in ["/admin", "/admin/static/admin.css"] {
                try await client.execute(uri: uri, method: .get) { response in
                    #expect(response.status == .temporaryRedirect && response.headers[.location] == "/v1" + uri)
                    #expect(response.headers[HTTPField.Name("Content-Security-Policy")!] == nil)
                }
                try await client.execute(uri: "/v1" + uri, method: .get) { #expect($0.status == .notFound) }
            }
            try await client.execute(uri: "/admin/signin", method: .post, headers: Self.formType, body: Self.form([("user", "a"), ("password", "b")])) {
                #expect($0.status == .temporaryRedirect && $0.headers[.setCookie] == nil)
            }
        }
        #expect(try await server.dump() == before)
    }

    @Test func figuresAreRatesBetweenSamplesOfTheMetrics() {
        let first = """
            # TYPE ferry_http_requests_total counter
            ferry_http_requests_total{route="records",method="GET",status="200"} 10
            ferry_http_requests_total{route="records",method="PUT",status="201"} 5
            ferry_http_request_duration_seconds_sum{route="records"} 0.5
            ferry_http_request_duration_seconds_count{route="records"} 15
            ferry_streams_open 2
            ferry_records_written_total 5
            """
        let second = """
            ferry_http_requests_total{route="records",method="GET",status="200"} 40
            ferry_http_requests_total{route="records",method="PUT",status="201"} 15
            ferry_http_request_duration_seconds_sum{route="records"} 1.5
            ferry_http_request_duration_seconds_count{route="records"} 55
            ferry_streams_open 3
            ferry_records_written_total 15
            ferry_storage_errors_total 1
            ferry_storage_bytes 2500000
            """
        let a = AdminFigures.Sample(at: 100, exposition: first), b = AdminFigures.Sample(at: 110, exposition: second)
        #expect(a.requests == 15 && b.requests == 55 && b.storageErrors == 1 && a.openStreams == 2)
        #expect(a.storageBytes == 0 && b.storageBytes == 2_500_000)
        let series = AdminFigures.Series([a, b])
        #expect(series.requestsPerSecond == [4])  // 40 more in 10 s
        #expect(series.latencyMilliseconds == [25])  // 1 s over 40 requests
        #expect(series.openStreams == [3] && series.writesPerSecond == [1])
        #expect(AdminFigures.Series([a]).requestsPerSecond.isEmpty)

        // At most one sample an interval, the oldest dropped past the capacity.
        let figures = AdminFigures(interval: 5, capacity: 3)
        for t in [0.0, 1, 4.9, 5, 10, 15, 16] { figures.offer(now: t) { first } }
        #expect(figures.all.map(\.at) == [5, 10, 15])
    }

    @Test func escapeCoversEveryCharacterThatEndsTextOrAnAttribute() {
        #expect(HTML.escape(#"<a href="x" title='y'>&</a>"#) == "&lt;a href=&quot;x&quot; title=&#39;y&#39;&gt;&amp;&lt;/a&gt;")
        #expect(HTML.escape("plain é ✓") == "plain é ✓")
        #expect(HTML.pretty(["b": [1, "x"], "a": [:]]) == "{\n  \"a\": {},\n  \"b\": [\n    1,\n    \"x\"\n  ]\n}")
    }
}
