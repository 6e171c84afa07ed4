import FerryCore
import Foundation
import HTTPTypes

extension AdminPages {
    /// The pages of one signed-in request: buckets → collections → records, and their forms.
    struct SignedIn {
        let api: KintoAPI
        let session: AdminSessions.Session
        let request: Request

        /// Sends one request to the API as the session's user.
        func call(_ method: HTTPRequest.Method, _ path: String, query: [(String, String)] = [], body: JSON? = nil,
                  headers: [String: String] = [:]) async -> APIResponse {
            let identity: Identity
            do {
                identity = try await api.authenticate(authorization: session.authorization)
            } catch {
                return APIResponse(error: error)
            }
            var apiRequest = APIRequest(method: method, path: path, query: query, headers: headers,
                                        body: body?.serializedBytes() ?? [], identity: identity, baseURL: request.baseURL)
            if body != nil { apiRequest.headers["content-type"] = "application/json" }
            return await api.handle(apiRequest)
        }

        func page(_ title: String, trail: [(String, String)], status: Int = 200, scripts: [String] = [], _ body: String) -> APIResponse {
            AdminPages.html(status: status, HTML.page(title: title, user: session.user, principal: session.principal, csrf: session.csrf, accounts: accountsEnabled, trail: trail, scripts: scripts, body: body))
        }

        func errorPage(status: Int, title: String, message: String, trail: [(String, String)] = []) -> APIResponse {
            page(title, trail: trail, status: status, "<p class=\"error\">\(HTML.escape(message))</p>")
        }

        /// The error page of an API answer: its status and message.
        func apiError(_ response: APIResponse, trail: [(String, String)]) -> APIResponse {
            let message = response.jsonBody?["message"]?.stringValue ?? "the server answered \(response.status)"
            let title = switch response.status {
            case 401: "Not signed in"
            case 403: "Forbidden"
            case 404: "Not found"
            default: "Error \(response.status)"
            }
            return errorPage(status: response.status, title: title, message: message, trail: trail)
        }

        var form: [String: String] { request.form }

        func redirect(_ location: String) -> APIResponse { APIResponse(status: 303, headers: [("Location", location)]) }

        /// Routes `/admin/buckets/…` by its segments (each id checked first: no other path can be built from one).
        func resource(segments: [String]) async -> APIResponse {
            let method = request.method
            switch segments.count {
            case 0 where method == .get: return await bucketsPage(error: nil)
            case 1 where segments[0] == "buckets" && method == .post: return await createBucket()
            case _ where segments.first == "accounts": return await accounts(segments: segments)
            default: break
            }
            guard segments.count >= 2, segments[0] == "buckets" else { return errorPage(status: 404, title: "Not found", message: "No page at /admin\(request.path).") }
            let ids = stride(from: 1, to: segments.count, by: 2).map { segments[$0] }
            if let bad = ids.first(where: { !ObjectID.isValid($0) }) {
                return errorPage(status: 400, title: "Bad id", message: Self.notAnID(bad, "Nothing was changed."))
            }
            let kinds = stride(from: 2, to: segments.count, by: 2).map { segments[$0] }
            switch (kinds, method) {
            case ([], .get): return await bucketPage(ids[0], error: nil)
            case (["permissions"], .post), (["collections", "permissions"], .post), (["collections", "records", "permissions"], .post),
                 (["groups", "permissions"], .post):
                return await savePermissions(path: segments.dropLast())
            case (["groups"], .post) where segments.count == 3: return await createGroup(ids[0])
            case (["groups"], .get) where segments.count == 4: return await groupPage(ids[0], ids[1])
            case (["groups"], .post) where segments.count == 4: return await saveGroup(ids[0], ids[1])
            case (["groups", "delete"], .post) where segments.count == 5: return await deleteGroup(ids[0], ids[1])
            case (["collections", "schema"], .post) where segments.count == 5: return await saveSchema(ids[0], ids[1])
            case (["collections", "webhooks"], .post) where segments.count == 5: return await saveWebhook(ids[0], ids[1])
            case (["collections", "webhooks"], .get) where segments.count == 6: return await webhookPage(ids[0], ids[1], ids[2])
            case (["collections", "webhooks", "delete"], .post) where segments.count == 7: return await deleteWebhook(ids[0], ids[1], ids[2])
            case (["collections"], .post) where segments.count == 3: return await createCollection(ids[0])
            case (["collections"], .get) where segments.count == 4: return await collectionPage(ids[0], ids[1], error: nil)
            case (["collections", "records"], .post) where segments.count == 5: return await createRecord(ids[0], ids[1])
            case (["collections", "live"], .get) where segments.count == 5: return livePage(ids[0], ids[1])
            case (["collections", "records"], .get) where segments.count == 6: return await recordPage(ids[0], ids[1], ids[2])
            case (["collections", "records"], .post) where segments.count == 6: return await saveRecord(ids[0], ids[1], ids[2])
            case (["collections", "records", "delete"], .post) where segments.count == 7: return await deleteRecord(ids[0], ids[1], ids[2])
            default: return errorPage(status: 404, title: "Not found", message: "No page at /admin\(request.path).")
            }
        }

