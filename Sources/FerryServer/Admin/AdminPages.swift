import FerryCore
import Foundation
import HTTPTypes
import HummingbirdCore
import NIOCore

/// `/admin`: the server's data as HTML pages, for people.
///
/// Every read and write goes through ``KintoAPI/handle(_:)`` as the signed-in user, so a page
/// shows and changes exactly what that user may through the API (same permissions, same
/// validation, same errors). Browsing works without JavaScript; forms are POSTs that carry the
/// session's CSRF token; the session cookie is `HttpOnly` and `SameSite=Strict`; every answer
/// has a Content-Security-Policy that allows nothing but this server's own style sheet and script.
struct AdminPages: Sendable {
    let api: KintoAPI
    let sessions = AdminSessions()
    /// The server's figures over time, for `/admin/server`.
    let figures = AdminFigures()
    /// The server's Prometheus text, for the server page.
    let metrics: @Sendable () -> String

    /// Failed sign-ins allowed per user name (refilled over ten minutes); a right password costs nothing.
    let failedSignInsPerUser = RateLimiter(requests: 10, seconds: 600)
    /// Failed sign-ins allowed per client address, whatever the names tried.
    let failedSignInsPerAddress = RateLimiter(requests: 30, seconds: 600)

    static let cookieName = "ferry_admin"
    /// The sign-in form's own cookie: its value is also in the form, and a sign-in must bring both.
    static let signInCookieName = "ferry_admin_signin"
    static let contentSecurityPolicy = "default-src 'none'; style-src 'self'; script-src 'self'; connect-src 'self'; img-src 'self'; "
        + "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

    /// One request to `/admin…`, as the responder hands it over.
    struct Request: Sendable {
        var method: HTTPRequest.Method
        /// The path below `/admin` (`""`, `/buckets/main`).
        var path: String
        var query: [(String, String)]
        /// Header values by lower-case name.
        var headers: [String: String]
        var body: [UInt8]
        /// `https` when the client came over TLS: the cookie is then `Secure`.
        var scheme: String
        var baseURL: String
        /// The client's address (as the server saw it), for the sign-in rate limit.
        var remoteAddress: String? = nil

        /// The form fields of a `application/x-www-form-urlencoded` body.
        var form: [String: String] {
            Dictionary(APIRequest.parseQuery(Substring(decoding: body, as: UTF8.self)), uniquingKeysWith: { first, _ in first })
        }

        func queryValue(_ name: String) -> String? { query.first { $0.0 == name }?.1 }

        var cookieSession: String? { cookie(AdminPages.cookieName) }

        func cookie(_ name: String) -> String? {
            for part in (headers["cookie"] ?? "").split(separator: ";") {
                let pair = part.trimmingCharacters(in: .whitespaces).split(separator: "=", maxSplits: 1)
                if pair.count == 2, pair[0] == name { return String(pair[1]) }
            }
            return nil
        }
    }

    func respond(_ request: Request) async -> APIResponse {
        var response = await route(request)
        response.headers += [
            ("Content-Security-Policy", Self.contentSecurityPolicy), ("X-Content-Type-Options", "nosniff"),
            ("X-Frame-Options", "DENY"), ("Referrer-Policy", "no-referrer"), ("Cache-Control", "no-store"),
        ]
        response.routeName = "admin"
        return response
    }

