public import FerryCore

/// `file:PATH.jsonl` (JSON Lines: one object per line) or `file:PATH.csv`.
///
/// As a target, the file is rewritten whole at the end of the run — into a temporary
/// file that is fsynced and renamed over the old one — so a crash leaves the old file or
/// the new one, never half of either. Existing records keep their place; new ones are
/// appended. Changes wait in memory until then (memory grows with the changes of a run).
public final class FileEndpoint: Endpoint {
    public enum Format: String, Sendable { case jsonl, csv }

    public let path: String
    public let format: Format
    let options: EndpointOptions
    public var displayName: String { "file:" + path }
    /// Bytes read by the last full read or change read.
    public internal(set) var bytesRead = 0

    public init(path: String, format: Format, options: EndpointOptions) {
        self.path = path
        self.format = format
        self.options = options
    }

    public func open(forWriting: Bool) async throws {
        if forWriting {
            let directory = path.contains("/") ? String(path[..<path.lastIndex(of: "/")!]) : "."
            guard FileSystem.isWritableDirectory(directory.isEmpty ? "/" : directory) else {
                throw SyncError(.io, "cannot write \(displayName): folder \(directory) does not exist or is not writable")
            }
            if FileSystem.exists(path) { _ = try LineReader(path: path) }
            FileSystem.removeStaleTemporaries(of: path)
        } else {
            _ = try LineReader(path: path)
        }
    }

    public func estimatedCount() async throws -> Int? {
        guard FileSystem.exists(path) else { return 0 }
        var reader = try LineReader(path: path)
        var lines = 0
        while try reader.next({ !$0.isEmpty }) != nil { lines += 1 }
        return format == .csv ? max(0, lines - 1) : lines
    }

    /// Parses the whole file once, so a malformed line stops the run before anything is written.
    public func validate() async throws { try validateNow() }

    /// ``validate()`` on the calling thread (``BackgroundValidation`` runs it on its own).
    func validateNow() throws {
        var reader = try RecordReader(endpoint: self)
        if format == .jsonl {
            try reader.validateJSONLines()
        } else {
            var row = CSV.Row()  // the checks of next(), building no records and no strings
            while try reader.nextCSVRow(into: &row) != nil { row.removeAll() }
        }
    }

    public func readAll(batchSize: Int) throws -> SourceBatches {
        SourceBatches { AllReader(endpoint: self, batchSize: batchSize) }
    }

    public func readChanges(after cursor: Cursor?, batchSize: Int) throws -> SourceBatches {
        guard let cursorField = options.cursorField else {
            throw SyncError.badInput("an incremental run from \(displayName) needs --cursor-field (an updated_at-like field); or use --mode diff, which needs none")
        }
        return SourceBatches { ChangeReader(endpoint: self, cursorField: cursorField, after: cursor, batchSize: batchSize) }
    }

    /// The open file of a read: opened at the first batch, closed at the end of the file or
    /// when the read is dropped.
    final class OpenFile {
        var reader: RecordReader

        init(_ endpoint: FileEndpoint) throws {
            reader = try RecordReader(endpoint: endpoint)
        }
    }

    /// Every record, `batchSize` lines at a time.
    final class AllReader: BatchReader {
        let endpoint: FileEndpoint
        let batchSize: Int
        var file: OpenFile? = nil
        var done = false

        init(endpoint: FileEndpoint, batchSize: Int) {
            self.endpoint = endpoint
            self.batchSize = batchSize
        }

        func next() async throws -> SourceBatch? {
            guard !done else { return nil }
            let file = try self.file ?? OpenFile(endpoint)
            self.file = file
            var batch: [SourceItem] = []
            batch.reserveCapacity(batchSize)
            while batch.count < batchSize, let fields = try file.reader.next() {
                batch.append(.record(fields))
            }
            if batch.count < batchSize {
                endpoint.bytesRead = file.reader.bytesRead
                self.file = nil
                done = true
                if batch.isEmpty { return nil }
            }
            return SourceBatch(batch)
        }
    }

