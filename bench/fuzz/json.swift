// libFuzzer target: FerryCore's JSON parser (every request body and stored record goes through it).
// Built by bench/fuzz.sh with -sanitize=fuzzer,address; a crash or sanitizer report is a bug.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzJSON(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    if let value = try? JSON.parse(bytes: bytes, maxDepth: 64) {
        // What parses must serialize and parse back to the same value.
        let again = try? JSON.parse(bytes: value.serializedBytes(), maxDepth: 64)
        precondition(again == value, "JSON round trip changed the value")
    }
    return 0
}