    private func route(_ request: Request) async -> APIResponse {
        if request.method == .get && request.path == "/static/admin.css" {
            return APIResponse(body: .text(HTML.styleSheet, contentType: "text/css; charset=utf-8"))
        }
        if request.method == .get && request.path == "/static/live.js" {
            return APIResponse(body: .text(Self.liveScript, contentType: "text/javascript; charset=utf-8"))
        }
        if request.method == .get && request.path == "/static/figures.js" {
            return APIResponse(body: .text(Self.figuresScript, contentType: "text/javascript; charset=utf-8"))
        }
        if request.method == .post && request.path == "/signin" { return await signIn(request) }
        guard let id = request.cookieSession, let session = sessions.session(id) else {
            if request.method == .get && (request.path == "" || request.path == "/") { return signInPage(request, error: nil, status: 200) }
            if request.method == .get { return APIResponse(status: 303, headers: [("Location", "/admin")]) }
            return signInPage(request, error: "Your session has ended: sign in again.", status: 401)
        }
        let admin = SignedIn(api: api, session: session, request: request)
        if request.method == .post {
            // The session's token, on every form: a page of another site cannot post here.
            guard let csrf = request.form["csrf"], AdminSessions.same(csrf, session.csrf) else {
                return admin.errorPage(status: 403, title: "Refused", message: "The form was not sent from a page of this server (its CSRF token is missing or wrong). Nothing was changed.")
            }
            if request.path == "/signout" {
                sessions.end(session.id)
                return APIResponse(status: 303, headers: [("Location", "/admin"), ("Set-Cookie", cookie(request, value: "", maxAge: 0))])
            }
        }
        let segments = request.path.split(separator: "/", omittingEmptySubsequences: false).dropFirst().map(String.init)
        if request.path == "/server" && request.method == .get { return admin.serverPage(figures: figures, metrics: metrics()) }
        if request.path == "/server/figures" && request.method == .get { return admin.figuresFragment(figures: figures, metrics: metrics()) }
        return await admin.resource(segments: request.path.isEmpty || request.path == "/" ? [] : segments)
    }

    /// `GET /admin/buckets/B/collections/C/stream` of a signed-in session: the request to open
    /// the collection's event stream as the session's user (its `Authorization`, no cookie).
    func stream(_ request: HummingbirdCore.Request) -> (request: HummingbirdCore.Request, stream: EventStream)? {
        let parts = request.uri.path.split(separator: "/", omittingEmptySubsequences: false)
        // "", "admin", "buckets", B, "collections", C, "stream"
        guard parts.count == 7, parts[1] == "admin", parts[2] == "buckets", parts[4] == "collections", parts[6] == "stream",
              ObjectID.isValid(String(parts[3])), ObjectID.isValid(String(parts[5])) else { return nil }
        let cookie = Request(method: .get, path: "", query: [], headers: ["cookie": request.headers[.cookie] ?? ""], body: [], scheme: "", baseURL: "")
        guard let id = cookie.cookieSession, let session = sessions.session(id) else { return nil }
        let path = "/v1/buckets/\(parts[3])/collections/\(parts[5])/records"
        var fields = request.headers
        fields[.cookie] = nil
        fields[.authorization] = session.authorization
        fields[.accept] = "text/event-stream"
        var head = request.head
        head.path = path + (request.uri.query.map { "?" + $0 } ?? "")
        head.headerFields = fields
        guard let stream = EventStream.target(path: path, accept: "text/event-stream") else { return nil }
        return (HummingbirdCore.Request(head: head, body: .init(buffer: ByteBuffer())), stream)
    }

    /// The sign-in form. It carries a fresh token that is also set as a `SameSite=Strict` cookie
    /// (a double submit): a page of another site can post the form, but the browser sends it no
    /// such cookie, so nobody can be signed in to an account of someone else's choosing (login CSRF).
    private func signInPage(_ request: Request, error: String?, status: Int) -> APIResponse {
        let token = AdminSessions.token()
        let body = (error.map { "<p class=\"error\">\(HTML.escape($0))</p>" } ?? "") + """
            <form method="post" action="/admin/signin">\(HTML.hidden("signin", token))
            <p><label>User <input name="user" autocomplete="username" required></label></p>
            <p><label>Password <input name="password" type="password" autocomplete="current-password" required></label></p>
            <p><button>Sign in</button></p></form>
            <p>Sign in with an account of this server (or any credentials its Basic authentication takes).</p>
            """
        return Self.html(status: status, HTML.page(title: "Sign in", user: nil, csrf: nil, body: body),
                         headers: [("Set-Cookie", cookie(request, name: Self.signInCookieName, value: token, maxAge: 3600))])
    }

