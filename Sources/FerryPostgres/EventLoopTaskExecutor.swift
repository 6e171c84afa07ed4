public import NIOCore

/// Runs the jobs of a task on an event loop, one after the other (SE-0417): work that must not
/// wait for a thread of Swift's cooperative pool (which blocking callers can fill), or that must
/// run in the same turn of the loop as the connection's own handlers.
@available(macOS 15.0, iOS 18.0, tvOS 18.0, watchOS 11.0, *)
public final class EventLoopTaskExecutor: TaskExecutor {
    let loop: any EventLoop

    public init(_ loop: any EventLoop) {
        self.loop = loop
    }

    public func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        let executor = asUnownedTaskExecutor()
        loop.execute { job.runSynchronously(on: executor) }
    }
}
