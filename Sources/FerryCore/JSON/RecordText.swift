/// A stored object's canonical text (``JSON/serialized()``) without its `id` and `last_modified`,
/// cut where those two go: a record's members are serialized before the write transaction and
/// only its id and timestamp are written into the text inside it (the timestamp is allocated
/// there). `text(id:lastModified:)` is exactly `JSON.object(members + id + last_modified).serialized()`.
public struct RecordText: Sendable {
    /// Members that sort before `id`, between `id` and `last_modified`, and after it, each part
    /// `"key":value` pairs joined by commas (empty when there are none).
    private var parts: ([UInt8], [UInt8], [UInt8]) = ([], [], [])
    /// The members but `last_modified`: what the stored content hash is made of (``RecordHash``,
    /// which sets `id` itself).
    public let hashedFields: [String: JSON]
    /// The content hash already made for the record of this id (``init(_:hashedAs:)``).
    public let hash: (id: String, bytes: [UInt8])?

    /// The text of `members`; an `id` or `last_modified` among them is left out (the stored
    /// object's own are written in by ``text(id:lastModified:)``).
    /// - Parameter id: the record's id, to make its content hash here too (before the write
    ///   transaction, where it costs the single writer nothing); nil to leave it to the storage.
    public init(_ members: [String: JSON], hashedAs id: String? = nil) {
        var hashed = members
        hashed.removeValue(forKey: "last_modified")
        hashedFields = hashed
        var hasNull = false
        for (key, value) in JSON.sortedMembers(members) where key != "id" && key != "last_modified" {
            if value == .null { hasNull = true }
            if JSON.keyPrecedes(key, "id") {
                Self.append(key, value, to: &parts.0)
            } else if JSON.keyPrecedes(key, "last_modified") {
                Self.append(key, value, to: &parts.1)
            } else {
                Self.append(key, value, to: &parts.2)
            }
        }
        guard let id else {
            hash = nil
            return
        }
        // The hash's canonical JSON is the stored text without `last_modified` (and without
        // `null` members, which only the slower way drops): hashed from the parts just written.
        let (before, between, after) = parts
        hash = (id, hasNull ? RecordHash(fields: hashed, keyField: "id", keyText: id).bytes : RecordHash(canonical: { update in
            // One buffer, one update of the digest.
            var text: [UInt8] = []
            text.reserveCapacity(before.count + between.count + after.count + id.utf8.count + 16)
            text.append(UInt8(ascii: "{"))
            if !before.isEmpty {
                text.append(contentsOf: before)
                text.append(UInt8(ascii: ","))
            }
            text.append(contentsOf: #""id":"#.utf8)
            JSON.writeString(id, to: &text)
            for part in [between, after] where !part.isEmpty {
                text.append(UInt8(ascii: ","))
                text.append(contentsOf: part)
            }
            text.append(UInt8(ascii: "}"))
            update(text)
        }).bytes)
    }

    private static func append(_ key: String, _ value: JSON, to part: inout [UInt8]) {
        if !part.isEmpty { part.append(UInt8(ascii: ",")) }
        JSON.writeString(key, to: &part)
        part.append(UInt8(ascii: ":"))
        value.write(to: &part)
    }

    /// The canonical text of the members with `id` and `last_modified`.
    public func text(id: String, lastModified: Int64) -> String {
        var out: [UInt8] = []
        out.reserveCapacity(parts.0.count + parts.1.count + parts.2.count + id.utf8.count + 48)
        out.append(UInt8(ascii: "{"))
        if !parts.0.isEmpty {
            out.append(contentsOf: parts.0)
            out.append(UInt8(ascii: ","))
        }
        out.append(contentsOf: #""id":"#.utf8)
        JSON.writeString(id, to: &out)
        if !parts.1.isEmpty {
            out.append(UInt8(ascii: ","))
            out.append(contentsOf: parts.1)
        }
        out.append(contentsOf: #","last_modified":"#.utf8)
        out.append(contentsOf: String(lastModified).utf8)
        if !parts.2.isEmpty {
            out.append(UInt8(ascii: ","))
            out.append(contentsOf: parts.2)
        }
        out.append(UInt8(ascii: "}"))
        return String(decoding: out, as: UTF8.self)
    }
}
