import Foundation
import Glibc

/// A TCP proxy on loopback that injects network faults between a client and a server: the
/// engine and a `ferry serve`, or a server and PostgreSQL. Plain sockets and one thread per
/// direction, so it shares nothing with what it tests (no event loop, no cooperative pool).
///
/// Each accepted connection gets the fault ``plan`` returns for its number (0, 1, 2…), or the
/// ``override`` while one is set; ``cutAll(reset:)`` breaks the connections already open (a
/// pooled connection never reconnects on its own).
public final class FaultProxy: @unchecked Sendable {
    /// What happens to one connection.
    public enum Fault: Sendable, Equatable {
        /// Bytes pass as they come.
        case none
        /// Accepted, then closed before a byte passes (a dropped connection).
        case drop
        /// Every chunk, each way, waits this long first.
        case delay(milliseconds: Int)
        /// After this many bytes of the answer, both sides get a TCP reset (RST): an answer cut
        /// in the middle of its body.
        case resetAnswerAfter(bytes: Int)
        /// After this many bytes of the answer, both sides are closed cleanly (FIN): a truncated answer.
        case truncateAnswerAfter(bytes: Int)
        /// After this many bytes of the request, both sides get a reset: a request body cut short.
        case resetRequestAfter(bytes: Int)
    }

    public let port: Int
    private let upstreamPort: Int
    private let listener: Int32
    private let plan: @Sendable (Int) -> Fault
    private let lock = NSLock()
    private var open: [Link] = []
    private var accepted = 0
    private var injected = 0
    private var forwarded = (requests: 0, answers: 0)
    private var overriding: Fault?
    private var stopped = false