        // MARK: - Lists

        func bucketsPage(error: String?) async -> APIResponse {
            let answer = await call(.get, "/buckets", query: [("_sort", "id")])
            guard answer.status == 200 else { return apiError(answer, trail: []) }
            let rows = (answer.jsonBody?["data"]?.arrayValue ?? []).compactMap { $0["id"]?.stringValue }.map { id in
                "<tr><td><a href=\"/admin/buckets/\(HTML.escape(id))\">\(HTML.escape(id))</a></td></tr>"
            }
            let body = (error.map { "<p class=\"error\">\(HTML.escape($0))</p>" } ?? "")
                + table(["bucket"], rows, empty: "No bucket you may read.")
                + createForm(action: "/admin/buckets", what: "bucket")
            return page("Buckets", trail: [], status: error == nil ? 200 : 400, body)
        }

        func bucketPage(_ bucket: String, error: String?) async -> APIResponse {
            let trail = [("buckets", "/admin"), (bucket, "")]
            let object = await call(.get, "/buckets/\(bucket)")
            guard object.status == 200 else { return apiError(object, trail: trail) }
            let list = await call(.get, "/buckets/\(bucket)/collections", query: [("_sort", "id")])
            guard list.status == 200 else { return apiError(list, trail: trail) }
            let rows = (list.jsonBody?["data"]?.arrayValue ?? []).compactMap { $0["id"]?.stringValue }.map { id in
                "<tr><td><a href=\"/admin/buckets/\(HTML.escape(bucket))/collections/\(HTML.escape(id))\">\(HTML.escape(id))</a></td></tr>"
            }
            let body = (error.map { "<p class=\"error\">\(HTML.escape($0))</p>" } ?? "")
                + table(["collection"], rows, empty: "No collection you may read.")
                + createForm(action: "/admin/buckets/\(bucket)/collections", what: "collection")
                + (await groupsSection(bucket))
                + permissions(object.jsonBody?["permissions"], action: "/admin/buckets/\(bucket)/permissions")
            return page("Bucket \(bucket)", trail: trail, status: error == nil ? 200 : 400, body)
        }

