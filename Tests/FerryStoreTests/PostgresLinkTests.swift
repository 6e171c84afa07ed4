import FerryPostgres
import FerryTestSupport
import Foundation
import Logging
import NIOCore
import NIOPosix
import PostgresNIO
import Testing

/// ``PostgresLink``, the guard every statement of the server's storage and of the sync connector
/// goes through, on a connection that closed.
@Suite(.enabled(if: PostgresCluster.enabled, "PostgreSQL is not installed: its tests are skipped (CI sets FERRY_REQUIRE_POSTGRES=1 and runs them)"))
struct PostgresLinkTests {
    struct Lost: Error {}

    /// A statement waited for once the connection is closed (a ROLLBACK after a statement that
    /// failed with the close; a write's pipelined BEGIN on a pooled connection the network cut)
    /// fails with `lost`. It used to leave a promise unfulfilled, on which a debug build traps
    /// ("leaking promise"): `ferry serve` died so under `PostgresFaultTests`. Without the fix this
    /// test takes the test process down with that message.
    @Test func aWaitOnAClosedConnectionFailsWithLost() async throws {
        let url = try PostgresCluster.shared().createDatabase("link")
        let configuration = try PostgresAddress.parse(url).address.connectionConfiguration()
        let connection = try await PostgresConnection.connect(configuration: configuration, id: 1, logger: Logger(label: "test"))
        let link = PostgresLink(connection)
        #expect(!link.isClosed)
        try await connection.close()
        let deadline = ContinuousClock.now + .seconds(60)
        while !link.isClosed && ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(10)) }
        #expect(link.isClosed)

        // As the storage waits: on a thread that may block, never the cooperative pool's.
        let answers = try await NIOThreadPool.singleton.runIfActive { () -> [String] in
            var answers: [String] = []
            for _ in 0..<3 {
                do {
                    // A future that never answers: only the close can end the wait.
                    let never = connection.eventLoop.makePromise(of: Int.self)
                    defer { never.succeed(0) }
                    _ = try link.wait(lost: Lost(), never.futureResult)
                    answers.append("answered")
                } catch is Lost {
                    answers.append("lost")
                } catch {
                    answers.append("\(error)")
                }
            }
            return answers
        }
        #expect(answers == ["lost", "lost", "lost"])
    }
}