    /// Listens on a free loopback port and forwards to `127.0.0.1:upstreamPort`.
    public init(upstreamPort: Int, plan: @escaping @Sendable (Int) -> Fault = { _ in .none }) throws {
        self.upstreamPort = upstreamPort
        self.plan = plan
        let listener = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard listener >= 0 else { throw ProxyError("socket: errno \(errno)") }
        var yes: Int32 = 1
        setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &yes, socklen_t(MemoryLayout<Int32>.size))
        var address = Self.loopback(port: 0)
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(listener, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard bound == 0, listen(listener, 128) == 0 else { close(listener); throw ProxyError("bind/listen: errno \(errno)") }
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        getsockname(listener, withUnsafeMutablePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { $0 } }, &length)
        port = Int(UInt16(bigEndian: address.sin_port))
        self.listener = listener
        Thread.detachNewThread { [self] in acceptLoop() }
    }

    deinit { stop() }

    /// Connections accepted so far.
    public var connections: Int { lock.withLock { accepted } }
    /// Connections that got a fault other than ``Fault/none`` (a test shows its faults happened).
    public var faultsInjected: Int { lock.withLock { injected } }

    /// Bytes passed so far each way: what clients sent (requests) and what the server answered,
    /// headers included (a test counts what an exchange moved).
    public var bytesForwarded: (requests: Int, answers: Int) { lock.withLock { forwarded } }

    /// The fault of every new connection while set (nil: back to the plan).
    public var override: Fault? {
        get { lock.withLock { overriding } }
        set { lock.withLock { overriding = newValue } }
    }

    /// Breaks every open connection: with a reset, or a clean close.
    public func cutAll(reset: Bool = true) {
        for link in lock.withLock({ open }) { link.cut(reset: reset) }
    }

    /// Stops listening and breaks every connection.
    public func stop() {
        let links = lock.withLock { () -> [Link]? in
            if stopped { return nil }
            stopped = true
            return open
        }
        guard let links else { return }
        shutdown(listener, Int32(SHUT_RDWR))
        close(listener)
        for link in links { link.cut(reset: true) }
    }

    private func acceptLoop() {
        while true {
            let client = accept(listener, nil, nil)
            if client < 0 {
                if errno == EINTR { continue }
                return
            }
            let fault = lock.withLock { () -> Fault in
                defer { accepted += 1 }
                let fault = overriding ?? plan(accepted)
                if fault != .none { injected += 1 }
                return fault
            }
            if fault == .drop {
                shutdown(client, Int32(SHUT_RDWR))
                close(client)
                continue
            }
            let server = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            var address = Self.loopback(port: upstreamPort)
            let connected = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(server, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
            }
            let link = Link(client: client, server: server)
            guard connected == 0 else {
                link.cut(reset: true)
                link.close()
                continue
            }
            lock.withLock { open.append(link) }
            let done = Countdown(2) { [self] in
                lock.withLock { open.removeAll { $0 === link } }
                link.close()
            }
            Thread.detachNewThread {
                Self.pump(link, from: client, to: server, fault: fault, answer: false) { n in self.lock.withLock { self.forwarded.requests += n } }
                done.tick()
            }
            Thread.detachNewThread {
                Self.pump(link, from: server, to: client, fault: fault, answer: true) { n in self.lock.withLock { self.forwarded.answers += n } }
                done.tick()
            }
        }
    }

    /// Copies `from` to `to` until either ends, applying `fault` to its direction.
    private static func pump(_ link: Link, from: Int32, to: Int32, fault: Fault, answer: Bool, counted: (Int) -> Void) {
        var buffer = [UInt8](repeating: 0, count: 16 * 1024)
        var passed = 0
        while true {
            let n = read(from, &buffer, buffer.count)
            if n <= 0 {
                // The other side's writes end here too (half-close), as a real connection's would;
                // unless the connection is being reset, which must not send a FIN first.
                if !link.resetting { shutdown(to, Int32(SHUT_WR)) }
                return
            }
            var count = n
            var cutAfter: Bool? = nil  // reset (true) or clean close (false) after this chunk
            switch fault {
            case .delay(let milliseconds):
                usleep(useconds_t(milliseconds * 1000))
            case .resetAnswerAfter(let limit) where answer, .resetRequestAfter(let limit) where !answer:
                if passed + count >= limit { count = max(0, limit - passed); cutAfter = true }
            case .truncateAnswerAfter(let limit) where answer:
                if passed + count >= limit { count = max(0, limit - passed); cutAfter = false }
            default:
                break
            }
            if count > 0, !Self.writeAll(to, buffer, count) {
                shutdown(from, Int32(SHUT_RD))
                return
            }
            passed += count
            counted(count)
            if let reset = cutAfter {
                link.cut(reset: reset)
                return
            }
        }
    }

    private static func writeAll(_ fd: Int32, _ buffer: [UInt8], _ count: Int) -> Bool {
        var offset = 0
        while offset < count {
            let n = buffer.withUnsafeBytes { write(fd, $0.baseAddress! + offset, count - offset) }
            if n <= 0 {
                if n < 0 && errno == EINTR { continue }
                return false
            }
            offset += n
        }
        return true
    }

    private static func loopback(port: Int) -> sockaddr_in {
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr = in_addr(s_addr: inet_addr("127.0.0.1"))
        return address
    }

    public struct ProxyError: Error, CustomStringConvertible {
        public let description: String
        init(_ description: String) { self.description = description }
    }
}

/// The two sockets of one proxied connection.
private final class Link: @unchecked Sendable {
    let client: Int32
    let server: Int32
    private let lock = NSLock()
    private var reset = false

    init(client: Int32, server: Int32) {
        self.client = client
        self.server = server
    }

    var resetting: Bool { lock.withLock { reset } }

    /// Ends both sides: a reset (SO_LINGER 0; the read side shut so both pumps wake, and the
    /// close that follows sends RST), or a clean shutdown (FIN). The descriptors stay valid
    /// until both pumps are done, so no other connection can reuse their numbers meanwhile.
    func cut(reset: Bool) {
        if reset {
            lock.withLock { self.reset = true }
            for fd in [client, server] {
                var option = linger(l_onoff: 1, l_linger: 0)
                setsockopt(fd, SOL_SOCKET, SO_LINGER, &option, socklen_t(MemoryLayout<linger>.size))
                shutdown(fd, Int32(SHUT_RD))
            }
        } else {
            for fd in [client, server] { shutdown(fd, Int32(SHUT_RDWR)) }
        }
    }

    func close() {
        _ = Glibc.close(client)
        _ = Glibc.close(server)
    }
}

/// Runs `done` once `tick` was called `count` times.
private final class Countdown: @unchecked Sendable {
    private let lock = NSLock()
    private var left: Int
    private let done: () -> Void
    init(_ count: Int, _ done: @escaping () -> Void) {
        left = count
        self.done = done
    }
    func tick() {
        let last = lock.withLock { left -= 1; return left == 0 }
        if last { done() }
    }
}