        /// A collection's records, with the API's own filters, sort and paging: the page's query
        /// goes to the API as it is (`status=done&_sort=-last_modified&_limit=20`), so a bad one
        /// gets the API's error message.
        func collectionPage(_ bucket: String, _ collection: String, error: String?, draft: (id: String, data: String)? = nil,
                            schemaError: String? = nil, schemaDraft: (schema: String, unique: String)? = nil,
                            webhookError: String? = nil, webhookDraft: [String: String] = [:]) async -> APIResponse {
            let base = "/admin/buckets/\(bucket)/collections/\(collection)"
            let trail = [("buckets", "/admin"), (bucket, "/admin/buckets/\(bucket)"), (collection, "")]
            let object = await call(.get, "/buckets/\(bucket)/collections/\(collection)")
            guard object.status == 200 else { return apiError(object, trail: trail) }
            var query = request.method == .get ? request.query.filter { $0.0 != "filters" && !$0.1.isEmpty } : []
            if let filters = request.method == .get ? request.queryValue("filters") : nil, !filters.isEmpty {
                query += APIRequest.parseQuery(Substring(filters))
            }
            if !query.contains(where: { $0.0 == "_limit" }) { query.append(("_limit", "50")) }
            if !query.contains(where: { $0.0 == "_sort" }) { query.append(("_sort", "-last_modified")) }
            let list = await call(.get, "/buckets/\(bucket)/collections/\(collection)/records", query: query)
            var body = (error.map { "<p class=\"error\">\(HTML.escape($0))</p>" } ?? "")
            let shownFilters = query.filter { !$0.0.hasPrefix("_") }.map { "\($0.0)=\($0.1)" }.joined(separator: "&")
            body += """
                <form method="get" action="\(HTML.escape(base))" class="filters"><fieldset><legend>Filter and sort</legend>
                <label>Filters <input name="filters" value="\(HTML.escape(shownFilters))" placeholder="status=done&amp;gt_age=30"></label>
                <label>Sort <input name="_sort" value="\(HTML.escape(query.last { $0.0 == "_sort" }?.1 ?? ""))" placeholder="-last_modified"></label>
                <label>Per page <input name="_limit" type="number" min="1" value="\(HTML.escape(query.last { $0.0 == "_limit" }?.1 ?? ""))"></label>
                <button>Show</button></fieldset></form>
                """
            if list.status == 200 {
                let records = list.jsonBody?["data"]?.arrayValue ?? []
                let rows = records.map { record -> String in
                    let id = record["id"]?.stringValue ?? ""
                    var data = record.objectValue ?? [:]
                    data["id"] = nil
                    data["last_modified"] = nil
                    let text = JSON.object(data).serialized()
                    return "<tr><td><a href=\"\(HTML.escape(base))/records/\(HTML.escape(id))\">\(HTML.escape(id))</a></td>"
                        + "<td>\(record["last_modified"]?.intValue.map { String($0) } ?? "")</td>"
                        + "<td><code>\(HTML.escape(text.count > 300 ? String(text.prefix(300)) + "…" : text))</code></td></tr>"
                }
                body += table(["id", "last_modified", "data"], rows, empty: "No record matches.")
                let total = list.header("Total-Records").map { "<p>\(HTML.escape($0)) records in all.</p>" } ?? ""
                body += total
                if let next = list.header("Next-Page"), let q = next.firstIndex(of: "?") {
                    body += "<p><a rel=\"next\" href=\"\(HTML.escape(base + String(next[q...])))\">Next page</a></p>"
                }
            } else {
                let message = list.jsonBody?["message"]?.stringValue ?? "the server answered \(list.status)"
                body += "<p class=\"error\">\(HTML.escape(message))</p>"
            }
            body += """
                <form method="post" action="\(HTML.escape(base))/records"><fieldset><legend>New record</legend>
                \(HTML.hidden("csrf", session.csrf))
                <p><label>Id (empty: one is made) <input name="id" value="\(HTML.escape(draft?.id ?? ""))"></label></p>
                <p><label>Data (a JSON object)<textarea name="data">\(HTML.escape(draft?.data ?? "{\n}"))</textarea></label></p>
                <button>Create</button></fieldset></form>
                <p><a href="\(HTML.escape(base))/live">Live changes</a></p>
                """
            body += schemaSection(bucket, collection, data: object.jsonBody?["data"], error: schemaError, draft: schemaDraft)
                + (await webhooksSection(bucket, collection, error: webhookError, draft: webhookDraft))
                + permissions(object.jsonBody?["permissions"], action: base + "/permissions")
            let status = error != nil || schemaError != nil || webhookError != nil ? 400 : (list.status == 200 ? 200 : list.status)
            return page("Collection \(collection)", trail: trail, status: status, body)
        }

