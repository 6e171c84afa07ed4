import Foundation

/// Where webhooks may point: not an open relay into the server's own network.
///
/// By default a webhook URL must be `http(s)` and its host must resolve only to public
/// addresses: loopback, private (RFC 1918, unique-local), link-local (cloud metadata
/// services live there), carrier-grade NAT, multicast and unspecified addresses are refused.
/// `webhook_allow_hosts` lists exceptions: host names, addresses, CIDR ranges, or `*`.
/// The check runs when a webhook is registered and again before every delivery (DNS answers
/// change); the HTTP client resolves the name once more when it connects, so a DNS server that
/// answers differently within that instant is not stopped (documented).
public struct WebhookAddressPolicy: Sendable {
    /// Host names, addresses or CIDR ranges allowed even when private; `*` allows everything.
    public var allowHosts: [String]
    /// Resolves a host name to its addresses (the system's resolver, `getaddrinfo`, unless told
    /// otherwise: a test counts the look-ups through it to show a refused caller caused none).
    let lookUp: @Sendable (String) -> [IPAddress]

    public init(allowHosts: [String] = []) {
        self.init(allowHosts: allowHosts, lookUp: Self.systemLookUp)
    }

    init(allowHosts: [String], lookUp: @escaping @Sendable (String) -> [IPAddress]) {
        self.allowHosts = allowHosts
        self.lookUp = lookUp
    }

    /// Checks a configuration entry; nil when valid, else why not.
    public static func problem(withEntry entry: String) -> String? {
        if entry == "*" { return nil }
        if entry.contains("/") {
            return CIDR(entry) == nil ? "\"\(entry)\" is not a CIDR range (like 10.0.0.0/8 or fd00::/8)" : nil
        }
        if IPAddress(entry) != nil { return nil }
        let valid = !entry.isEmpty && entry.count <= 253 && entry.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-" || $0 == ".") }
        return valid ? nil : "\"\(entry)\" is not a host name, an address or a CIDR range"
    }

    /// The URL's scheme, host and port checked; returns the host.
    public static func parse(_ url: String) -> (host: String, problem: String?) {
        guard url.utf8.count <= 2048, let components = URLComponents(string: url), let scheme = components.scheme?.lowercased(),
              let host = components.host, !host.isEmpty else {
            return ("", "url must be an absolute http:// or https:// URL")
        }
        guard scheme == "http" || scheme == "https" else { return (host, "url must be http:// or https://, not \(scheme)://") }
        if components.user != nil || components.password != nil { return (host, "url must not hold credentials (use the secret to authenticate deliveries)") }
        let bare = host.hasPrefix("[") && host.hasSuffix("]") ? String(host.dropFirst().dropLast()) : host
        return (bare, nil)
    }

    /// Why a delivery to `url` is not allowed now, or nil when it is. Resolves the host name.
    public func refusal(for url: String) -> String? {
        let (host, problem) = Self.parse(url)
        if let problem { return problem }
        if allowHosts.contains("*") || allowHosts.contains(where: { $0.caseInsensitiveCompare(host) == .orderedSame }) { return nil }
        let addresses = IPAddress(host).map { [$0] } ?? lookUp(host)
        guard !addresses.isEmpty else { return "the host \(host) does not resolve" }
        for address in addresses where address.isInternal {
            let allowed = allowHosts.contains { entry in
                if let range = CIDR(entry) { return range.contains(address) }
                return IPAddress(entry) == address
            }
            if !allowed {
                return "\(host) resolves to the internal address \(address), which webhooks may not reach (allow it with webhook_allow_hosts)"
            }
        }
        return nil
    }

