import FerryCore

/// The parts of `/admin`'s pages: values as JSON, hidden fields, the page around a body.
extension HTML {
    /// A value as indented JSON (keys sorted), for reading and editing in a text area.
    static func pretty(_ json: JSON, indent: String = "") -> String {
        let inner = indent + "  "
        switch json {
        case .object(let members) where !members.isEmpty:
            let lines = members.keys.sorted().map { inner + JSON.string($0).serialized() + ": " + pretty(members[$0]!, indent: inner) }
            return "{\n" + lines.joined(separator: ",\n") + "\n" + indent + "}"
        case .array(let items) where !items.isEmpty:
            return "[\n" + items.map { inner + pretty($0, indent: inner) }.joined(separator: ",\n") + "\n" + indent + "]"
        default:
            return json.serialized()
        }
    }

    /// A hidden form field.
    static func hidden(_ name: String, _ value: String) -> String {
        "<input type=\"hidden\" name=\"\(escape(name))\" value=\"\(escape(value))\">"
    }

    /// A whole page: the header with the signed-in user and the sign-out form, the breadcrumb, the body.
    /// - Parameters:
    ///   - trail: the breadcrumb, each (label, link); the last is the current page.
    ///   - body: HTML already escaped.
    static func page(title: String, user: String?, principal: String? = nil, csrf: String?, accounts: Bool = false, trail: [(String, String)] = [], scripts: [String] = [], body: String) -> String {
        var header = "<header><a class=\"brand\" href=\"/admin\">Ferry</a>"
        if let user, let csrf {
            header += "<span class=\"who\" title=\"\(escape(principal ?? user))\">\(escape(user))</span><a href=\"/admin/server\">server</a>"
                + (accounts ? "<a href=\"/admin/accounts\">accounts</a>" : "")
                + "<form method=\"post\" action=\"/admin/signout\" class=\"inline\">\(hidden("csrf", csrf))<button>Sign out</button></form>"
        }
        header += "</header>"
        let crumbs = trail.isEmpty ? "" : "<nav class=\"trail\">" + trail.enumerated().map { i, step in
            i == trail.count - 1 ? "<span>\(escape(step.0))</span>" : "<a href=\"\(escape(step.1))\">\(escape(step.0))</a>"
        }.joined(separator: " / ") + "</nav>"
        let scriptTags = scripts.map { "<script defer src=\"\(escape($0))\"></script>" }.joined()
        return """
            <!doctype html>
            <html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
            <title>\(escape(title)) · Ferry</title><link rel="stylesheet" href="/admin/static/admin.css">\(scriptTags)</head>
            <body>\(header)<main>\(crumbs)<h1>\(escape(title))</h1>
            \(body)
            </main></body></html>
            """
    }

    /// The style sheet (served from `/admin/static/admin.css`: the CSP allows no inline style).
    static let styleSheet = """
        * { box-sizing: border-box; }
        body { font: 15px/1.45 system-ui, sans-serif; margin: 0; color: #1d2430; background: #f6f7f9; }
        header { display: flex; gap: 1em; align-items: center; padding: .6em 1.2em; background: #1d2430; color: #fff; }
        header a { color: #cfe3ff; } header .brand { font-weight: 700; color: #fff; text-decoration: none; margin-right: auto; }
        main { max-width: 72em; margin: 0 auto; padding: 1em 1.2em 3em; }
        .trail { color: #667; margin-bottom: .3em; }
        table { border-collapse: collapse; width: 100%; background: #fff; }
        th, td { text-align: left; padding: .35em .6em; border-bottom: 1px solid #e2e5ea; vertical-align: top; }
        td code { white-space: pre-wrap; word-break: break-all; }
        textarea { width: 100%; min-height: 16em; font: 13px/1.4 ui-monospace, monospace; }
        form.inline { display: inline; margin: 0; }
        fieldset { border: 1px solid #d5d9e0; background: #fff; margin: 1em 0; }
        .error { background: #fde8e8; border: 1px solid #e5a0a0; padding: .6em .9em; }
        .conflict { background: #fff4d6; border: 1px solid #e0c060; padding: .6em .9em; }
        .ok { background: #e6f6ea; border: 1px solid #94cfa2; padding: .6em .9em; }
        pre { background: #fff; border: 1px solid #e2e5ea; padding: .6em; overflow: auto; }
        button { cursor: pointer; } button.danger { color: #a11; }
        textarea.short { min-height: 6em; }
        .charts { display: flex; gap: 1em; flex-wrap: wrap; margin: 1em 0; } .charts svg { background: #fff; border: 1px solid #e2e5ea; }
        svg text { font: 11px system-ui, sans-serif; } table.figures { width: auto; }
        tr.bad td { color: #a11; }
        #live li { font-family: ui-monospace, monospace; }
        """
}
