import Foundation

/// Whether `condition` holds within `seconds`, polled every 10 ms (timing on a shared machine
/// varies, so a test waits long and returns as soon as it can).
public func eventually(within seconds: Double = 60, _ condition: () -> Bool) async -> Bool {
    let end = Date().addingTimeInterval(seconds)
    while Date() < end {
        if condition() { return true }
        try? await Task.sleep(for: .milliseconds(10))
    }
    return condition()
}
