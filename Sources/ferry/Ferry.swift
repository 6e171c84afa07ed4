import ArgumentParser
import FerryServer

@main
struct Ferry: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ferry",
        abstract: "Keep data consistent between a source and a target: a Kinto-compatible server and a sync engine.",
        discussion: """
            Start with `ferry init` (a commented ferry.yml), `ferry serve` (the server) or \
            `ferry sync SOURCE TARGET` (one copy). `ferry help COMMAND` tells more about each.
            Shell completions: `ferry --generate-completion-script bash|zsh|fish`.
            """,
        version: "ferry \(FerryVersion.description)",
        subcommands: [InitCommand.self, Serve.self, Sync.self, VerifyCommand.self, RunCommand.self, StatusCommand.self, ConflictsCommand.self,
                      ListenCommand.self, TokenCommand.self]
    )
}
