import FerryCore
import Foundation
import HTTPTypes

/// The admin pages of what surrounds the data: a bucket's groups, a collection's schema and
/// webhooks (with their delivery log), and the server's accounts. Like the record pages, each
/// reads and writes through the API as the signed-in user, so a user sees and changes only
/// what the API lets them, with the API's own validation and messages; a refused form changes
/// nothing and says why.
extension AdminPages.SignedIn {
    static func notAnID(_ id: String, _ outcome: String = "Nothing was created.") -> String {
        "\"\(id)\" is not an id: ids are letters, digits, _ and -, starting with a letter or digit. \(outcome)"
    }

    static func notAnAccount(_ id: String, _ outcome: String) -> String {
        "\"\(id)\" is not an account name: names are letters, digits and + . @ _ -, starting with a letter or digit. \(outcome)"
    }

    /// The API's message for a refused write (400 and its `details` when given), with the outcome.
    static func refusal(_ answer: APIResponse, _ outcome: String) -> String {
        (answer.jsonBody?["message"]?.stringValue ?? "the server answered \(answer.status)") + " " + outcome
    }

    static func version(_ object: JSON?) -> String { object?["last_modified"]?.intValue.map { String($0) } ?? "" }

    /// A millisecond timestamp as UTC date and time.
    static func time(_ milliseconds: Int64?) -> String {
        guard let milliseconds else { return "–" }
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return formatter.string(from: Date(timeIntervalSince1970: Double(milliseconds) / 1000))
    }

    /// Principals typed one a line (or separated by commas), blank ones dropped. Browsers send a
    /// text area's lines with CRLF, one `Character` in Swift: hence `isNewline`, not `"\n"`.
    static func principals(_ text: String) -> [String] {
        text.split(whereSeparator: { $0.isNewline || $0 == "," }).map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
    }

    // MARK: - Groups

    /// The groups of a bucket the user may read, for the bucket page, and the form that creates one.
    func groupsSection(_ bucket: String) async -> String {
        let base = "/admin/buckets/\(bucket)/groups"
        let list = await call(.get, "/buckets/\(bucket)/groups", query: [("_sort", "id")])
        var out = "<h2>Groups</h2>"
        if list.status == 200 {
            let rows = (list.jsonBody?["data"]?.arrayValue ?? []).map { group -> String in
                let id = group["id"]?.stringValue ?? ""
                let members = (group["members"]?.arrayValue ?? []).compactMap(\.stringValue)
                return "<tr><td><a href=\"\(HTML.escape(base))/\(HTML.escape(id))\">\(HTML.escape(id))</a></td><td>\(HTML.escape(members.joined(separator: ", ")))</td></tr>"
            }
            out += table(["group", "members"], rows, empty: "No group you may read.")
        } else {
            out += "<p>\(HTML.escape(Self.refusal(list, "")))</p>"
        }
        return out + """
            <form method="post" action="\(HTML.escape(base))"><fieldset><legend>New group</legend>\(HTML.hidden("csrf", session.csrf))
            <p><label>Id <input name="id" required></label></p>
            <p><label>Members (principals, one a line: <code>account:ada</code>, <code>system.Authenticated</code>)<textarea name="members" class="short"></textarea></label></p>
            <button>Create group</button></fieldset></form>
            """
    }

    func groupTrail(_ bucket: String, _ group: String) -> [(String, String)] {
        [("buckets", "/admin"), (bucket, "/admin/buckets/\(bucket)"), ("group \(group)", "")]
    }

