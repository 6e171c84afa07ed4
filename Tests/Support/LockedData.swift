public import Foundation

/// What a child process prints, collected as it goes on threads of its own and readable from any
/// thread meanwhile.
public final class LockedData: @unchecked Sendable {
    private let lock = NSLock()
    private var data = Data()
    private let drained = DispatchGroup()

    public init() {}

    public func append(_ d: Data) { lock.lock(); data.append(d); lock.unlock() }
    public func get() -> Data { lock.lock(); defer { lock.unlock() }; return data }

    /// Everything collected so far, as text.
    public var text: String { String(decoding: get(), as: UTF8.self) }

    /// Appends everything `handle` gives until its end, on a thread of its own (a child's full
    /// pipe would block it).
    public func collect(_ handle: FileHandle) {
        drained.enter()
        Thread.detachNewThread {
            while true {
                let chunk = handle.availableData
                if chunk.isEmpty { break }
                self.append(chunk)
            }
            self.drained.leave()
        }
    }

    /// Waits, without holding a thread, until every handle given to ``collect(_:)`` has ended.
    public func ended() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            drained.notify(queue: .global()) { continuation.resume() }
        }
    }
}
