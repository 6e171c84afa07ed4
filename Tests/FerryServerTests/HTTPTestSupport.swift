import FerryCore
@testable import FerryServer
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Logging
import NIOCore

extension TestServer {
    /// This server's Hummingbird application (`FerryResponder` with its configuration), for
    /// `application.test(.router)`.
    var application: Application<FerryResponder> {
        var logger = Logger(label: "ferry.test")
        logger.logLevel = .critical
        return try! FerryServerApp.makeApplication(configuration, parts: parts, logger: logger)
    }
}

/// What HTTP-level tests build and read.
enum Wire {
    /// Header fields by name, for headers `HTTPField.Name` has no constant for.
    static func fields(_ pairs: [String: String]) -> HTTPFields {
        var fields = HTTPFields()
        for (name, value) in pairs { fields.append(HTTPField(name: HTTPField.Name(name)!, value: value)) }
        return fields
    }

    /// A body as JSON (`.null` when it is none).
    static func json(_ response: TestResponse) -> JSON {
        (try? JSON.parse(bytes: Array(response.body.readableBytesView))) ?? .null
    }

    static func json(_ response: TestClient.Response) -> JSON {
        response.body.flatMap { try? JSON.parse(bytes: Array($0.readableBytesView)) } ?? .null
    }
}
