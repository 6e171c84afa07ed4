import FerryCore
import Foundation
import NIOConcurrencyHelpers

/// Wakes whoever waits for changes in a collection: event streams, long-polls and webhook
/// deliveries.
///
/// A wake-up only says "read the change feed again": waiters re-read it with `_since`, so a
/// wake-up that is merged with another, or comes late, can delay a change but never drop it.
/// The change feed in storage stays the one source of truth (gap-free by the storage contract).
public final class ChangeHub: Sendable {
    /// One waiter's registration. A change signalled while the waiter is busy is kept until
    /// its next ``wait(timeout:)``.
    public final class Subscription: Sendable {
        /// `/buckets/B/collections/C`.
        public let collection: String
        let signal = WakeSignal()

        init(collection: String) {
            self.collection = collection
        }

        /// Whether the hub shut down (the server is stopping).
        public var isClosed: Bool { signal.isClosed }

        /// Waits until a change is signalled (true), or `timeout` passes, the task is cancelled
        /// or the hub closes (false).
        public func wait(timeout: Duration) async -> Bool { await signal.wait(timeout: timeout) }
    }

    private struct Registry {
        var byCollection: [String: [ObjectIdentifier: Subscription]] = [:]
        var closed = false
        /// Counts the changes announced per collection, and those announced for every collection.
        var generations: [String: UInt64] = [:]
        var everywhere: UInt64 = 0
    }
    private let registry = NIOLockedValueBox(Registry())

    public init() {}

    /// Registers a waiter on `collection` (`/buckets/B/collections/C`). Subscribe before the first
    /// read of the change feed, so a change that commits in between still wakes it.
    public func subscribe(_ collection: String) -> Subscription {
        let subscription = Subscription(collection: collection)
        let closed = registry.withLockedValue { registry in
            if !registry.closed { registry.byCollection[collection, default: [:]][ObjectIdentifier(subscription)] = subscription }
            return registry.closed
        }
        if closed { subscription.signal.close() }
        return subscription
    }

    public func unsubscribe(_ subscription: Subscription) {
        registry.withLockedValue { registry in
            registry.byCollection[subscription.collection]?[ObjectIdentifier(subscription)] = nil
            if registry.byCollection[subscription.collection]?.isEmpty == true { registry.byCollection[subscription.collection] = nil }
        }
    }

    /// Something in `collection` changed; nil: anything may have changed (a batch, a bucket).
    public func changed(_ collection: String?) {
        let woken: [Subscription] = registry.withLockedValue { registry in
            if let collection {
                registry.generations[collection, default: 0] &+= 1
                return registry.byCollection[collection].map { Array($0.values) } ?? []
            }
            registry.everywhere &+= 1
            return registry.byCollection.values.flatMap(\.values)
        }
        for subscription in woken { subscription.signal.raise() }
    }

    /// Ends every wait for good (the server is stopping).
    public func close() {
        let all: [Subscription] = registry.withLockedValue { registry in
            registry.closed = true
            defer { registry.byCollection = [:] }
            return registry.byCollection.values.flatMap(\.values)
        }
        for subscription in all { subscription.signal.close() }
    }

    /// Which announcement a reader of `collection` has been woken by: readers that ask with the
    /// same generation may share one read of the change feed (it starts after that change committed).
    public func generation(_ collection: String) -> String {
        registry.withLockedValue { "\($0.everywhere).\($0.generations[collection] ?? 0)" }
    }

    /// How many waiters are registered.
    public var subscriberCount: Int {
        registry.withLockedValue { $0.byCollection.values.reduce(0) { $0 + $1.count } }
    }
}
