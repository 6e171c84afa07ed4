@testable import FerryServer
import Testing

@Suite struct ConfigurationTests {
    @Test func yamlEnvironmentAndDefaultsCombine() throws {
        var c = ServerConfiguration()
        try c.applyYAML("""
            server:
              port: 9000
              data: /tmp/x
              batch_max_requests: 50
              bucket_create_principals: [system.Authenticated, account:admin]
            jobs:
              ignored: {}
            """, file: "ferry.yml")
        #expect(c.port == 9000 && c.dataDirectory == "/tmp/x" && c.batchMaxRequests == 50)
        #expect(c.bucketCreatePrincipals == ["system.Authenticated", "account:admin"])
        try c.applyEnvironment(["FERRY_PORT": "9100", "FERRY_READONLY": "true", "OTHER": "x"])
        #expect(c.port == 9100 && c.readonly)
        #expect(c.host == "127.0.0.1")
    }

    @Test func unknownKeysAreErrorsWithTheirLine() {
        var c = ServerConfiguration()
        let original = c
        #expect {
            try c.applyYAML("server:\n  port: 9000\n  prot: 1\n", file: "ferry.yml")
        } throws: { error in
            (error as? ServerConfiguration.Error)?.description.contains("ferry.yml:3") == true
                && (error as? ServerConfiguration.Error)?.description.contains("unknown setting \"prot\"") == true
        }
        #expect(throws: ServerConfiguration.Error.self) { try c.applyYAML("servr:\n  port: 1\n", file: "f.yml") }
        #expect(c.port == 9000 || c == original)
    }

    @Test(arguments: [
        ("port", "99999", "port must be a whole number"), ("port", "abc", "port must be a whole number"),
        ("readonly", "maybe", "readonly must be true or false"), ("log_level", "loud", "log_level must be one of"),
        ("secret", "short", "at least 16"), ("max_body_size", "10", "max_body_size must be"),
        ("batch_max_requests", "0", "batch_max_requests must be"),
        ("max_streams", "-1", "max_streams must be"), ("stream_heartbeat", "0", "stream_heartbeat must be"),
        ("webhook_timeout", "0", "webhook_timeout must be"),
        ("request_timeout", "0", "request_timeout must be"), ("request_timeout", "3601", "request_timeout must be"),
        ("request_timeout", "1.5", "request_timeout must be"), ("request_timeout", "ten", "request_timeout must be"), ("webhook_allow_hosts", "10.0.0.0/33", "is not a CIDR range"),
        ("webhook_allow_hosts", "localhost, evil host", "is not a host name"),
        ("trusted_proxies", "proxy.example", "is not an address or a CIDR range"), ("trusted_proxies", "10.0.0.0/40", "is not an address or a CIDR range"),
        ("database", "mysql://u:hunter2@h/db", "u:***@h/db\": a PostgreSQL URL starts with postgres://"), ("database", "postgres://u:p@h/db?pool=0", "pool must be 1 to 500"),
        ("project_url", "docs.example.com", "project_url must be an http or https URL"),
        ("project_url", "javascript:alert(1)", "project_url must be an http or https URL"),
        ("attachment_base_url", "ftp://cdn.example.com/files/", "attachment_base_url must be an http or https URL"), ("project_url", "https://a b", "project_url must be"),
        ("database", "postgres://u:p@h/", "name the database after the host"), ("database", "postgres://u:p@h/db?color=red", "unknown setting \"color\" (known: sslmode, connect_timeout, statement_timeout, pool)"), ("webhook_allow_hosts", "::1/200", "is not a CIDR range"),
    ])
    func badValuesSayWhatAndWhere(key: String, value: String, message: String) {
        var c = ServerConfiguration()
        #expect {
            try c.set(key, value, source: "--\(key)")
        } throws: { error in
            let text = (error as? ServerConfiguration.Error)?.description ?? ""
            return text.hasPrefix("--\(key):") && text.contains(message)
        }
        #expect(c == ServerConfiguration())
    }

    @Test func kintoCompatibilitySettingsParse() throws {
        var c = ServerConfiguration()
        #expect(c.versionPrefixRedirect && !c.flushEndpoint && c.corsOrigins == ["*"] && c.corsMaxAgeSeconds == 3600)
        try c.applyYAML("""
            server:
              version_prefix_redirect_enabled: false
              flush_endpoint_enabled: true
              cors_origins: [https://app.example.com, "https://*.example.org"]
              cors_max_age_seconds: 60
            """, file: "ferry.yml")
        #expect(!c.versionPrefixRedirect && c.flushEndpoint && c.corsOrigins == ["https://app.example.com", "https://*.example.org"] && c.corsMaxAgeSeconds == 60)
        try c.applyEnvironment(["FERRY_CORS_ORIGINS": "", "FERRY_FLUSH_ENDPOINT_ENABLED": "no"])
        #expect(c.corsOrigins == [] && !c.flushEndpoint)
        #expect(throws: ServerConfiguration.Error.self) { try c.set("flush_endpoint_enabled", "sometimes", source: "x") }
        #expect(throws: ServerConfiguration.Error.self) { try c.set("cors_max_age_seconds", "-1", source: "x") }
    }

    @Test func malformedYAMLIsAnError() {
        var c = ServerConfiguration()
        #expect(throws: ServerConfiguration.Error.self) { try c.applyYAML("server: [unclosed", file: "bad.yml") }
        #expect(throws: ServerConfiguration.Error.self) { try c.applyYAML("- a\n- b\n", file: "bad.yml") }
        #expect(throws: ServerConfiguration.Error.self) { try c.applyFile("/nonexistent/ferry.yml") }
    }
}