    /// The records whose (cursor field, key) is past the checkpoint, `batchSize` at a time.
    /// A file is in no particular order: no batch but the last is a safe place to resume.
    final class ChangeReader: BatchReader {
        let endpoint: FileEndpoint
        let cursorField: String
        let batchSize: Int
        var checkpoint: ValueCheckpoint
        /// The greatest (value, key) read: the checkpoint when the newest value has no hash set.
        var last: (value: JSON, key: RecordKey)? = nil
        var file: OpenFile? = nil
        var done = false

        init(endpoint: FileEndpoint, cursorField: String, after cursor: Cursor?, batchSize: Int) {
            self.endpoint = endpoint
            self.cursorField = cursorField
            self.batchSize = batchSize
            checkpoint = ValueCheckpoint(after: cursor, keyField: endpoint.options.keyField, sorted: false)
        }

        func next() async throws -> SourceBatch? {
            guard !done else { return nil }
            let file = try self.file ?? OpenFile(endpoint)
            self.file = file
            let keyField = endpoint.options.keyField
            var batch: [SourceItem] = []
            while batch.count < batchSize, let fields = try file.reader.next() {
                guard let key = fields[keyField].flatMap(RecordKey.init) else {
                    batch.append(.record(fields))  // the engine dead-letters it
                    continue
                }
                let value = fields[cursorField] ?? .null
                if let l = last {
                    let c = JSON.cursorOrder(value, l.value)
                    if c > 0 || (c == 0 && l.key.text.utf8.lexicographicallyPrecedes(key.text.utf8)) { last = (value, key) }
                } else {
                    last = (value, key)
                }
                guard checkpoint.take(value: value, key: key, fields: fields) else { continue }
                batch.append(.record(fields))
            }
            if batch.count == batchSize { return SourceBatch(batch) }
            endpoint.bytesRead = file.reader.bytesRead
            self.file = nil
            done = true
            let final = checkpoint.end ?? last.map { Cursor.compound(value: $0.value, key: $0.key.value) }
            if !batch.isEmpty || final != nil { return SourceBatch(batch, cursor: final) }
            return nil
        }
    }

    /// The column names of a CSV file's header (empty for JSON Lines or a missing file).
    func csvHeader() throws -> [String] {
        guard format == .csv, FileSystem.exists(path) else { return [] }
        var reader = try RecordReader(endpoint: self)
        _ = try reader.next()
        return reader.header ?? []
    }

    public func makeWriter(job: String) async throws -> any TargetWriter {
        FileWriter(endpoint: self)
    }

    public func close() async {}
}

/// Collects a run's changes, then merges them with the existing file into a new one.
final class FileWriter: TargetWriter {
    let endpoint: FileEndpoint
    private var pending: [RecordKey: Change] = [:]
    private var newKeys: [RecordKey] = []

    init(endpoint: FileEndpoint) { self.endpoint = endpoint }

    var commitsEachBatch: Bool { false }
    var keepsCheckpoint: Bool { false }
    func storedCursor() async throws -> Cursor? { nil }

    func apply(_ changes: [Change], cursor: Cursor?) async throws -> ApplyOutcome {
        for change in changes {
            if pending.updateValue(change, forKey: change.key) == nil { newKeys.append(change.key) }
        }
        return ApplyOutcome()
    }

