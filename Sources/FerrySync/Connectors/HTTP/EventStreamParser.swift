/// Decodes a `text/event-stream` body (the Server-Sent Events format) as it arrives.
public struct EventStreamParser: Sendable {
    public struct Event: Sendable, Equatable {
        public var id: String?
        /// The `event:` name; nil for the default (`message`).
        public var name: String?
        public var data: String
    }

    private var line: [UInt8] = []
    private var lastWasCR = false
    private var event = Event(data: "")
    private var hasData = false
    /// Comment lines seen (`: heartbeat`), for liveness.
    public private(set) var comments = 0
    /// Most bytes one line may hold: a peer that never ends a line is not read into memory forever.
    public static let maxLine = 16 << 20

    public init() {}

    public enum Failure: Error, Equatable { case lineTooLong }

    /// The events completed by these bytes.
    public mutating func feed(_ bytes: some Sequence<UInt8>) throws(Failure) -> [Event] {
        var done: [Event] = []
        for byte in bytes {
            if byte == UInt8(ascii: "\n") && lastWasCR {
                lastWasCR = false
                continue
            }
            lastWasCR = byte == UInt8(ascii: "\r")
            if byte == UInt8(ascii: "\n") || byte == UInt8(ascii: "\r") {
                if let finished = endLine() { done.append(finished) }
            } else {
                line.append(byte)
                if line.count > Self.maxLine { throw .lineTooLong }
            }
        }
        return done
    }

    private mutating func endLine() -> Event? {
        defer { line.removeAll(keepingCapacity: true) }
        if line.isEmpty {
            guard hasData else {
                event = Event(data: "")
                return nil
            }
            defer {
                event = Event(data: "")
                hasData = false
            }
            return event
        }
        if line.first == UInt8(ascii: ":") {
            comments += 1
            return nil
        }
        let colon = line.firstIndex(of: UInt8(ascii: ":")) ?? line.endIndex
        let field = String(decoding: line[..<colon], as: UTF8.self)
        var valueStart = colon == line.endIndex ? colon : colon + 1
        if valueStart < line.endIndex, line[valueStart] == UInt8(ascii: " ") { valueStart += 1 }
        let value = String(decoding: line[valueStart...], as: UTF8.self)
        switch field {
        case "id": event.id = value
        case "event": event.name = value
        case "data":
            if hasData { event.data += "\n" }
            event.data += value
            hasData = true
        default: break  // retry: and unknown fields
        }
        return nil
    }
}
