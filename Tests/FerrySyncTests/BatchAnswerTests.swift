import FerryCore
import Testing
@testable import FerrySync

/// `BatchSender.answers`: each sub-request's status, and its body only when it failed, read in
/// one pass from a `/batch` answer however its members are ordered; an answer that is not one
/// fails with a protocol error.
@Suite struct BatchAnswerTests {
    func answers(_ text: String) throws -> [String] {
        try BatchSender.answers(HTTPTransport.Response(status: 200, headers: [], body: Array(text.utf8)), "server").map {
            "\($0.status) \($0.body?.serialized() ?? "-")"
        }
    }

    @Test func statusesAndTheBodiesOfFailures() throws {
        let text = """
            { "other": [1, {"responses": 2}], "responses" : [
              {"status": 201, "path": "/a", "body": {"data": {"id": "a"}}, "headers": {"ETag": "\\"1\\""}},
              {"body": {"errno": 114, "message": "Resource was modified \\"meanwhile\\""}, "status": 412},
              {"path": "/c", "status": 200},
              {"status": 400, "body": {"message": "x", "details": [{"a": [null, true]}]}},
              {"path": "/e", "headers": {"status": 500}},
              7
            ], "tail": "}]" }
            """
        #expect(try answers(text) == [
            "201 -",
            #"412 {"errno":114,"message":"Resource was modified \"meanwhile\""}"#,
            "200 -",
            #"400 {"details":[{"a":[null,true]}],"message":"x"}"#,
            "0 -",
            "0 -",
        ])
        #expect(try answers(#"{"responses":[]}"#) == [])
    }

    @Test func whatIsNoBatchAnswerIsAProtocolError() {
        for text in [#"{"responses":{}}"#, #"{"responses":[],"responses":[]}"#, #"{"data":[]}"#, "[]", #"{"responses":[{"status":201}"#,
                     #"{"responses":[{"status":201},]}"#, #"{"responses":[{"status":201}]} x"#, #"{"responses":[{"status" 201}]}"#, ""] {
            #expect(throws: SyncError.self, "\(text)") { try answers(text) }
        }
    }
}