    func finish(cursor: Cursor?) async throws -> ApplyOutcome {
        var outcome = ApplyOutcome()
        let keyField = endpoint.options.keyField
        let out = try AtomicFileWriter(path: endpoint.path)
        var columns: [String] = []
        if endpoint.format == .csv {
            // Every column of the old header and of every new record, the key first.
            var names = Set(try endpoint.csvHeader())
            for case .upsert(let record) in pending.values {
                for (name, value) in record.fields where value != .null { names.insert(name) }
            }
            names.remove(keyField)
            columns = [keyField] + names.sorted()
            try out.write(CSV.row(columns.map { CSV.cellText(.string($0)) }))
        }
        func emit(_ fields: [String: JSON]) throws {
            if endpoint.format == .jsonl {
                var bytes = JSON.object(fields.filter { $0.value != .null }).serializedBytes()
                bytes.append(UInt8(ascii: "\n"))
                try out.write(bytes)
            } else {
                try out.write(CSV.row(columns.map { CSV.cellText(fields[$0]) }))
            }
        }
        /// Writes what the run's change (if any) makes of a record the file had (or not), and counts it.
        func settle(_ key: RecordKey, existing: [String: JSON]?) throws {
            switch pending[key] {
            case .upsert(let record)?:
                if existing == nil { outcome.created += 1 } else { outcome.updated += 1 }
                try emit(record.fields)
            case .delete?:
                if existing == nil { outcome.alreadyGone += 1 } else { outcome.deleted += 1 }
            case nil:
                if let existing { try emit(existing) }
            }
        }
        var seen = Set<RecordKey>()
        if FileSystem.exists(endpoint.path) {
            var reader = try RecordReader(endpoint: endpoint)
            while let fields = try reader.next() {
                guard let key = fields[keyField].flatMap(RecordKey.init) else {
                    try emit(fields)
                    continue
                }
                seen.insert(key)
                try settle(key, existing: fields)
            }
        }
        for key in newKeys where !seen.contains(key) {
            try settle(key, existing: nil)
        }
        try out.commit()
        pending.removeAll()
        newKeys.removeAll()
        return outcome
    }
}

/// Reads a JSON Lines or CSV file record by record; malformed lines throw with their number.
struct RecordReader: ~Copyable {
    private var lines: LineReader
    private let format: FileEndpoint.Format
    private let name: String
    private var parser = CSV.Parser()
    private(set) var header: [String]? = nil
    private var rowStart = 1

    init(endpoint: FileEndpoint) throws(SyncError) {
        lines = try LineReader(path: endpoint.path)
        format = endpoint.format
        name = endpoint.displayName
    }

    var bytesRead: Int { lines.bytesRead }

    mutating func next() throws -> [String: JSON]? {
        switch format {
        case .jsonl: return try nextJSONLine()
        case .csv: return try nextCSVRow()
        }
    }

    /// Checks every line is a JSON object, building nothing.
    mutating func validateJSONLines() throws {
        while try nextJSONLine(build: false) != nil {}
    }

    /// The next non-blank line as an object. With `build: false` the line is only checked
    /// (``JSON/validate(bytes:maxDepth:)``) and an empty object comes back.
    private mutating func nextJSONLine(build: Bool = true) throws -> [String: JSON]? {
        let name = name
        while true {
            let number = lines.lineNumber + 1
            guard let fields = try lines.next({ line -> [String: JSON]? in
                if Self.isBlank(line) { return nil }
                if build { return try Self.object(line, number: number, name: name) }
                let kind: String
                do {
                    kind = try JSON.validate(bytes: line)
                } catch {
                    throw SyncError.badInput("\(name) line \(number): invalid JSON: \(error)")
                }
                guard kind == "object" else {
                    throw SyncError.badInput("\(name) line \(number): expected a JSON object, found \(kind)")
                }
                return [:]
            }) else { return nil }
            if let fields { return fields }
        }
    }

    static func isBlank(_ line: some Collection<UInt8>) -> Bool {
        line.allSatisfy { $0 == 0x20 || $0 == 0x09 }
    }

    /// One JSON Lines line as an object; a malformed one throws with its number.
    static func object(_ line: some Collection<UInt8>, number: Int, name: String) throws -> [String: JSON] {
        let value: JSON
        do {
            value = try JSON.parse(bytes: line)
        } catch {
            throw SyncError.badInput("\(name) line \(number): invalid JSON: \(error)")
        }
        guard case .object(let members) = value else {
            throw SyncError.badInput("\(name) line \(number): expected a JSON object, found \(value.typeName)")
        }
        return members
    }

    /// Appends the next non-blank JSON Lines line, unparsed, to `batch`; false at the end of the file.
    mutating func nextJSONLine(into batch: inout LineBatch) throws -> Bool {
        while true {
            let number = lines.lineNumber + 1
            guard let added = try lines.next({ line -> Bool in
                if Self.isBlank(line) { return false }
                batch.append(line, number: number)
                return true
            }) else { return false }
            if added { return true }
        }
    }