        // MARK: - Record

        func recordPage(_ bucket: String, _ collection: String, _ id: String) async -> APIResponse {
            let trail = recordTrail(bucket, collection, id)
            let answer = await call(.get, "/buckets/\(bucket)/collections/\(collection)/records/\(id)")
            guard answer.status == 200, let record = answer.jsonBody?["data"] else { return apiError(answer, trail: trail) }
            return page("Record \(id)", trail: trail, editForm(bucket, collection, id, record: record, text: nil)
                + permissions(answer.jsonBody?["permissions"], action: "/admin/buckets/\(bucket)/collections/\(collection)/records/\(id)/permissions"))
        }

        func saveRecord(_ bucket: String, _ collection: String, _ id: String) async -> APIResponse {
            let trail = recordTrail(bucket, collection, id)
            let path = "/buckets/\(bucket)/collections/\(collection)/records/\(id)"
            let text = form["data"] ?? ""
            let ifMatch = form["if_match"] ?? ""
            let data: JSON
            switch Self.parseObject(text) {
            case .failure(let failure):
                let message = failure.message
                let current = await call(.get, path)
                guard current.status == 200, let record = current.jsonBody?["data"] else { return apiError(current, trail: trail) }
                return page("Record \(id)", trail: trail, status: 400, "<p class=\"error\">\(HTML.escape(message)) Nothing was changed.</p>"
                    + editForm(bucket, collection, id, record: record, text: text, ifMatch: ifMatch))
            case .success(let object): data = object
            }
            guard Int64(ifMatch) != nil else {
                return errorPage(status: 400, title: "Bad form", message: "The form has no version to check (if_match). Nothing was changed.", trail: trail)
            }
            let answer = await call(.put, path, body: ["data": data], headers: ["if-match": "\"\(ifMatch)\""])
            if answer.status == 412 {
                let current = await call(.get, path)
                guard current.status == 200, let record = current.jsonBody?["data"] else { return apiError(current, trail: trail) }
                let now = record["last_modified"]?.intValue.map { String($0) } ?? "?"
                return page("Conflict", trail: trail, status: 412, """
                    <p class="conflict">This record was changed by someone else after you opened it (you edited version \(HTML.escape(ifMatch)); \
                    it is now version \(HTML.escape(now))). Your change was not saved. Its current content is below; your text is in the form, \
                    which saves over the current version if you send it again.</p>
                    <h2>Current</h2><pre>\(HTML.escape(HTML.pretty(Self.dataOnly(record))))</pre>
                    """ + editForm(bucket, collection, id, record: record, text: text))
            }
            guard (200..<300).contains(answer.status) else {
                if answer.status == 400 {
                    let current = await call(.get, path)
                    if current.status == 200, let record = current.jsonBody?["data"] {
                        let message = answer.jsonBody?["message"]?.stringValue ?? "the server refused the record"
                        return page("Record \(id)", trail: trail, status: 400, "<p class=\"error\">\(HTML.escape(message)) Nothing was changed.</p>"
                            + editForm(bucket, collection, id, record: record, text: text, ifMatch: ifMatch))
                    }
                }
                return apiError(answer, trail: trail)
            }
            return redirect("/admin" + path)
        }