    /// Every address a host name resolves to, from the system's resolver.
    static func systemLookUp(_ host: String) -> [IPAddress] {
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var list: UnsafeMutablePointer<addrinfo>?
        guard getaddrinfo(host, nil, &hints, &list) == 0, let first = list else { return [] }
        defer { freeaddrinfo(list) }
        var result: [IPAddress] = []
        var node: UnsafeMutablePointer<addrinfo>? = first
        while let current = node {
            if let sockaddr = current.pointee.ai_addr {
                if current.pointee.ai_family == AF_INET {
                    let bytes = sockaddr.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { pointer in
                        withUnsafeBytes(of: pointer.pointee.sin_addr) { Array($0) }
                    }
                    result.append(IPAddress(bytes: bytes))
                } else if current.pointee.ai_family == AF_INET6 {
                    let bytes = sockaddr.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { pointer in
                        withUnsafeBytes(of: pointer.pointee.sin6_addr) { Array($0) }
                    }
                    result.append(IPAddress(bytes: bytes))
                }
            }
            node = current.pointee.ai_next
        }
        return result
    }
}

/// An IPv4 (4 bytes) or IPv6 (16 bytes) address.
struct IPAddress: Equatable, CustomStringConvertible {
    let bytes: [UInt8]

    init(bytes: [UInt8]) {
        self.bytes = bytes
    }

    init?(_ text: String) {
        var v4 = in_addr()
        var v6 = in6_addr()
        if inet_pton(AF_INET, text, &v4) == 1 {
            bytes = withUnsafeBytes(of: v4) { Array($0) }
        } else if inet_pton(AF_INET6, text, &v6) == 1 {
            bytes = withUnsafeBytes(of: v6) { Array($0) }
        } else {
            return nil
        }
    }

    /// The IPv4 address inside an IPv4-mapped IPv6 address (`::ffff:a.b.c.d`).
    var unmapped: IPAddress {
        if bytes.count == 16, bytes[0..<10].allSatisfy({ $0 == 0 }), bytes[10] == 0xff, bytes[11] == 0xff {
            return IPAddress(bytes: Array(bytes[12...]))
        }
        return self
    }

    /// Loopback, private, link-local, shared (CGNAT), multicast, broadcast or unspecified.
    var isInternal: Bool {
        let a = unmapped.bytes
        if a.count == 4 {
            switch (a[0], a[1]) {
            case (0, _), (10, _), (127, _), (169, 254), (192, 168): return true
            case (172, 16...31), (100, 64...127), (192, 0): return true
            case (224...255, _): return true
            default: return false
            }
        }
        if a.allSatisfy({ $0 == 0 }) || a == [UInt8](repeating: 0, count: 15) + [1] { return true }  // :: and ::1
        if a[0] & 0xfe == 0xfc { return true }  // fc00::/7 unique local
        if a[0] == 0xfe && a[1] & 0xc0 == 0x80 { return true }  // fe80::/10 link-local
        if a[0] == 0xff { return true }  // multicast
        return false
    }

    var description: String {
        var buffer = [CChar](repeating: 0, count: 64)
        var copy = bytes
        let family = bytes.count == 4 ? AF_INET : AF_INET6
        guard inet_ntop(family, &copy, &buffer, socklen_t(buffer.count)) != nil else { return "?" }
        return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}

/// An address range `ADDRESS/BITS`.
struct CIDR {
    let base: IPAddress
    let bits: Int

    init(base: IPAddress, bits: Int) {
        self.base = base
        self.bits = bits
    }

    init?(_ text: String) {
        let parts = text.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 2, let base = IPAddress(String(parts[0])), let bits = Int(parts[1]), bits >= 0, bits <= base.bytes.count * 8 else { return nil }
        self.base = base
        self.bits = bits
    }

    func contains(_ address: IPAddress) -> Bool {
        let candidate = address.bytes.count == base.bytes.count ? address : address.unmapped
        guard candidate.bytes.count == base.bytes.count else { return false }
        var left = bits
        for (x, y) in zip(candidate.bytes, base.bytes) where left > 0 {
            let mask: UInt8 = left >= 8 ? 0xff : ~(0xff >> UInt8(left))
            if x & mask != y & mask { return false }
            left -= 8
        }
        return true
    }
}
