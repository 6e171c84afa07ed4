import FerryCore
@testable import FerryServer
import HTTPTypes
import Testing

/// `Prefer: return=minimal` (RFC 7240) on a `/batch`: successes answer without their body, errors
/// keep theirs, and what is stored is what a full answer stores. `ferry sync` sends it, as it reads
/// only each answer's status; a server that ignores it (Kinto) answers in full.
@Suite struct PreferMinimalTests {
    static let records = BulkWriteTests.records

    /// A batch of a new record, the same record again, and one the schema refuses.
    static let batch: JSON = ["requests": [
        ["method": "PUT", "path": .string(records + "/a"), "body": ["data": ["age": 1]]],
        ["method": "PUT", "path": .string(records + "/a"), "body": ["data": ["age": 2]]],
        ["method": "PUT", "path": .string(records + "/b"), "body": ["data": ["age": "two"]]],
    ]]

    /// Each answer of `response`: its status, whether it has a body, and its ETag.
    static func answers(_ response: APIResponse) -> [(status: Int, body: JSON?, etag: String?)] {
        (response.json["responses"]?.arrayValue ?? []).map { answer in
            (Int(answer["status"]?.intValue ?? 0), answer["body"], answer["headers"]?["ETag"]?.stringValue)
        }
    }

    /// On the record-PUT path and on the general one, successes lose their body only when asked,
    /// and both store the same.
    @Test(arguments: [true, false])
    func successesAnswerWithoutTheirBodyWhenAsked(bulk: Bool) async throws {
        var stored: [JSON] = []
        for minimal in [true, false] {
            let run = try BulkWriteTests.Run(bulk: bulk)
            try await run.seed()
            let response = try await run.server.request("POST", "/batch", json: Self.batch,
                                                        headers: minimal ? ["Prefer": "return=minimal"] : [:], through: run.api)
            #expect(response.status == 200)
            let answers = Self.answers(response)
            #expect(answers.map(\.status) == [201, 200, 400])
            #expect(answers.prefix(2).allSatisfy { ($0.body == nil) == minimal && $0.etag != nil }, "\(response.json.serialized())")
            #expect(answers.last?.body?["message"]?.stringValue?.contains("age") == true, "\(response.json.serialized())")
            let applied = response.headers.filter { $0.0 == "Preference-Applied" }.map(\.1)
            #expect(applied == (minimal ? ["return=minimal"] : []))
            stored.append(try await run.request("GET", Self.records + "/a").data)
            #expect(try await run.timestamp("b") == nil)
        }
        #expect(stored[0]["age"] == 2)
        #expect(stored[0] == stored[1])
    }

    /// A sub-request's own `Prefer` is honoured for it alone (its headers take the batch off the
    /// record-PUT path); a read keeps its body, which is what it asked for.
    @Test func aSubRequestsOwnPreferenceIsItsOwn() async throws {
        let run = try BulkWriteTests.Run(bulk: true)
        try await run.seed()
        let response = try await run.request("POST", "/batch", json: ["requests": [
            ["method": "PUT", "path": .string(Self.records + "/a"), "body": ["data": ["age": 1]], "headers": ["Prefer": "return=minimal"]],
            ["method": "PUT", "path": .string(Self.records + "/b"), "body": ["data": ["age": 2]]],
            ["method": "GET", "path": .string(Self.records + "/a"), "headers": ["prefer": "return=minimal"]],
        ]])
        let answers = Self.answers(response)
        #expect(answers.map(\.status) == [201, 201, 200])
        #expect(answers.map { $0.body == nil } == [true, false, false], "\(response.json.serialized())")
        #expect(!response.headers.contains { $0.0 == "Preference-Applied" })
    }

    /// Only `return=minimal` is honoured, however it is written (names and values in any case, a
    /// quoted value, beside other preferences and parameters); anything else is a full answer.
    @Test(arguments: [
        ("return=minimal", true), ("RETURN=Minimal", true), (#"return="minimal""#, true),
        ("respond-async, wait=5, return=minimal; foo=bar", true), (" return = minimal ", true),
        ("return=representation", false), ("return=minimalist", false), ("return", false), ("minimal", false),
        (#"return="minimal"#, false), (",,;;=", false), ("", false), ("return-minimal", false),
    ])
    func onlyReturnMinimalIsHonoured(header: String, honoured: Bool) async throws {
        #expect(APIRequest(method: .post, path: "/batch", headers: ["prefer": header]).prefersMinimal == honoured)
        let run = try BulkWriteTests.Run(bulk: true)
        try await run.seed()
        let response = try await run.server.request("POST", "/batch", json: Self.batch, headers: ["Prefer": header], through: run.api)
        #expect(Self.answers(response).map { $0.body == nil } == [honoured, honoured, false])
        #expect(try await run.request("GET", Self.records + "/a").data["age"] == 2)
    }
}
