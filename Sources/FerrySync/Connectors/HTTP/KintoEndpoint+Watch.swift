import AsyncHTTPClient
import FerryCore
import Foundation
import NIOCore
import NIOHTTP1

/// `--follow` on a server: its event stream, else its long-poll (`_wait`).
extension KintoEndpoint: ChangeWatching {
    func changeFeeds() async -> [Follower.Watch]? {
        guard let hello = try? await http.send(.GET, root + "/"), hello.status == 200,
              let info = try? JSON.parse(bytes: hello.body) else { return nil }
        var feeds: [Follower.Watch] = []
        if info["capabilities"]?["streams"] != nil { feeds.append(.stream(url: recordsURL)) }
        if info["capabilities"]?["long_poll"] != nil { feeds.append(.longPoll(url: recordsURL)) }
        return feeds
    }

    func watch(_ feed: Follower.Watch, connected: () -> Void, changed: () -> Void) async throws -> String? {
        switch feed {
        case .stream(let url): try await readStream(url, connected: connected, changed: changed)
        case .longPoll(let url): try await longPoll(url, connected: connected, changed: changed)
        case .poll: nil
        }
    }

    /// Reads the event stream until it ends; each change event is a change.
    private func readStream(_ url: String, connected: () -> Void, changed: () -> Void) async throws -> String? {
        let response = try await http.openStream(url, accept: "text/event-stream")
        guard response.status == .ok else {
            return "the event stream answered \(response.status.code)"
        }
        connected()
        var parser = EventStreamParser()
        for try await chunk in response.body {
            let events = try parser.feed(chunk.readableBytesView)
            for event in events {
                if event.name == "error" { return "the server ended the stream: \(event.data.prefix(200))" }
                changed()
            }
        }
        return "the event stream ended"
    }

    /// Long-polls for changes after the collection's current timestamp; each answer with
    /// changes is a change.
    private func longPoll(_ url: String, connected: () -> Void, changed: () -> Void) async throws -> String? {
        var since: String?
        while !Task.isCancelled {
            let query = since.map { "?_since=\($0)&_wait=25&_limit=1" } ?? "?_limit=1"
            let response = try await http.send(.GET, url + query)
            guard response.status == 200 else { return "the long-poll answered \(response.status)" }
            guard let etag = response.header("ETag")?.trimmingCharacters(in: CharacterSet(charactersIn: "\"W/")) else {
                return "the long-poll answer has no ETag"
            }
            if since == nil {
                connected()
            } else if let data = try? JSON.parse(bytes: response.body)["data"]?.arrayValue, !data.isEmpty {
                changed()
            }
            since = etag
        }
        return nil
    }
}

extension KintoEndpoint: RetryingEndpoint, DeletingChangeFeed, ReconcilingEndpoint {}