    func groupPage(_ bucket: String, _ group: String, error: String? = nil, text: String? = nil, ifMatch: String? = nil) async -> APIResponse {
        let trail = groupTrail(bucket, group)
        let answer = await call(.get, "/buckets/\(bucket)/groups/\(group)")
        guard answer.status == 200, let data = answer.jsonBody?["data"] else { return apiError(answer, trail: trail) }
        let action = "/admin/buckets/\(bucket)/groups/\(group)"
        let members = (data["members"]?.arrayValue ?? []).compactMap(\.stringValue)
        let version = ifMatch ?? Self.version(data)
        let body = (error.map { "<p class=\"error\">\(HTML.escape($0))</p>" } ?? "") + """
            <h2>Members</h2><ul class="members">\(members.map { "<li>\(HTML.escape($0))</li>" }.joined())</ul>\(members.isEmpty ? "<p>No member.</p>" : "")
            <form method="post" action="\(HTML.escape(action))"><fieldset><legend>Edit members (version \(HTML.escape(version)))</legend>
            \(HTML.hidden("csrf", session.csrf))\(HTML.hidden("if_match", version))
            <p><label>Members, one principal a line<textarea name="members" class="short">\(HTML.escape(text ?? members.joined(separator: "\n")))</textarea></label></p>
            <button>Save members</button></fieldset></form>
            <form method="post" action="\(HTML.escape(action))/delete">\(HTML.hidden("csrf", session.csrf))\(HTML.hidden("if_match", version))
            <button class="danger">Delete this group</button></form>
            """ + permissions(answer.jsonBody?["permissions"], action: action + "/permissions")
        return page("Group \(group)", trail: trail, status: error == nil ? 200 : 400, body)
    }

    func createGroup(_ bucket: String) async -> APIResponse {
        let id = (form["id"] ?? "").trimmingCharacters(in: .whitespaces)
        guard ObjectID.isValid(id) else { return await bucketPage(bucket, error: Self.notAnID(id)) }
        let members = Self.principals(form["members"] ?? "")
        let answer = await call(.put, "/buckets/\(bucket)/groups/\(id)", body: ["data": ["members": .array(members.map(JSON.string))]],
                                headers: ["if-none-match": "*"])
        if answer.status == 412 { return await bucketPage(bucket, error: "A group \(id) exists already. Nothing was created.") }
        if answer.status == 400 { return await bucketPage(bucket, error: Self.refusal(answer, "Nothing was created.")) }
        guard (200..<300).contains(answer.status) else { return apiError(answer, trail: [("buckets", "/admin"), (bucket, "/admin/buckets/\(bucket)")]) }
        return redirect("/admin/buckets/\(bucket)/groups/\(id)")
    }

    /// Replaces the members (a `PATCH` of `data.members` at the version the form was read at).
    func saveGroup(_ bucket: String, _ group: String) async -> APIResponse {
        let text = form["members"] ?? ""
        guard let ifMatch = form["if_match"], Int64(ifMatch) != nil else {
            return errorPage(status: 400, title: "Bad form", message: "The form has no version to check (if_match). Nothing was changed.", trail: groupTrail(bucket, group))
        }
        let members = Self.principals(text)
        let answer = await call(.patch, "/buckets/\(bucket)/groups/\(group)", body: ["data": ["members": .array(members.map(JSON.string))]],
                                headers: ["if-match": "\"\(ifMatch)\""])
        switch answer.status {
        case 200..<300: return redirect("/admin/buckets/\(bucket)/groups/\(group)")
        case 412:
            var page = await groupPage(bucket, group, error: "This group was changed by someone else after you opened it. Your change was not saved; "
                                       + "the members below are the current ones, your text is in the form.", text: text)
            page.status = 412
            return page
        case 400: return await groupPage(bucket, group, error: Self.refusal(answer, "Nothing was changed."), text: text, ifMatch: ifMatch)
        default: return apiError(answer, trail: groupTrail(bucket, group))
        }
    }

    func deleteGroup(_ bucket: String, _ group: String) async -> APIResponse {
        guard let ifMatch = form["if_match"], Int64(ifMatch) != nil else {
            return errorPage(status: 400, title: "Bad form", message: "The form has no version to check (if_match). Nothing was changed.", trail: groupTrail(bucket, group))
        }
        let answer = await call(.delete, "/buckets/\(bucket)/groups/\(group)", headers: ["if-match": "\"\(ifMatch)\""])
        if answer.status == 412 {
            return errorPage(status: 412, title: "Conflict", message: "This group was changed after you opened it, so it was not deleted. Open it again to see the change.",
                             trail: groupTrail(bucket, group))
        }
        guard answer.status == 200 else { return apiError(answer, trail: groupTrail(bucket, group)) }
        return redirect("/admin/buckets/\(bucket)")
    }

    // MARK: - Schema

