import FerryServer
import Testing

/// Where webhooks may point (addresses as URLs, so no DNS is involved).
struct WebhookPolicyTests {
    @Test(arguments: [
        ("http://127.0.0.1/", true), ("http://127.255.1.2/", true), ("http://10.1.2.3/", true), ("http://172.16.0.1/", true),
        ("http://172.31.255.255/", true), ("http://172.32.0.1/", false), ("http://192.168.0.10/", true), ("http://169.254.169.254/", true),
        ("http://100.64.0.1/", true), ("http://100.128.0.1/", false), ("http://0.0.0.0/", true), ("http://224.0.0.1/", true),
        ("http://8.8.8.8/", false), ("https://93.184.216.34:8443/x", false),
        ("http://[::1]/", true), ("http://[::]/", true), ("http://[fe80::1]/", true), ("http://[fd12::1]/", true),
        ("http://[ff02::1]/", true), ("http://[::ffff:127.0.0.1]/", true), ("http://[::ffff:8.8.8.8]/", false), ("http://[2606:4700::1111]/", false),
    ])
    func internalAddressesAreRefusedByDefault(url: String, refused: Bool) {
        let refusal = WebhookAddressPolicy().refusal(for: url)
        #expect((refusal != nil) == refused, "\(url): \(refusal ?? "allowed")")
        if refused { #expect(refusal?.contains("webhook_allow_hosts") == true) }
    }

    @Test func allowListsOpenExactlyWhatTheyName() {
        let policy = WebhookAddressPolicy(allowHosts: ["10.0.0.0/8", "127.0.0.1", "fd00::/8"])
        #expect(policy.refusal(for: "http://10.200.3.4/hook") == nil)
        #expect(policy.refusal(for: "http://127.0.0.1:9000/") == nil)
        #expect(policy.refusal(for: "http://127.0.0.2/") != nil)
        #expect(policy.refusal(for: "http://192.168.1.1/") != nil)
        #expect(policy.refusal(for: "http://[fd12::1]/") == nil)
        #expect(policy.refusal(for: "http://[fe80::1]/") != nil)
        #expect(WebhookAddressPolicy(allowHosts: ["*"]).refusal(for: "http://10.0.0.1/") == nil)
        #expect(WebhookAddressPolicy(allowHosts: ["*"]).refusal(for: "ftp://10.0.0.1/")?.contains("http://") == true)
    }

    @Test(arguments: ["", "ftp://example.com/", "file:///etc/passwd", "http:///nohost", "http://user:pw@8.8.8.8/", "javascript:alert(1)"])
    func malformedURLsAreRefused(url: String) {
        #expect(WebhookAddressPolicy(allowHosts: ["*"]).refusal(for: url) != nil, "\(url)")
    }

    @Test func configurationEntriesAreChecked() {
        for good in ["*", "localhost", "hooks.example.com", "10.0.0.0/8", "::1", "fd00::/8", "192.168.1.7"] {
            #expect(WebhookAddressPolicy.problem(withEntry: good) == nil, "\(good)")
        }
        for bad in ["", "10.0.0.0/33", "10.0.0.0/x", "a b", "hooks.example.com/8", "::1/129", "ex*ample"] {
            #expect(WebhookAddressPolicy.problem(withEntry: bad) != nil, "\(bad)")
        }
    }
}
