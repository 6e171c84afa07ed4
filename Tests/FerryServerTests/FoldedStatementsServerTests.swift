import FerryCore
import FerryTestSupport
@testable import FerryServer
@testable import FerryStore
import Foundation
import Testing

/// On PostgreSQL a PUT reads its create grant, its parents and its collection's rules with the
/// object, and writes a new object's permissions with it; a list checks its grant and parents in
/// one statement and reads its horizon with its page (issue 14). The same requests, one at a
/// time, must answer and store on PostgreSQL exactly what they do on SQLite, which folds none.
@Suite struct FoldedStatementsServerTests {
    static let future: Int64 = 4_000_000_000_000
    static let users = "/buckets/main/collections/users"

    struct Step {
        var method: String
        var path: String
        var body: JSON? = nil
        var user: String? = "alice"
        var headers: [String: String] = [:]
        /// The storage must be as before it (a refused write).
        var writesNothing = false
    }

    static let steps: [Step] = [
        Step(method: "PUT", path: "/buckets/main", body: ["data": ["last_modified": .int(future)]]),
        Step(method: "PUT", path: users, body: [
            "data": ["schema": ["type": "object", "properties": ["age": ["type": "integer"]]], "last_modified": .int(future)],
            "permissions": ["record:create": ["system.Authenticated"]],
        ]),
        Step(method: "PUT", path: "/buckets/main/collections/gone", body: ["data": [:]]),
        Step(method: "PUT", path: users + "/records/b1", body: ["data": ["age": 1]], user: "bob"),
        Step(method: "PUT", path: users + "/records/b2", body: ["data": ["age": 2], "permissions": ["read": ["<carol>"]]], user: "bob"),
        Step(method: "PUT", path: users + "/records/b1", body: ["data": ["age": 3]], user: "carol", writesNothing: true),
        Step(method: "PUT", path: users + "/records/b3", body: ["data": ["age": "three"]], user: "bob", writesNothing: true),
        Step(method: "PUT", path: users + "/records/b1", body: ["data": ["age": 4]]),
        Step(method: "PUT", path: users + "/records/anon", body: ["data": [:]], user: nil, writesNothing: true),
        Step(method: "PUT", path: "/buckets/main/collections/nope/records/x", body: ["data": [:]], user: "carol", writesNothing: true),
        Step(method: "PUT", path: "/buckets/main/collections/nope/records/x", body: ["data": [:]], writesNothing: true),
        Step(method: "DELETE", path: "/buckets/main/collections/gone"),
        Step(method: "PUT", path: "/buckets/main/collections/gone/records/x", body: ["data": [:]], writesNothing: true),
        Step(method: "PUT", path: "/buckets/elsewhere/collections/c/records/x", body: ["data": [:]], writesNothing: true),
        Step(method: "PUT", path: users + "/records/b1", body: ["data": ["age": 5]], user: "bob"),
        Step(method: "PUT", path: users + "/records/b2", body: ["data": ["age": 6], "permissions": ["write": ["<dave>"]]], user: "bob"),
        Step(method: "PUT", path: users + "/records/b2", body: ["data": ["age": 7]], headers: ["If-None-Match": "*"], writesNothing: true),
        Step(method: "POST", path: users + "/records", body: ["data": ["id": "p1", "age": 8]], user: "carol"),
        Step(method: "GET", path: users + "/records?_since=\(future)&_limit=2&_sort=last_modified"),
        Step(method: "GET", path: users + "/records?_limit=10", user: "bob"),
        Step(method: "GET", path: users + "/records", user: "mallory"),
        Step(method: "GET", path: users + "/records", headers: ["If-None-Match": "\"1\""]),
        Step(method: "GET", path: "/buckets/main/collections/nope/records"),
        Step(method: "GET", path: "/buckets/main/collections/nope/records", user: "mallory"),
        Step(method: "GET", path: "/buckets/main/collections/gone/records"),
        Step(method: "GET", path: "/buckets/elsewhere/collections/c/records"),
        Step(method: "PUT", path: "/buckets/main/groups/g", body: ["data": ["members": ["bob"]]], user: "bob", writesNothing: true),
        Step(method: "PUT", path: "/buckets/main/groups/g", body: ["data": ["members": ["bob"]]]),
        // A new collection seeds its records' timestamp after its upsert: released all the same.
        Step(method: "PUT", path: "/buckets/main/collections/c2", body: ["data": [:]]),
        Step(method: "GET", path: "/buckets/main/collections/c2/records"),
        Step(method: "PUT", path: "/buckets/main/collections/c2/records/r", body: ["data": [:]]),
        Step(method: "GET", path: "/buckets/main/collections/c2/records"),
        Step(method: "GET", path: users + "/records/b2", user: "dave"),
    ]

    /// Each step's answer (status, body, the headers a client reads) and the stored rows at the end.
    static func transcript(_ server: TestServer) async throws -> [String] {
        var lines: [String] = []
        let names = ["alice", "bob", "carol", "dave", "mallory"]
        for step in steps {
            let before = step.writesNothing ? try await server.dump() : []
            // A principal named `<name>` in a body is that user's id on this server.
            var body = step.body?.serialized()
            for name in names { body = body?.replacingOccurrences(of: "<\(name)>", with: server.userID(name)) }
            let response = try await server.request(step.method, step.path, json: try body.map { try JSON.parse($0) }, user: step.user, headers: step.headers)
            let headers = ["ETag", "Ferry-Tombstone-Horizon", "Next-Page"].map { "\($0)=\(response.header($0) ?? "-")" }.joined(separator: " ")
            lines.append("\(step.method) \(step.path) \(step.user ?? "-"): \(response.status) \(headers) \(response.json.serialized())")
            if step.writesNothing {
                #expect(try await server.dump() == before, "\(step.method) \(step.path) as \(step.user ?? "nobody") wrote")
            }
        }
        // The dumps differ in one way by construction: a row without a content hash ends in "-" on PostgreSQL.
        lines += try await server.dump().map { $0.hasSuffix(" -") ? String($0.dropLast(2)) : $0.trimmingCharacters(in: .whitespaces) }
        return lines.map { line in
            var out = line
            for name in names { out = out.replacingOccurrences(of: server.userID(name), with: "<\(name)>") }
            return out
        }
    }

    @Test func requestsAnswerAndStoreOnPostgresAsOnSQLite() async throws {
        guard PostgresCluster.enabled else { return }
        // One secret: the same users' ids, so principals sort alike.
        let secret = String(repeating: "5e", count: 32)
        let sqlite = try TestServer { $0.secret = secret }
        let postgres = try TestServer(storage: try await PostgresStorage(configuration: .init(url: try PostgresCluster.shared().createDatabase("folded")))) {
            $0.secret = secret
        }
        defer { try? postgres.parts.storage.close() }
        let expected = try await Self.transcript(sqlite)
        let got = try await Self.transcript(postgres)
        // The steps reach what they are meant to.
        let statuses = Set(expected.prefix(Self.steps.count).compactMap { $0.split(separator: ": ").dropFirst().first?.split(separator: " ").first })
        for status in ["200", "201", "400", "401", "403", "404", "412"] {
            #expect(statuses.contains(Substring(status)), "no \(status) among \(statuses)")
        }
        #expect(got.count == expected.count)
        for (i, (a, b)) in zip(expected, got).enumerated() where a != b {
            Issue.record("line \(i) differs:\nsqlite:   \(a)\npostgres: \(b)")
        }
    }
}
