import FerryCore
import NIOHTTP1

extension KintoEndpoint {
    /// Sends one reconciliation message to the collection's `/reconcile` and returns the server's.
    func reconcile(_ message: [UInt8]) async throws -> [UInt8] {
        let response = try await http.send(.POST, root + collectionPath + "/reconcile", body: message,
                                           headers: [("Content-Type", ReconcileMessage.mediaType)], accept: ReconcileMessage.mediaType)
        guard response.status == 200 else { throw failure(response, "reconciling with the server") }
        return response.body
    }
}
