/// The version of this build: the release it belongs to, and the git commit it was built from.
public enum FerryVersion {
    /// The release version (changed by hand when a release is made).
    public static let current = "0.1.0"
    /// The git commit the binary was built from, written at build time by the `FerryBuildInfo`
    /// plugin (`-dirty` with uncommitted changes; `unknown` when built outside a git checkout).
    public static let commit = FerryBuildInfo.commit
    /// `0.1.0 (commit 1a2b3c4d5e6f)`: what `ferry --version` prints and `ferry serve` logs first.
    public static var description: String { "\(current) (commit \(commit))" }
}