        func createRecord(_ bucket: String, _ collection: String) async -> APIResponse {
            let id = (form["id"] ?? "").trimmingCharacters(in: .whitespaces)
            let text = form["data"] ?? ""
            if !id.isEmpty && !ObjectID.isValid(id) {
                return await collectionPage(bucket, collection, error: Self.notAnID(id), draft: (id, text))
            }
            let data: JSON
            switch Self.parseObject(text) {
            case .failure(let failure): return await collectionPage(bucket, collection, error: failure.message + " Nothing was created.", draft: (id, text))
            case .success(let object): data = object
            }
            let base = "/buckets/\(bucket)/collections/\(collection)/records"
            // A given id must not overwrite a record: If-None-Match: * makes the server refuse one that exists.
            let answer: APIResponse
            if id.isEmpty {
                answer = await call(.post, base, body: ["data": data])
            } else {
                answer = await call(.put, base + "/\(id)", body: ["data": data], headers: ["if-none-match": "*"])
            }
            guard (200..<300).contains(answer.status), let created = answer.jsonBody?["data"]?["id"]?.stringValue else {
                if answer.status == 412 {
                    return await collectionPage(bucket, collection, error: "A record \(id) exists already. Nothing was created.", draft: (id, text))
                }
                if answer.status == 400 {
                    let message = answer.jsonBody?["message"]?.stringValue ?? "the server refused the record"
                    return await collectionPage(bucket, collection, error: message + " Nothing was created.", draft: (id, text))
                }
                return apiError(answer, trail: [("buckets", "/admin"), (bucket, "/admin/buckets/\(bucket)"), (collection, "")])
            }
            return redirect("/admin\(base)/\(created)")
        }

        func deleteRecord(_ bucket: String, _ collection: String, _ id: String) async -> APIResponse {
            let path = "/buckets/\(bucket)/collections/\(collection)/records/\(id)"
            guard let ifMatch = form["if_match"], Int64(ifMatch) != nil else {
                return errorPage(status: 400, title: "Bad form", message: "The form has no version to check (if_match). Nothing was changed.", trail: recordTrail(bucket, collection, id))
            }
            let answer = await call(.delete, path, headers: ["if-match": "\"\(ifMatch)\""])
            if answer.status == 412 {
                return errorPage(status: 412, title: "Conflict", message: "This record was changed after you opened it, so it was not deleted. Open it again to see the change.",
                                 trail: recordTrail(bucket, collection, id))
            }
            guard answer.status == 200 else { return apiError(answer, trail: recordTrail(bucket, collection, id)) }
            return redirect("/admin/buckets/\(bucket)/collections/\(collection)")
        }

        // MARK: - Buckets and collections

        func createBucket() async -> APIResponse {
            let id = (form["id"] ?? "").trimmingCharacters(in: .whitespaces)
            guard ObjectID.isValid(id) else {
                return await bucketsPage(error: Self.notAnID(id))
            }
            let answer = await call(.put, "/buckets/\(id)", body: ["data": [:]], headers: ["if-none-match": "*"])
            if answer.status == 412 { return await bucketsPage(error: "A bucket \(id) exists already. Nothing was created.") }
            guard (200..<300).contains(answer.status) else { return apiError(answer, trail: [("buckets", "/admin")]) }
            return redirect("/admin/buckets/\(id)")
        }

        func createCollection(_ bucket: String) async -> APIResponse {
            let id = (form["id"] ?? "").trimmingCharacters(in: .whitespaces)
            guard ObjectID.isValid(id) else {
                return await bucketPage(bucket, error: Self.notAnID(id))
            }
            let answer = await call(.put, "/buckets/\(bucket)/collections/\(id)", body: ["data": [:]], headers: ["if-none-match": "*"])
            if answer.status == 412 { return await bucketPage(bucket, error: "A collection \(id) exists already. Nothing was created.") }
            guard (200..<300).contains(answer.status) else { return apiError(answer, trail: [("buckets", "/admin"), (bucket, "/admin/buckets/\(bucket)")]) }
            return redirect("/admin/buckets/\(bucket)/collections/\(id)")
        }

        // MARK: - Live changes and server figures

        func livePage(_ bucket: String, _ collection: String) -> APIResponse {
            let base = "/admin/buckets/\(bucket)/collections/\(collection)"
            return page("Live changes of \(collection)", trail: [("buckets", "/admin"), (bucket, "/admin/buckets/\(bucket)"), (collection, base), ("live", "")],
                        scripts: ["/admin/static/live.js"], """
                <p>Changes appear here as they happen (this page needs JavaScript; the records list works without it). \
                Stream: <span id="live-state">not connected</span>.</p>
                <ul id="live" data-stream="\(HTML.escape(base))/stream"></ul>
                """)
        }