    var fileName: String { name }

    private mutating func nextCSVRow() throws -> [String: JSON]? {
        guard let (cells, _) = try nextCSVCells() else { return nil }
        return Self.fields(header: header!, cells: cells)
    }

    /// A CSV data row as a record.
    static func fields(header: [String], cells: [CSV.Cell]) -> [String: JSON] {
        var fields: [String: JSON] = [:]
        for (column, cell) in zip(header, cells) {
            if let value = CSV.value(of: cell) { fields[column] = value }
        }
        return fields
    }

    /// The next CSV data row's cells (as many as the header has) and the line it starts on;
    /// reads the header first. Malformed rows throw with their line number.
    mutating func nextCSVCells() throws -> (cells: [CSV.Cell], line: Int)? {
        var row = CSV.Row()
        guard let line = try nextCSVRow(into: &row) else { return nil }
        return (row.cells(0..<row.count), line)
    }

    /// Appends the next CSV data row's cells (as many as the header has) to `rows` and returns
    /// the line it starts on (nil at the end of the file); reads the header first. Malformed
    /// rows throw with their line number.
    mutating func nextCSVRow(into rows: inout CSV.Row) throws -> Int? {
        let name = name
        // The parser is used inside the line reader's closure: keep it in a local meanwhile.
        var parser = self.parser
        defer { self.parser = parser }
        let first = rows.count
        while true {
            let number = lines.lineNumber + 1
            guard let finished = try lines.next({ line -> Bool in
                do {
                    return try parser.feed(line, into: &rows)
                } catch {
                    throw SyncError.badInput("\(name) line \(number): malformed CSV: \((error as? SyncError)?.message ?? "\(error)")")
                }
            }) else {
                if parser.isInsideQuotes {
                    throw SyncError.badInput("\(name) line \(rowStart): a quoted cell is never closed")
                }
                return nil
            }
            guard finished else { continue }  // a quoted cell goes on to the next line
            let start = rowStart
            rowStart = lines.lineNumber + 1
            let count = rows.count - first
            guard let names = header else {
                let names = (first..<rows.count).map(rows.text)
                rows.removeCells(from: first)
                if let empty = names.firstIndex(of: "") {
                    throw SyncError.badInput("\(name) line \(start): header column \(empty + 1) has no name")
                }
                if Set(names).count != names.count {
                    throw SyncError.badInput("\(name) line \(start): the header names a column twice")
                }
                header = names
                continue
            }
            if count == 1 && rows.start(first) == rows.ends[first] && !rows.quoted[first] {  // a blank line
                rows.removeCells(from: first)
                continue
            }
            guard count == names.count else {
                throw SyncError.badInput("\(name) line \(start): \(count) fields where the header has \(names.count)")
            }
            return start
        }
    }
}

/// Lines of a file copied into one buffer (no allocation per line), for loads that parse
/// each line straight into a statement.
struct LineBatch {
    private(set) var bytes: [UInt8] = []
    /// Where each line ends in `bytes` (it starts where the one before ends).
    private(set) var ends: [Int] = []
    /// Each line's number in the file.
    private(set) var numbers: [Int] = []

    var count: Int { ends.count }

    mutating func append(_ line: ArraySlice<UInt8>, number: Int) {
        bytes.append(contentsOf: line)
        ends.append(bytes.count)
        numbers.append(number)
    }

    mutating func removeAll() {
        bytes.removeAll(keepingCapacity: true)
        ends.removeAll(keepingCapacity: true)
        numbers.removeAll(keepingCapacity: true)
    }

    /// Calls `body` with line `index`'s bytes.
    func withLine<R>(_ index: Int, _ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        let start = index == 0 ? 0 : ends[index - 1]
        return try bytes.withUnsafeBytes { try body(UnsafeRawBufferPointer(rebasing: $0[start..<ends[index]])) }
    }
}

extension FileEndpoint: ValidatingSource, ByteCountingSource {}