    /// A collection's schema and unique fields, and the form that changes them (for who may write it;
    /// the API refuses the others).
    func schemaSection(_ bucket: String, _ collection: String, data: JSON?, error: String? = nil, draft: (schema: String, unique: String)? = nil) -> String {
        let action = "/admin/buckets/\(bucket)/collections/\(collection)/schema"
        let schema = data?["schema"].flatMap { $0 == .null ? nil : $0 }
        let unique = (data?["unique_fields"]?.arrayValue ?? []).compactMap(\.stringValue)
        var out = "<h2 id=\"schema\">Schema</h2>" + (error.map { "<p class=\"error\">\(HTML.escape($0))</p>" } ?? "")
        out += schema.map { "<pre>\(HTML.escape(HTML.pretty($0)))</pre>" } ?? "<p>No schema: records may hold any fields.</p>"
        out += "<p>Unique fields: \(unique.isEmpty ? "none" : HTML.escape(unique.joined(separator: ", ")))</p>"
        return out + """
            <form method="post" action="\(HTML.escape(action))"><fieldset><legend>Change the schema (version \(HTML.escape(Self.version(data))))</legend>
            \(HTML.hidden("csrf", session.csrf))\(HTML.hidden("if_match", Self.version(data)))
            <p><label>JSON Schema (empty: no schema)<textarea name="schema">\(HTML.escape(draft?.schema ?? schema.map { HTML.pretty($0) } ?? ""))</textarea></label></p>
            <p><label>Unique fields (top-level field names, separated by commas; empty: none) \
            <input name="unique_fields" value="\(HTML.escape(draft?.unique ?? unique.joined(separator: ", ")))"></label></p>
            <button>Save schema</button></fieldset></form>
            """
    }

    /// Saves the schema and unique fields: the collection's data as read, with those two replaced,
    /// `PUT` at the version the form was read at (the API validates both; nothing changes on error).
    func saveSchema(_ bucket: String, _ collection: String) async -> APIResponse {
        let path = "/buckets/\(bucket)/collections/\(collection)"
        let schemaText = form["schema"] ?? "", uniqueText = form["unique_fields"] ?? ""
        let draft = (schemaText, uniqueText)
        func again(_ message: String, status: Int = 400) async -> APIResponse {
            var page = await collectionPage(bucket, collection, error: nil, schemaError: message, schemaDraft: draft)
            if page.status <= 400 { page.status = status }  // the page itself answers 400 for an error shown
            return page
        }
        guard let ifMatch = form["if_match"], Int64(ifMatch) != nil else { return await again("The form has no version to check (if_match). Nothing was changed.") }
        var schema: JSON = .null
        if !schemaText.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty {
            switch Self.parseObject(schemaText) {
            case .failure(let failure): return await again(failure.message.replacingOccurrences(of: "The data", with: "The schema") + " Nothing was changed.")
            case .success(let object): schema = object
            }
        }
        let unique = Self.principals(uniqueText)
        let current = await call(.get, path)
        guard current.status == 200, var data = current.jsonBody?["data"]?.objectValue else {
            return apiError(current, trail: [("buckets", "/admin"), (bucket, "/admin/buckets/\(bucket)"), (collection, "")])
        }
        data["id"] = nil
        data["last_modified"] = nil
        data["schema"] = schema == .null ? nil : schema
        data["unique_fields"] = unique.isEmpty ? nil : .array(unique.map(JSON.string))
        let answer = await call(.put, path, body: ["data": .object(data)], headers: ["if-match": "\"\(ifMatch)\""])
        switch answer.status {
        case 200..<300: return redirect("/admin\(path)#schema")
        case 412: return await again("This collection was changed by someone else after you opened it. Your change was not saved; "
                                     + "the schema shown is the current one, your text is in the form.", status: 412)
        case 400: return await again(Self.refusal(answer, "Nothing was changed."))
        default: return apiError(answer, trail: [("buckets", "/admin"), (bucket, "/admin/buckets/\(bucket)"), (collection, "")])
        }
    }

    // MARK: - Webhooks