        /// The server's own figures: charts of the samples taken so far and the totals now. The
        /// page's script replaces the figures with a fresh copy every 5 s; without it, reload.
        func serverPage(figures: AdminFigures, metrics: String) -> APIResponse {
            page("Server", trail: [("buckets", "/admin"), ("server", "")], scripts: ["/admin/static/figures.js"], """
                <div id="figures" data-source="/admin/server/figures">\(Self.figures(figures, metrics: metrics))</div>
                <p>The whole text: <a href="/metrics">/metrics</a>.</p>
                """)
        }

        /// The figures alone (what the page's script fetches).
        func figuresFragment(figures: AdminFigures, metrics: String) -> APIResponse {
            AdminPages.html(Self.figures(figures, metrics: metrics))
        }

        static func figures(_ figures: AdminFigures, metrics: String) -> String {
            let samples = figures.all
            let series = AdminFigures.Series(samples)
            let now = AdminFigures.Sample(at: 0, exposition: metrics)
            let span = (samples.last?.at ?? 0) - (samples.first?.at ?? 0)
            let totals: [(String, String)] = [
                ("requests answered", String(format: "%.0f", now.requests)),
                ("mean latency", now.latencyCount > 0 ? String(format: "%.1f ms", now.latencySum / now.latencyCount * 1000) : "–"),
                ("event streams open", String(format: "%.0f", now.openStreams)),
                ("objects written", String(format: "%.0f", now.recordsWritten)),
                ("storage errors", String(format: "%.0f", now.storageErrors)),
                ("storage on disk", now.storageBytes > 0 ? String(format: "%.1f MB", now.storageBytes / 1_000_000) : "–"),
            ]
            let empty = "needs two samples (one every \(Int(figures.interval)) s while the server serves requests)"
            return "<table class=\"figures\">" + totals.map { "<tr><th>\(HTML.escape($0.0))</th><td>\(HTML.escape($0.1))</td></tr>" }.joined() + "</table>"
                + "<p>\(samples.count) samples over the last \(Int(span)) s, at most one every \(Int(figures.interval)) s.</p><div class=\"charts\">"
                + SVGChart.render(title: "requests per second", values: series.requestsPerSecond, bars: true, empty: empty)
                + SVGChart.render(title: "mean latency (ms)", values: series.latencyMilliseconds, bars: false, empty: empty)
                + SVGChart.render(title: "event streams open", values: series.openStreams, bars: false, empty: empty)
                + SVGChart.render(title: "objects written per second (storage)", values: series.writesPerSecond, bars: true, empty: empty)
                + "</div>"
        }

        // MARK: - Pieces

        func recordTrail(_ bucket: String, _ collection: String, _ id: String) -> [(String, String)] {
            [("buckets", "/admin"), (bucket, "/admin/buckets/\(bucket)"), (collection, "/admin/buckets/\(bucket)/collections/\(collection)"), (id, "")]
        }

        /// The edit form of a record: its data as JSON, the version it was read at (sent back as
        /// `If-Match`), and the delete form at the same version.
        func editForm(_ bucket: String, _ collection: String, _ id: String, record: JSON, text: String?, ifMatch: String? = nil) -> String {
            let action = "/admin/buckets/\(bucket)/collections/\(collection)/records/\(id)"
            let version = ifMatch ?? record["last_modified"]?.intValue.map { String($0) } ?? ""
            return """
                <form method="post" action="\(HTML.escape(action))"><fieldset><legend>Edit (version \(HTML.escape(version)))</legend>
                \(HTML.hidden("csrf", session.csrf))\(HTML.hidden("if_match", version))
                <textarea name="data">\(HTML.escape(text ?? HTML.pretty(Self.dataOnly(record))))</textarea>
                <p><button>Save</button></p></fieldset></form>
                <form method="post" action="\(HTML.escape(action))/delete">\(HTML.hidden("csrf", session.csrf))\(HTML.hidden("if_match", version))
                <button class="danger">Delete this record</button></form>
                """
        }

