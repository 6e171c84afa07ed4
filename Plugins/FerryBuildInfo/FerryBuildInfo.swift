import Foundation
import PackagePlugin

/// Records the git commit a build is made from: before every build of the target it is applied
/// to, writes `FerryBuildInfo.swift` with `FerryBuildInfo.commit` (`git rev-parse --short=12
/// HEAD`, `-dirty` when tracked files differ from it, `unknown` outside a git checkout or without
/// git). The file is rewritten only when its text changes, so an unchanged commit recompiles nothing.
///
/// A prebuild command, because a build command runs only when its declared inputs change and
/// the commit is not a file SwiftPM can watch. It runs `/bin/sh` and `git`, tools of the system.
@main
struct FerryBuildInfo: BuildToolPlugin {
    func createBuildCommands(context: PluginContext, target: any Target) throws -> [Command] {
        let output = context.pluginWorkDirectoryURL.appending(path: "Generated")
        let script = #"""
            set -e
            package="$1"; out="$2"
            mkdir -p "$out"
            commit=$(git -C "$package" rev-parse --short=12 HEAD 2>/dev/null) || commit=unknown
            if [ "$commit" != unknown ] && ! git -C "$package" --no-optional-locks diff --quiet HEAD -- 2>/dev/null; then
              commit="$commit-dirty"
            fi
            text="// Generated before each build by the FerryBuildInfo plugin (Plugins/FerryBuildInfo): do not edit.
            enum FerryBuildInfo {
                /// The git commit this build was made from (-dirty: with uncommitted changes), or unknown.
                static let commit = \"$commit\"
            }"
            file="$out/FerryBuildInfo.swift"
            if [ ! -f "$file" ] || [ "$(cat "$file")" != "$text" ]; then
              printf '%s\n' "$text" > "$file.tmp" && mv "$file.tmp" "$file"
            fi
            """#
        return [
            .prebuildCommand(
                displayName: "Recording the git commit of the build",
                executable: URL(filePath: "/bin/sh"),
                arguments: ["-c", script, "ferry-build-info", context.package.directoryURL.path(percentEncoded: false), output.path(percentEncoded: false)],
                environment: ["PATH": ProcessInfo.processInfo.environment["PATH"] ?? "/usr/local/bin:/usr/bin:/bin"],
                outputFilesDirectory: output
            ),
        ]
    }
}
