// libFuzzer target: the CSV reader of the file connector (`file:x.csv`, untrusted files), and its
// promise that what Ferry writes reads back the same: every value read from the input, written
// as a CSV cell and read again, is the same value.
// Built by bench/fuzz.sh with -sanitize=fuzzer,address; a crash or sanitizer report is a bug.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzCSV(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    var parser = CSV.Parser()
    for line in bytes.split(separator: 0x0A, omittingEmptySubsequences: false) {
        guard let cells = try? parser.feed(line) else { return 0 }  // a refused line ends the file
        let values = cells.map(CSV.value(of:))
        var again = CSV.Parser()
        let written = CSV.row(values.map(CSV.cellText))
        var reread: [CSV.Cell]? = nil
        for part in written.dropLast().split(separator: 0x0A, omittingEmptySubsequences: false) {
            reread = try! again.feed(part)
        }
        precondition(reread.map { $0.map(CSV.value(of:)) } == values, "CSV round trip changed \(values)")
    }
    return 0
}