        func createForm(action: String, what: String) -> String {
            """
            <form method="post" action="\(HTML.escape(action))"><fieldset><legend>New \(what)</legend>
            \(HTML.hidden("csrf", session.csrf))<label>Id <input name="id" required></label> <button>Create</button></fieldset></form>
            """
        }

        func table(_ headings: [String], _ rows: [String], empty: String) -> String {
            guard !rows.isEmpty else { return "<p>\(HTML.escape(empty))</p>" }
            return "<table><thead><tr>" + headings.map { "<th>\(HTML.escape($0))</th>" }.joined() + "</tr></thead><tbody>"
                + rows.joined() + "</tbody></table>"
        }

        /// The object's permissions (as far as the user may see them), and the form that changes them.
        func permissions(_ json: JSON?, action: String) -> String {
            let members = json?.objectValue ?? [:]
            let rows = members.keys.sorted().map { name in
                "<tr><td>\(HTML.escape(name))</td><td>\(HTML.escape((members[name]?.arrayValue ?? []).compactMap(\.stringValue).joined(separator: ", ")))</td></tr>"
            }
            return "<h2>Permissions</h2>" + table(["permission", "principals"], rows, empty: "None you may see.") + """
                <form method="post" action="\(HTML.escape(action))"><fieldset><legend>Change permissions</legend>
                \(HTML.hidden("csrf", session.csrf))
                <p><label>Each permission given is replaced by its list of principals \
                (<code>{"read": ["system.Authenticated"], "write": ["account:ada"]}</code>; [] removes all)\
                <textarea name="permissions">\(HTML.escape(HTML.pretty(.object(members))))</textarea></label></p>
                <button>Save permissions</button></fieldset></form>
                """
        }

        /// PATCHes the permissions of the bucket, collection, group or record at `path` (its
        /// segments below `/admin`, ids already checked: `buckets`, `main`, `groups`, `staff`).
        func savePermissions(path segments: ArraySlice<String>) async -> APIResponse {
            let pairs = stride(from: segments.startIndex, to: segments.endIndex - 1, by: 2).map { (segments[$0], segments[$0 + 1]) }
            let path = pairs.map { "/\($0.0)/\($0.1)" }.joined()
            let trail = [("buckets", "/admin")] + pairs.indices.map { i in
                (pairs[i].1, "/admin" + pairs.prefix(i + 1).map { "/\($0.0)/\($0.1)" }.joined())
            }
            let text = form["permissions"] ?? ""
            let permissions: JSON
            switch Self.parseObject(text) {
            case .failure(let failure):
                return errorPage(status: 400, title: "Bad permissions", message: failure.message.replacingOccurrences(of: "The data", with: "The permissions") + " Nothing was changed.", trail: trail)
            case .success(let object): permissions = object
            }
            guard let lists = permissions.objectValue, lists.values.allSatisfy({ $0.arrayValue?.allSatisfy { $0.stringValue != nil } == true }) else {
                return errorPage(status: 400, title: "Bad permissions", message: "Each permission must be a list of principals (strings). Nothing was changed.", trail: trail)
            }
            let answer = await call(.patch, path, body: ["permissions": .object(lists)])
            guard (200..<300).contains(answer.status) else { return apiError(answer, trail: trail) }
            return redirect("/admin" + path)
        }

        /// A record's own fields (without `id` and `last_modified`, which the server sets).
        static func dataOnly(_ record: JSON) -> JSON {
            var data = record.objectValue ?? [:]
            data["id"] = nil
            data["last_modified"] = nil
            return .object(data)
        }

        /// The text of a form's JSON field as an object, or what is wrong with it.
        static func parseObject(_ text: String) -> Result<JSON, ParseFailure> {
            let parsed: JSON
            do {
                parsed = try JSON.parse(text)
            } catch {
                return .failure(ParseFailure(message: "The data is not valid JSON: \(error)."))
            }
            guard case .object = parsed else { return .failure(ParseFailure(message: "The data must be a JSON object ({…}).")) }
            return .success(parsed)
        }

        struct ParseFailure: Error {
            let message: String
        }
    }
}