    /// A collection's webhooks (only who may write the collection manages them, as in the API),
    /// and the form that registers one.
    func webhooksSection(_ bucket: String, _ collection: String, error: String? = nil, draft: [String: String] = [:]) async -> String {
        let base = "/admin/buckets/\(bucket)/collections/\(collection)/webhooks"
        let list = await call(.get, "/buckets/\(bucket)/collections/\(collection)/webhooks")
        var out = "<h2 id=\"webhooks\">Webhooks</h2>" + (error.map { "<p class=\"error\">\(HTML.escape($0))</p>" } ?? "")
        guard list.status == 200 else {
            return out + "<p>Only who may write this collection sees and manages its webhooks.</p>"
        }
        let rows = (list.jsonBody?["data"]?.arrayValue ?? []).map { hook -> String in
            let id = hook["id"]?.stringValue ?? ""
            return "<tr><td><a href=\"\(HTML.escape(base))/\(HTML.escape(id))\">\(HTML.escape(id))</a></td><td>\(HTML.escape(hook["url"]?.stringValue ?? ""))</td>"
                + "<td>\(hook["delivered"]?.intValue ?? 0)</td><td>\(hook["failures"]?.intValue ?? 0)</td>"
                + "<td>\(HTML.escape(hook["last_error"]?.stringValue ?? ""))</td></tr>"
        }
        out += table(["webhook", "url", "delivered", "failures in a row", "last error"], rows, empty: "No webhook.")
        return out + webhookForm(action: base, id: draft["id"], url: draft["url"], batchSize: draft["batch_size"], legend: "Register a webhook")
    }

    /// The registration form; the secret field is always empty (the API never answers it back).
    func webhookForm(action: String, id: String?, url: String?, batchSize: String?, legend: String) -> String {
        """
        <form method="post" action="\(HTML.escape(action))"><fieldset><legend>\(HTML.escape(legend))</legend>\(HTML.hidden("csrf", session.csrf))
        <p><label>Id <input name="id" value="\(HTML.escape(id ?? ""))" required></label></p>
        <p><label>URL (where each batch of changes is POSTed) <input name="url" type="url" value="\(HTML.escape(url ?? ""))" required></label></p>
        <p><label>Secret (16 to 256 characters; signs each delivery, never shown again) <input name="secret" type="password" autocomplete="off" required></label></p>
        <p><label>Batch size <input name="batch_size" type="number" min="1" max="1000" value="\(HTML.escape(batchSize ?? "100"))"></label></p>
        <button>Register</button></fieldset></form>
        """
    }

    func webhookTrail(_ bucket: String, _ collection: String, _ id: String) -> [(String, String)] {
        [("buckets", "/admin"), (bucket, "/admin/buckets/\(bucket)"), (collection, "/admin/buckets/\(bucket)/collections/\(collection)"), ("webhook \(id)", "")]
    }

    /// Registers (or re-registers) a webhook with `PUT`; the API checks the URL, secret and batch size.
    func saveWebhook(_ bucket: String, _ collection: String) async -> APIResponse {
        let id = (form["id"] ?? "").trimmingCharacters(in: .whitespaces)
        let draft = ["id": id, "url": form["url"] ?? "", "batch_size": form["batch_size"] ?? ""]
        func again(_ message: String) async -> APIResponse {
            var page = await collectionPage(bucket, collection, error: nil, webhookError: message, webhookDraft: draft)
            if page.status < 400 { page.status = 400 }
            return page
        }
        guard ObjectID.isValid(id) else { return await again(Self.notAnID(id, "Nothing was registered.")) }
        var data: [String: JSON] = ["url": .string(form["url"] ?? ""), "secret": .string(form["secret"] ?? "")]
        if let size = form["batch_size"], !size.isEmpty {
            guard let n = Int64(size) else { return await again("The batch size must be a number from 1 to 1000. Nothing was registered.") }
            data["batch_size"] = .int(n)
        }
        let answer = await call(.put, "/buckets/\(bucket)/collections/\(collection)/webhooks/\(id)", body: ["data": .object(data)])
        switch answer.status {
        case 200..<300: return redirect("/admin/buckets/\(bucket)/collections/\(collection)/webhooks/\(id)")
        case 400: return await again(Self.refusal(answer, "Nothing was registered."))
        default: return apiError(answer, trail: webhookTrail(bucket, collection, id))
        }
    }

