import ArgumentParser

@main
struct Ferry: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ferry",
        abstract: "Keep data consistent between a source and a target over a Kinto-compatible HTTP API.",
        subcommands: [Serve.self, Sync.self, VerifyCommand.self, RunCommand.self, StatusCommand.self, ListenCommand.self, TokenCommand.self]
    )
}
