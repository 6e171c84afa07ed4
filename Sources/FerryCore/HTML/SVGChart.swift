import Foundation

/// A small chart as inline SVG (no script, nothing loaded): bars or a line over a series, scaled
/// to its largest value. Used by `/admin/server` and by `ferry run --status-port`'s page.
package enum SVGChart {
    /// - Parameters:
    ///   - title: shown above the chart with the largest value, and its accessible name.
    ///   - empty: what the chart says when there is no value yet.
    package static func render(title: String, values: [Double], bars: Bool, empty: String = "no data yet") -> String {
        let width = 360.0, height = 120.0, top = 16.0
        guard !values.isEmpty else {
            return "<svg role=\"img\" aria-label=\"\(HTML.escape(title))\" width=\"360\" height=\"40\"><text x=\"0\" y=\"14\">\(HTML.escape(title)): \(HTML.escape(empty))</text></svg>"
        }
        let most = max(values.max()!, 1)
        let step = width / Double(max(values.count, 2) - (bars ? 0 : 1))
        func y(_ v: Double) -> Double { top + (height - top) * (1 - max(v, 0) / most) }
        var shapes = ""
        if bars {
            for (i, v) in values.enumerated() {
                shapes += String(format: "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"#3b73b9\"/>",
                                 Double(i) * step, y(v), max(step - 1, 1), height - y(v))
            }
        } else {
            let points = values.enumerated().map { String(format: "%.1f,%.1f", Double($0.offset) * step, y($0.element)) }.joined(separator: " ")
            shapes = "<polyline points=\"\(points)\" fill=\"none\" stroke=\"#b9563b\" stroke-width=\"2\"/>"
        }
        return """
            <svg role="img" aria-label="\(HTML.escape(title))" width="\(Int(width))" height="\(Int(height))" viewBox="0 0 \(Int(width)) \(Int(height))">\
            <text x="0" y="11">\(HTML.escape(title)) (max \(HTML.escape(String(format: "%g", (most * 100).rounded() / 100))))</text>\
            <line x1="0" y1="\(height)" x2="\(width)" y2="\(height)" stroke="#999"/>\(shapes)</svg>
            """
    }
}
