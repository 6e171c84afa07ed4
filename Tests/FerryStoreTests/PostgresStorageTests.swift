import FerryCore
@testable import FerryStore
import FerryTestSupport
import Foundation
import Testing

/// The storage contract on PostgreSQL (a throwaway cluster, a fresh database per test), and
/// what only several processes on one database can show.
@Suite(.enabled(if: PostgresCluster.enabled, "PostgreSQL is not installed: its tests are skipped (CI sets FERRY_REQUIRE_POSTGRES=1 and runs them)"))
struct PostgresStorageTests {
    static func makeStorage(pool: Int = 10) async throws -> (PostgresStorage, String) {
        let url = try PostgresCluster.shared().createDatabase("store")
        var configuration = try PostgresStorage.Configuration(url: url)
        configuration.poolSize = pool
        return (try await PostgresStorage(configuration: configuration), url)
    }

    @Test(arguments: StorageContract.names)
    func contract(_ name: String) async throws {
        let (storage, _) = try await Self.makeStorage()
        defer { try? storage.close() }
        try await StorageContract.run(name, storage)
    }

    /// Two storages on one database stand for two server processes: with writers on both, a poller
    /// on either sees every change exactly once, and timestamps never repeat.
    @Test func changeFeedIsGapFreeAcrossTwoStoragesOnOneDatabase() async throws {
        let (first, url) = try await Self.makeStorage()
        let second = try await PostgresStorage(configuration: try .init(url: url))
        defer {
            try? first.close()
            try? second.close()
        }
        let perWriter = 100
        let seen = try await StorageContract.pollWhileWriting(writers: [first, second, first, second], poller: second, perWriter: perWriter)
        #expect(seen.count == 4 * perWriter)
        #expect(Set(seen.map(\.id)).count == 4 * perWriter)
        let stamps = seen.map(\.lastModified)
        #expect(Set(stamps).count == stamps.count)
    }

    @Test func committedWritesSurviveReconnecting() async throws {
        let (storage, url) = try await Self.makeStorage()
        let key = StorageContract.records
        _ = try await storage.write { s in try s.put(key, id: "kept", data: ["v": 1], requestedTimestamp: nil) }
        try storage.close()
        let reopened = try await PostgresStorage(configuration: try .init(url: url))
        defer { try? reopened.close() }
        let object = try await reopened.read { s in try s.get(key, id: "kept", includeDeleted: false) }
        #expect(object?.json.contains("\"v\":1") == true)
    }

    @Test func badURLsAndCredentialsAreClearErrors() async throws {
        let cluster = try PostgresCluster.shared()
        for (url, mention) in [
            ("mysql://u:p@127.0.0.1/db", "postgres://"), ("postgres://127.0.0.1/db", "user"), ("postgres://u:p@127.0.0.1/", "database"),
            ("postgres://u:p@127.0.0.1/db?pool=0", "pool"), ("postgres://u:p@127.0.0.1/db?colour=red", "unknown URL setting \"colour\""),
            ("postgres://u:p@127.0.0.1/db?sslmode=maybe", "sslmode"),
        ] {
            #expect { _ = try PostgresStorage.Configuration(url: url) } throws: { error in
                "\(error)".contains(mention) && !"\(error)".contains(":p@")
            }
        }
        let wrong = cluster.url(database: "postgres", password: "wrong-password")
        await #expect { _ = try await PostgresStorage(configuration: try .init(url: wrong)) } throws: { error in
            "\(error)".contains("password authentication failed") && !"\(error)".contains("wrong-password")
        }
        let unreachable = "postgres://ferry:x@127.0.0.1:1/db?connect_timeout=2"
        await #expect { _ = try await PostgresStorage(configuration: try .init(url: unreachable)) } throws: { error in
            "\(error)".contains("cannot connect to postgres://ferry@127.0.0.1:1/db")
        }
    }
}
