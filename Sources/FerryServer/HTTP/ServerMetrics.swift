public import CoreMetrics
import NIOConcurrencyHelpers
public import Prometheus

/// The server's metrics, in a registry of its own (several servers can live in one process, as in tests).
public final class ServerMetrics: Sendable {
    public let registry: PrometheusCollectorRegistry
    let factory: PrometheusMetricsFactory
    /// Objects written (created, replaced, patched or deleted).
    public let recordsWritten: CoreMetrics.Counter
    /// Storage failures answered with 503.
    public let storageErrors: CoreMetrics.Counter
    /// Event streams open now.
    public let openStreams: CoreMetrics.Meter
    /// Change events sent on streams.
    public let streamEvents: CoreMetrics.Counter
    /// The database's size on disk, as of the last `/metrics` or `/admin/server` request.
    public let storageBytes: CoreMetrics.Gauge
    /// Bytes the process's allocator holds in use (freed memory kept for reuse not counted), and
    /// of them what SQLite holds (its page caches, bounded by `cache_size`), as of the last
    /// `/metrics` or `/admin/server` request. The resident set also counts what the allocator
    /// keeps free for the next requests (up to 64 MiB a heap: `ferry serve` asks glibc for it), so
    /// it cannot tell a leak from a warm heap; these can.
    public let heapBytes: CoreMetrics.Gauge
    public let sqliteBytes: CoreMetrics.Gauge
    /// 1 while this process delivers the webhooks (of several processes on one database, one does).
    public let webhooksLeading: CoreMetrics.Gauge
    /// 1 while this process purges old tombstones (of several processes on one database, one does).
    public let tombstonePurgeLeading: CoreMetrics.Gauge
    /// Tombstones purged by retention.
    public let tombstonesPurged: CoreMetrics.Counter

    public init() {
        registry = PrometheusCollectorRegistry()
        factory = PrometheusMetricsFactory(registry: registry)
        recordsWritten = CoreMetrics.Counter(label: "ferry_records_written_total", dimensions: [], factory: factory)
        storageErrors = CoreMetrics.Counter(label: "ferry_storage_errors_total", dimensions: [], factory: factory)
        openStreams = CoreMetrics.Meter(label: "ferry_streams_open", dimensions: [], factory: factory)
        streamEvents = CoreMetrics.Counter(label: "ferry_stream_events_total", dimensions: [], factory: factory)
        webhooksLeading = CoreMetrics.Gauge(label: "ferry_webhooks_leading", dimensions: [], factory: factory)
        storageBytes = CoreMetrics.Gauge(label: "ferry_storage_bytes", dimensions: [], factory: factory)
        heapBytes = CoreMetrics.Gauge(label: "ferry_memory_heap_bytes", dimensions: [], factory: factory)
        sqliteBytes = CoreMetrics.Gauge(label: "ferry_memory_sqlite_bytes", dimensions: [], factory: factory)
        webhooksLeading.record(0)
        tombstonePurgeLeading = CoreMetrics.Gauge(label: "ferry_tombstone_purge_leading", dimensions: [], factory: factory)
        tombstonePurgeLeading.record(0)
        tombstonesPurged = CoreMetrics.Counter(label: "ferry_tombstones_purged_total", dimensions: [], factory: factory)
    }

    /// Counts one request and its latency.
    func request(route: String, method: String, status: Int, seconds: Double) {
        let key = RequestSeries(route: route, method: method, status: status)
        let known = series.withLockedValue { $0[key] }
        let (counter, timer) = known ?? (
            CoreMetrics.Counter(label: "ferry_http_requests_total", dimensions: [("route", route), ("method", method), ("status", String(status))], factory: factory),
            CoreMetrics.Timer(label: "ferry_http_request_duration_seconds", dimensions: [("route", route)], factory: factory)
        )
        if known == nil { series.withLockedValue { $0[key] = (counter, timer) } }
        counter.increment()
        timer.recordNanoseconds(Int64(seconds * 1e9))
    }

    /// One request series: the few routes × methods × statuses a server answers.
    struct RequestSeries: Hashable {
        let route: String
        let method: String
        let status: Int
    }

    /// Each request series' counter and timer, made once: making them looked the series up in
    /// the registry by label and dimensions on every request (2 % of a GET).
    private let series = NIOLockedValueBox<[RequestSeries: (CoreMetrics.Counter, CoreMetrics.Timer)]>([:])

    func recordWritten(_ count: Int = 1) { recordsWritten.increment(by: Int64(count)) }
    func webhookDelivery(succeeded: Bool) {
        CoreMetrics.Counter(label: "ferry_webhook_deliveries_total", dimensions: [("outcome", succeeded ? "ok" : "failed")], factory: factory).increment()
    }
    func storageError() { storageErrors.increment() }
    func storageSize(_ bytes: Int64) { storageBytes.record(bytes) }
    func memory(heap: Int64, sqlite: Int64) {
        if heap >= 0 { heapBytes.record(heap) }
        sqliteBytes.record(sqlite)
    }

    /// The Prometheus text exposition.
    public func exposition() -> String { registry.emitToString() }
}
