import FerryCore
import NIOCore

/// The answers of ``Ceiling``: what a Kinto server with no storage at all would send.
///
/// Records look like the ones `bench/seed.py` writes (username, age, address) and
/// are about as long, so the bytes on the wire match what Ferry and Kinto send for
/// the same benchmark lines. Everything that does not depend on the request is
/// built once, at start-up.
struct CeilingBodies: Sendable {
    /// The `last_modified` of every record the reads return.
    let timestamp: Int64
    /// `"<timestamp>"`, the `ETag` of the reads.
    let etag: String
    /// The HTTP date of `timestamp`, the `Last-Modified` of the reads.
    let lastModified: String
    /// `{"data":[…100 records…]}`: the page the list line reads.
    let page: ByteBuffer

    init(timestamp: Int64 = Timestamp.now(), pageSize: Int = 100) {
        self.timestamp = timestamp
        self.etag = "\"\(timestamp)\""
        self.lastModified = Timestamp.httpDate(timestamp)
        var out: [UInt8] = Array(#"{"data":["#.utf8)
        for i in 0..<pageSize {
            if i > 0 { out.append(UInt8(ascii: ",")) }
            Self.writeRecord(number: i, id: Self.id(i), timestamp: timestamp, to: &out)
        }
        out.append(contentsOf: "]}".utf8)
        self.page = ByteBuffer(bytes: out)
    }

    /// `{"data":{…record…},"permissions":{}}` for the record `id`, as GET answers it.
    func record(id: String) -> ByteBuffer {
        var out: [UInt8] = []
        out.reserveCapacity(192)
        out.append(contentsOf: #"{"data":"#.utf8)
        Self.writeRecord(number: Self.number(of: id), id: id, timestamp: timestamp, to: &out)
        out.append(contentsOf: #","permissions":{}}"#.utf8)
        return ByteBuffer(bytes: out)
    }

    /// Seeded ids are `u00000`, `u00001`, …
    static func id(_ number: Int) -> String {
        let digits = String(number)
        return "u" + String(repeating: "0", count: max(0, 5 - digits.count)) + digits
    }

    /// The number in a seeded id (`u00042` → 42), 0 for any other id.
    static func number(of id: String) -> Int {
        Int(id.dropFirst()) ?? 0
    }

    /// One record, keys in canonical order, as Ferry stores them.
    static func writeRecord(number: Int, id: String, timestamp: Int64, to out: inout [UInt8]) {
        out.append(contentsOf: #"{"address":{"city":"Springfield","street":"#.utf8)
        JSON.writeString("\(number) Main Street", to: &out)
        out.append(contentsOf: #"},"age":"#.utf8)
        out.append(contentsOf: String(18 + number % 70).utf8)
        out.append(contentsOf: #","id":"#.utf8)
        JSON.writeString(id, to: &out)
        out.append(contentsOf: #","last_modified":"#.utf8)
        out.append(contentsOf: String(timestamp).utf8)
        out.append(contentsOf: #","username":"#.utf8)
        JSON.writeString("user" + id.dropFirst(), to: &out)
        out.append(UInt8(ascii: "}"))
    }
}