    /// A webhook's state and its delivery log (newest first).
    func webhookPage(_ bucket: String, _ collection: String, _ id: String) async -> APIResponse {
        let trail = webhookTrail(bucket, collection, id)
        let answer = await call(.get, "/buckets/\(bucket)/collections/\(collection)/webhooks/\(id)")
        guard answer.status == 200, let hook = answer.jsonBody?["data"] else { return apiError(answer, trail: trail) }
        let action = "/admin/buckets/\(bucket)/collections/\(collection)/webhooks/\(id)"
        let facts: [(String, String)] = [
            ("url", hook["url"]?.stringValue ?? ""), ("batch size", hook["batch_size"]?.intValue.map { String($0) } ?? ""),
            ("changes delivered", String(hook["delivered"]?.intValue ?? 0)), ("delivered up to", Self.time(hook["cursor"]?.intValue)),
            ("failures in a row", String(hook["failures"]?.intValue ?? 0)), ("next try", Self.time(hook["next_attempt"]?.intValue)),
            ("last error", hook["last_error"]?.stringValue ?? "–"),
        ]
        let log = (hook["log"]?.arrayValue ?? []).map { entry -> String in
            let status = entry["status"]?.intValue
            let failed = status.map { !(200..<300).contains($0) } ?? true
            return "<tr\(failed ? " class=\"bad\"" : "")><td>\(HTML.escape(Self.time(entry["at"]?.intValue)))</td>"
                + "<td>\(status.map { String($0) } ?? "no answer")</td><td>\(entry["changes"]?.intValue ?? 0)</td>"
                + "<td>\(entry["duration_ms"]?.intValue ?? 0)</td><td>\(HTML.escape(entry["error"]?.stringValue ?? ""))</td>"
                + "<td><code>\(HTML.escape(entry["id"]?.stringValue ?? ""))</code></td></tr>"
        }
        let body = "<table>" + facts.map { "<tr><th>\(HTML.escape($0.0))</th><td>\(HTML.escape($0.1))</td></tr>" }.joined() + "</table>"
            + "<h2>Delivery log</h2>" + table(["at", "status", "changes", "ms", "error", "delivery"], log, empty: "No delivery yet.")
            + webhookForm(action: "/admin/buckets/\(bucket)/collections/\(collection)/webhooks", id: id, url: hook["url"]?.stringValue,
                          batchSize: hook["batch_size"]?.intValue.map { String($0) }, legend: "Register again (a new URL or secret)")
            + "<form method=\"post\" action=\"\(HTML.escape(action))/delete\">\(HTML.hidden("csrf", session.csrf))<button class=\"danger\">Delete this webhook</button></form>"
        return page("Webhook \(id)", trail: trail, body)
    }

    func deleteWebhook(_ bucket: String, _ collection: String, _ id: String) async -> APIResponse {
        let answer = await call(.delete, "/buckets/\(bucket)/collections/\(collection)/webhooks/\(id)")
        guard answer.status == 200 else { return apiError(answer, trail: webhookTrail(bucket, collection, id)) }
        return redirect("/admin/buckets/\(bucket)/collections/\(collection)#webhooks")
    }

    // MARK: - Accounts

    /// `/admin/accounts…`: the accounts the user may read (an admin: all; anyone else: their own),
    /// a new account, a new password, deletion. Passwords are only ever typed, never shown.
    func accounts(segments: [String]) async -> APIResponse {
        guard accountsEnabled else { return errorPage(status: 404, title: "Not found", message: "This server has no accounts (its account policy is off).") }
        let ids = Array(segments.dropFirst())
        if let bad = ids.first, !Authenticator.isValidAccountID(bad) {
            return errorPage(status: 400, title: "Bad id", message: Self.notAnAccount(bad, "Nothing was changed."))
        }
        switch (ids.count, request.method) {
        case (0, .get): return await accountsPage(error: nil)
        case (0, .post): return await createAccount()
        case (1, .get): return await accountPage(ids[0], error: nil)
        case (2, .post) where ids[1] == "password": return await changePassword(ids[0])
        case (2, .post) where ids[1] == "delete": return await deleteAccount(ids[0])
        default: return errorPage(status: 404, title: "Not found", message: "No page at /admin\(request.path).")
        }
    }

    func accountsPage(error: String?) async -> APIResponse {
        let trail = [("buckets", "/admin"), ("accounts", "")]
        let list = await call(.get, "/accounts")
        guard list.status == 200 else { return apiError(list, trail: trail) }
        let rows = (list.jsonBody?["data"]?.arrayValue ?? []).compactMap { $0["id"]?.stringValue }.sorted().map { id in
            "<tr><td><a href=\"/admin/accounts/\(HTML.escape(id))\">\(HTML.escape(id))</a></td></tr>"
        }
        let body = (error.map { "<p class=\"error\">\(HTML.escape($0))</p>" } ?? "")
            + table(["account"], rows, empty: "No account you may read.") + """
            <form method="post" action="/admin/accounts"><fieldset><legend>New account</legend>\(HTML.hidden("csrf", session.csrf))
            <p><label>Id <input name="id" required></label></p>
            <p><label>Password <input name="password" type="password" autocomplete="new-password" required></label></p>
            <button>Create account</button></fieldset></form>
            """
        return page("Accounts", trail: trail, status: error == nil ? 200 : 400, body)
    }

    func createAccount() async -> APIResponse {
        let id = (form["id"] ?? "").trimmingCharacters(in: .whitespaces)
        guard Authenticator.isValidAccountID(id) else { return await accountsPage(error: Self.notAnAccount(id, "Nothing was created.")) }
        let answer = await call(.put, "/accounts/\(id)", body: ["data": ["password": .string(form["password"] ?? "")]], headers: ["if-none-match": "*"])
        if answer.status == 412 { return await accountsPage(error: "An account \(id) exists already. Nothing was created.") }
        if answer.status == 400 { return await accountsPage(error: Self.refusal(answer, "Nothing was created.")) }
        guard (200..<300).contains(answer.status) else { return apiError(answer, trail: [("buckets", "/admin"), ("accounts", "/admin/accounts")]) }
        return redirect("/admin/accounts/\(id)")
    }

    func accountPage(_ id: String, error: String?) async -> APIResponse {
        let trail = [("buckets", "/admin"), ("accounts", "/admin/accounts"), (id, "")]
        let answer = await call(.get, "/accounts/\(id)")
        guard answer.status == 200, let data = answer.jsonBody?["data"] else { return apiError(answer, trail: trail) }
        let body = (error.map { "<p class=\"error\">\(HTML.escape($0))</p>" } ?? "") + """
            <p>Principal <code>account:\(HTML.escape(id))</code>, changed at \(HTML.escape(Self.time(data["last_modified"]?.intValue))).</p>
            <form method="post" action="/admin/accounts/\(HTML.escape(id))/password"><fieldset><legend>New password</legend>\(HTML.hidden("csrf", session.csrf))
            <p><label>Password <input name="password" type="password" autocomplete="new-password" required></label></p>
            <button>Change password</button></fieldset></form>
            <form method="post" action="/admin/accounts/\(HTML.escape(id))/delete">\(HTML.hidden("csrf", session.csrf))<button class="danger">Delete this account</button></form>
            """
        return page("Account \(id)", trail: trail, status: error == nil ? 200 : 400, body)
    }

    func changePassword(_ id: String) async -> APIResponse {
        let answer = await call(.patch, "/accounts/\(id)", body: ["data": ["password": .string(form["password"] ?? "")]])
        if answer.status == 400 { return await accountPage(id, error: Self.refusal(answer, "Nothing was changed.")) }
        guard (200..<300).contains(answer.status) else { return apiError(answer, trail: [("buckets", "/admin"), ("accounts", "/admin/accounts"), (id, "")]) }
        // One's own new password ends this session (it signed in with the old one): sign in again.
        return redirect("/admin/accounts/\(id)")
    }

    func deleteAccount(_ id: String) async -> APIResponse {
        let answer = await call(.delete, "/accounts/\(id)")
        guard answer.status == 200 else { return apiError(answer, trail: [("buckets", "/admin"), ("accounts", "/admin/accounts"), (id, "")]) }
        return redirect("/admin/accounts")
    }

    /// Whether the server takes accounts (its `account` policy is on).
    var accountsEnabled: Bool { api.authenticator?.settings.policies.contains(.account) == true }
}
