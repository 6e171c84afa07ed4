import Foundation

/// The reverse proxies whose word on the client's scheme is taken: a request that comes from
/// one of them and carries `X-Forwarded-Proto` (or `Forwarded: proto=`) was made with that
/// scheme; from anyone else, those headers are ignored (a client cannot make the server write
/// links of its choosing), and the scheme is the one the server itself serves.
public struct TrustedProxies: Sendable {
    let ranges: [CIDR]

    /// - Parameter entries: addresses (`127.0.0.1`, `::1`) or CIDR ranges (`10.0.0.0/8`);
    ///   entries that are neither are left out (the configuration refuses them first).
    public init(_ entries: [String]) {
        ranges = entries.compactMap(Self.range)
    }

    /// An address as the range of itself, or a CIDR range.
    static func range(_ entry: String) -> CIDR? {
        if let range = CIDR(entry) { return range }
        guard let address = IPAddress(entry) else { return nil }
        return CIDR(base: address, bits: address.bytes.count * 8)
    }

    /// The scheme of a request from `remoteAddress` that the server received as `scheme`.
    /// - Parameter header: the request's header by lower-case name.
    func scheme(served scheme: String, remoteAddress: String?, header: (String) -> String?) -> String {
        guard !ranges.isEmpty, let remoteAddress, let address = IPAddress(remoteAddress),
              ranges.contains(where: { $0.contains(address) }) else { return scheme }
        if let forwarded = header("x-forwarded-proto"), let first = forwarded.split(separator: ",").first {
            return Self.known(first) ?? scheme
        }
        if let forwarded = header("forwarded"), let first = forwarded.split(separator: ",").first {
            for pair in first.split(separator: ";") {
                let parts = pair.split(separator: "=", maxSplits: 1)
                if parts.count == 2, parts[0].trimmingCharacters(in: .whitespaces).lowercased() == "proto" {
                    return Self.known(parts[1]) ?? scheme
                }
            }
        }
        return scheme
    }

    /// `http` or `https` (quotes and case aside), nil for anything else.
    static func known(_ value: Substring) -> String? {
        let text = value.trimmingCharacters(in: .whitespaces).trimmingCharacters(in: ["\""]).lowercased()
        return text == "http" || text == "https" ? text : nil
    }
}
