import FerryCore
import FerrySync
import Foundation

/// `GET /` of `ferry run --status-port`: each job's figures, its last runs as inline-SVG charts
/// (records moved per run, lag), and its sync-health model as a state diagram and figures.
/// No script and nothing loaded from elsewhere; the page reloads itself every 5 seconds.
enum StatusPage {
    static let contentSecurityPolicy = "default-src 'none'; style-src 'unsafe-inline'; img-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"

    static func render(_ entries: [JobStatus.Entry], modelInterval: Double, now: Date = Date()) -> String {
        let jobs = entries.map { job($0, modelInterval: modelInterval, now: now) }.joined()
        return """
            <!doctype html>
            <html lang="en"><head><meta charset="utf-8"><meta http-equiv="refresh" content="5">
            <title>ferry run · jobs</title>
            <style>
            body { font: 15px/1.45 system-ui, sans-serif; margin: 1em auto; max-width: 70em; padding: 0 1em; color: #1d2430; }
            table { border-collapse: collapse; margin: .5em 0; } th, td { padding: .2em .7em; border-bottom: 1px solid #e2e5ea; text-align: left; }
            section { border: 1px solid #d5d9e0; padding: 0 1em 1em; margin: 1em 0; } .charts { display: flex; gap: 1em; flex-wrap: wrap; }
            .bad { color: #a11; } svg text { font: 11px system-ui, sans-serif; }
            </style></head>
            <body><h1>ferry run: jobs</h1><p>As of \(StateStoreTime.format(now)); this page reloads every 5 s. JSON: <a href="/status">/status</a>, Prometheus: <a href="/metrics">/metrics</a>.</p>
            \(jobs)
            </body></html>
            """
    }