    private func signIn(_ request: Request) async -> APIResponse {
        let form = request.form
        guard let token = form["signin"], let expected = request.cookie(Self.signInCookieName), AdminSessions.same(token, expected) else {
            return signInPage(request, error: "The sign-in form was not sent from a page of this server (or it is more than an hour old): sign in from this form.", status: 403)
        }
        guard let user = form["user"], let password = form["password"], !user.isEmpty, !password.isEmpty, !user.contains(":") else {
            return signInPage(request, error: "Give a user name (without \":\") and a password.", status: 400)
        }
        // Failed sign-ins are limited per name and per address; while either is spent, even the
        // right password is refused (so guessing cannot go on between two good sign-ins).
        let userKey = "user:" + user, addressKey = "address:" + (request.remoteAddress ?? "?")
        if let wait = failedSignInsPerUser.wait(userKey) ?? failedSignInsPerAddress.wait(addressKey) {
            var page = signInPage(request, error: "Too many failed sign-ins for this user or from this address: try again in \(wait) s.", status: 429)
            page.headers.append(("Retry-After", String(wait)))
            return page
        }
        let authorization = "Basic " + Data("\(user):\(password)".utf8).base64EncodedString()
        let identity = try? await api.authenticate(authorization: authorization)
        guard let userID = identity?.userID else {
            _ = failedSignInsPerUser.admit(userKey)
            _ = failedSignInsPerAddress.admit(addressKey)
            return signInPage(request, error: "Wrong user name or password.", status: 401)
        }
        let session = sessions.create(authorization: authorization, user: user, principal: userID)
        return APIResponse(status: 303, headers: [
            ("Location", "/admin"), ("Set-Cookie", cookie(request, value: session.id, maxAge: Int(sessions.lifetime))),
            ("Set-Cookie", cookie(request, name: Self.signInCookieName, value: "", maxAge: 0)),
        ])
    }

    private func cookie(_ request: Request, name: String = AdminPages.cookieName, value: String, maxAge: Int) -> String {
        "\(name)=\(value); Path=/admin; Max-Age=\(maxAge); HttpOnly; SameSite=Strict" + (request.scheme == "https" ? "; Secure" : "")
    }

    static func html(status: Int = 200, _ text: String, headers: [(String, String)] = []) -> APIResponse {
        APIResponse(status: status, headers: headers, body: .text(text, contentType: "text/html; charset=utf-8"))
    }

    /// The server page's script: fetches the figures every 5 seconds and puts them in place.
    static let figuresScript = """
        "use strict";
        (function () {
          var box = document.getElementById("figures");
          if (!box || !window.fetch) return;
          function refresh() {
            fetch(box.getAttribute("data-source"), { credentials: "same-origin" }).then(function (answer) {
              if (answer.ok) return answer.text().then(function (html) { box.innerHTML = html; box.setAttribute("data-updated", String(Date.now())); });
            }).catch(function () {});
          }
          setInterval(refresh, 5000);
        })();
        """

    /// The live view's script: appends each change of the collection's event stream to the list.
    static let liveScript = """
        "use strict";
        (function () {
          var list = document.getElementById("live");
          if (!list || !window.EventSource) return;
          var source = new EventSource(list.getAttribute("data-stream"));
          function add(text) {
            var item = document.createElement("li");
            item.textContent = text;
            list.insertBefore(item, list.firstChild);
          }
          source.onmessage = function (event) {
            try {
              var record = JSON.parse(event.data);
              add((record.deleted ? "deleted " : "changed ") + record.id + " at " + record.last_modified +
                  (record.deleted ? "" : " " + JSON.stringify(record).slice(0, 200)));
            } catch (e) { add(event.data); }
          };
          source.addEventListener("error", function (event) {
            if (event.data) { add("stream ended: " + event.data); source.close(); }
          });
          source.onopen = function () { document.getElementById("live-state").textContent = "listening"; };
          source.onerror = function () { document.getElementById("live-state").textContent = "reconnecting"; };
        })();
        """
}
