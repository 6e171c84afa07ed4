// libFuzzer target: the webhook signature check (`Ferry-Signature`, which `ferry listen` and any
// receiver parse from an untrusted request). Input: the header, a NUL, then the body.
// Built by bench/fuzz.sh with -sanitize=fuzzer,address; a crash or sanitizer report is a bug.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzSignature(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    let split = bytes.firstIndex(of: 0) ?? bytes.count
    let header = String(decoding: bytes[..<split], as: UTF8.self)
    let body = Array(bytes[min(split + 1, bytes.count)...])
    if let parsed = try? WebhookSignature.parse(header) {
        precondition((0...999_999_999_999).contains(parsed.timestamp) && parsed.mac.count == 32, "parse let through \(header)")
        // The header this secret writes for the parsed timestamp verifies; the fuzzed one only if it is that one.
        let signed = WebhookSignature.header(secret: "0123456789abcdef0123", timestamp: parsed.timestamp, delivery: "d-1", body: body)
        precondition((try? WebhookSignature.verify(header: signed, secret: "0123456789abcdef0123", delivery: "d-1", body: body,
                                                   now: parsed.timestamp)) == parsed.timestamp, "a signed header did not verify")
    }
    _ = try? WebhookSignature.verify(header: header, secret: "0123456789abcdef0123", delivery: "d-1", body: body, now: 1_700_000_000)
    return 0
}