    static func job(_ entry: JobStatus.Entry, modelInterval: Double, now: Date) -> String {
        let e = HTML.escape
        let lag = JobStatus.lag(entry, now: now).map { String(format: "%.1f s", $0) } ?? "–"
        var rows = [("schedule", entry.schedule), ("state", entry.state), ("runs", String(entry.runs)), ("failures", String(entry.failures)),
                    ("retries", String(entry.totals["retries"] ?? 0)), ("records written", String(entry.totals["written"] ?? 0)),
                    ("records rejected", String(entry.totals["rejected"] ?? 0)), ("lag", lag)]
        if let next = entry.nextRun { rows.append(("next run", StateStoreTime.format(next))) }
        if let outcome = entry.lastOutcome { rows.append(("last outcome", outcome)) }
        var out = "<section><h2>\(e(entry.name))</h2><table>"
            + rows.map { "<tr><th>\(e($0.0))</th><td>\(e($0.1))</td></tr>" }.joined() + "</table>"
        if let error = entry.lastError { out += "<p class=\"bad\">Last error: \(e(error))</p>" }
        out += "<div class=\"charts\">"
            + chart(title: "records per run", values: entry.history.map { Double($0.records) }, bars: true)
            + chart(title: "lag after each run (s)", values: entry.history.map { $0.lag ?? 0 }, bars: false)
            + SVGChart.render(title: "records per interval of \(SyncHealthModel.seconds(modelInterval))", values: entry.recordsOverTime, bars: true,
                              empty: "no interval yet")
            + SVGChart.render(title: "lag over time (s), every \(SyncHealthModel.seconds(modelInterval))", values: entry.lagOverTime, bars: false,
                              empty: "no interval yet")
            + "</div>"
        if !entry.history.isEmpty {
            out += "<h3>Last runs</h3><table><tr><th>ended</th><th>records</th><th>outcome</th></tr>"
                + entry.history.suffix(10).reversed().map {
                    "<tr><td>\(e(StateStoreTime.format($0.ended)))</td><td>\($0.records)</td><td\($0.succeeded ? "" : " class=\"bad\"")>\($0.succeeded ? "ok" : "failed")</td></tr>"
                }.joined() + "</table>"
        }
        out += problems(entry)
        out += health(entry.model, modelInterval: modelInterval)
        return out + "</section>"
    }

    /// The newest dead letters (records a target refused) and, for a two-way job, its unsettled
    /// conflicts, as of the job's last run.
    static func problems(_ entry: JobStatus.Entry) -> String {
        let e = HTML.escape
        var out = ""
        if !entry.deadLetters.isEmpty {
            out += "<h3>Dead letters</h3><p>The newest \(entry.deadLetters.count) of <code>\(e(entry.deadLetterPath ?? ""))</code>:</p>"
                + "<table><tr><th>at</th><th>key</th><th>reason</th></tr>"
                + entry.deadLetters.map { letter in
                    "<tr><td>\(e(letter["at"]?.stringValue ?? ""))</td><td>\(e(letter["key"]?.stringValue ?? "–"))</td>"
                        + "<td class=\"bad\">\(e(letter["reason"]?.stringValue ?? ""))</td></tr>"
                }.joined() + "</table>"
        }
        if entry.twoWay {
            out += "<h3>Conflicts</h3>"
            if entry.conflicts.isEmpty {
                out += "<p>No unsettled conflict.</p>"
            } else {
                out += "<p>Unsettled, newest first (decide with <code>ferry conflicts resolve</code>):</p>"
                    + "<table><tr><th>id</th><th>key</th><th>status</th><th>found</th><th>side a</th><th>side b</th></tr>"
                    + entry.conflicts.map { c in
                        let side = { (json: JSON?) in json.map { String($0.serialized().prefix(120)) } ?? "deleted" }
                        return "<tr><td>\(c.id)</td><td>\(e(c.key))</td><td>\(e(c.status))</td><td>\(e(c.detectedAt))</td>"
                            + "<td><code>\(e(side(c.a)))</code></td><td><code>\(e(side(c.b)))</code></td></tr>"
                    }.joined() + "</table>"
            }
        }
        return out
    }

    static func health(_ model: Result<SyncHealthModel, SyncHealthModel.NotEnoughData>?, modelInterval: Double) -> String {
        switch model {
        case nil:
            return "<h3>Sync health</h3><p>No interval recorded yet (one every \(SyncHealthModel.seconds(modelInterval))).</p>"
        case .failure(let notEnough):
            return "<h3>Sync health</h3><p>\(HTML.escape(notEnough.description)).</p>"
        case .success(let model):
            let lines = model.lines(intervalSeconds: modelInterval, ahead: JobStatus.modelAhead)
            return "<h3>Sync health</h3><div class=\"charts\">" + diagram(model)
                + "<pre>\(HTML.escape(lines.joined(separator: "\n")))</pre></div>"
        }
    }

    /// A chart of the last runs: bars or a line, scaled to the largest value.
    static func chart(title: String, values: [Double], bars: Bool) -> String {
        SVGChart.render(title: title, values: values, bars: bars, empty: "no run yet")
    }

    /// The chain as a state diagram: four states at the corners, an arrow for each transition
    /// seen (its probability beside it), each state's chance of staying inside its circle.
    static func diagram(_ model: SyncHealthModel) -> String {
        let states = SyncHealthModel.states
        let places: [(Double, Double)] = [(80, 60), (300, 60), (300, 220), (80, 220)]
        var out = "<svg role=\"img\" aria-label=\"state diagram\" width=\"380\" height=\"280\" viewBox=\"0 0 380 280\">"
            + "<defs><marker id=\"arrow\" viewBox=\"0 0 10 10\" refX=\"10\" refY=\"5\" markerWidth=\"6\" markerHeight=\"6\" orient=\"auto\"><path d=\"M0,0 L10,5 L0,10 z\" fill=\"#555\"/></marker></defs>"
        for i in states.indices {
            for j in states.indices where i != j && model.counts[i][j] > 0 {
                let (x1, y1) = places[i], (x2, y2) = places[j]
                let (dx, dy) = (x2 - x1, y2 - y1)
                let length = (dx * dx + dy * dy).squareRoot()
                // Start and end on the circles; bend to the right so that i→j and j→i do not overlap.
                let (sx, sy) = (x1 + dx / length * 34, y1 + dy / length * 34)
                let (ex, ey) = (x2 - dx / length * 34, y2 - dy / length * 34)
                let (cx, cy) = ((x1 + x2) / 2 - dy / length * 24, (y1 + y2) / 2 + dx / length * 24)
                out += String(format: "<path d=\"M%.0f,%.0f Q%.0f,%.0f %.0f,%.0f\" fill=\"none\" stroke=\"#555\" marker-end=\"url(#arrow)\"/>", sx, sy, cx, cy, ex, ey)
                out += String(format: "<text x=\"%.0f\" y=\"%.0f\" text-anchor=\"middle\">%.2f</text>", cx, cy, model.probabilities[i][j])
            }
        }
        for (i, state) in states.enumerated() {
            let (x, y) = places[i]
            let colour = ["#d8f0dd", "#fff1c9", "#f8d7d7", "#e4e6ea"][i]
            let stay = model.observed.contains(state) ? String(format: "stay %.2f", model.probabilities[i][i]) : "never left"
            out += "<circle cx=\"\(Int(x))\" cy=\"\(Int(y))\" r=\"33\" fill=\"\(colour)\" stroke=\"#555\"/>"
                + "<text x=\"\(Int(x))\" y=\"\(Int(y) - 3)\" text-anchor=\"middle\">\(state.rawValue.replacingOccurrences(of: "_", with: " "))</text>"
                + "<text x=\"\(Int(x))\" y=\"\(Int(y) + 12)\" text-anchor=\"middle\">\(stay)</text>"
        }
        return out + "</svg>"
    }
}
