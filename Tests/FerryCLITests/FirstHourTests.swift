import FerryCore
import FerryServer
import FerrySync
import FerryTestSupport
import Foundation
import Testing
@testable import ferry

/// What a new user runs in the first hour: `ferry init`, `--version`, completions, `--help`,
/// the version in `ferry serve`'s first log line. Real processes in temporary folders.
@Suite struct FirstHourTests {
    // MARK: ferry init

    @Test func initWritesACommentedFileThatServeAndRunAccept() async throws {
        let dir = try TempDir()
        let result = try await FerryTestSupport.Ferry.run(["init"], in: dir.path)
        #expect(result.status == 0, "\(result.stderr)")
        #expect(result.stdout.contains("wrote ferry.yml"))
        let text = try String(contentsOfFile: dir.file("ferry.yml"), encoding: .utf8)
        #expect(text == InitCommand.template)
        #expect(text.split(separator: "\n").filter { $0.trimmingCharacters(in: .whitespaces).hasPrefix("#") }.count >= 10, "commented")

        // The parsers `ferry serve --config` and `ferry run` use.
        var configuration = ServerConfiguration()
        try configuration.applyYAML(text, file: "ferry.yml")
        #expect(configuration.port == 8888 && configuration.host == "127.0.0.1" && configuration.dataDirectory == "./ferry-data")
        let jobs = try JobsFile.parse(text, file: "ferry.yml", environment: [:])
        #expect(jobs.map { $0.job.name } == ["users-backup"])
        #expect(jobs[0].job.mode == .incremental && jobs[0].job.target == "sqlite:backup.db#users")
        #expect(try JobTrigger.parse(jobs[0].schedule) != .once)

        // And the commands themselves: `ferry run` loads the file (and names its job)...
        let run = try await FerryTestSupport.Ferry.run(["run", "ferry.yml", "--job", "nope"], in: dir.path)
        #expect(run.status == 2 && run.stderr.contains("no job named nope (jobs: users-backup)"), "\(run.stderr)")
        // ...and `ferry serve --config` starts with it; its first log line names the build.
        let serve = Process()
        serve.executableURL = URL(fileURLWithPath: FerryTestSupport.Ferry.binary)
        serve.currentDirectoryURL = URL(fileURLWithPath: dir.path)
        serve.arguments = ["serve", "--config", "ferry.yml", "--port", "0"]
        let log = LockedData()
        _ = try launch(serve, output: Pipe(), port: #"127\.0\.0\.1:(\d+)/v1/"#, what: "ferry serve --config ferry.yml", log: log)
        serve.stop()
        let first = log.text.split(separator: "\n").first.map(String.init) ?? ""
        #expect(first.contains("ferry serve \(FerryVersion.current) (commit \(FerryVersion.commit)) starting"), "\(first)")
        #expect(FileManager.default.fileExists(atPath: dir.file("ferry-data")), "the data folder of the file's server: section")
    }

    @Test func initIntoAFolderWritesFerryYmlThere() async throws {
        let dir = try TempDir()
        try FileManager.default.createDirectory(atPath: dir.file("config"), withIntermediateDirectories: false)
        let result = try await FerryTestSupport.Ferry.run(["init", "config"], in: dir.path)
        #expect(result.status == 0, "\(result.stderr)")
        #expect(FileManager.default.fileExists(atPath: dir.file("config/ferry.yml")))
        let named = try await FerryTestSupport.Ferry.run(["init", "prod.yml"], in: dir.path)
        #expect(named.status == 0 && FileManager.default.fileExists(atPath: dir.file("prod.yml")), "\(named.stderr)")
    }

    @Test func initNeverOverwrites() async throws {
        let dir = try TempDir()
        let mine = "server:\n  port: 9999\n"
        try mine.write(toFile: dir.file("ferry.yml"), atomically: true, encoding: .utf8)
        for arguments in [["init"], ["init", "."], ["init", "ferry.yml"]] {
            let result = try await FerryTestSupport.Ferry.run(arguments, in: dir.path)
            #expect(result.status == 2, "\(arguments)")
            #expect(result.stderr == "ferry: error: \(arguments.count == 1 ? "ferry.yml" : arguments[1] == "." ? "./ferry.yml" : "ferry.yml") already exists: nothing written (remove it, or give another path)\n", "\(result.stderr)")
            #expect(result.stdout.isEmpty)
            #expect(try String(contentsOfFile: dir.file("ferry.yml"), encoding: .utf8) == mine)
        }
    }

    @Test func initRefusesAPlaceItCannotWrite() async throws {
        let dir = try TempDir()
        try "x".write(toFile: dir.file("plain"), atomically: true, encoding: .utf8)
        var cases: [(String, String)] = [
            ("no/such/folder/ferry.yml", "cannot write no/such/folder/ferry.yml: the folder no/such/folder does not exist"),
            ("plain/ferry.yml", "cannot write plain/ferry.yml: plain is not a folder"),
        ]
        if geteuid() != 0 {
            try FileManager.default.createDirectory(atPath: dir.file("locked"), withIntermediateDirectories: false)
            chmod(dir.file("locked"), 0o555)
            cases.append(("locked/ferry.yml", "cannot write locked/ferry.yml: the folder locked is not writable: Permission denied"))
        } else if FileManager.default.fileExists(atPath: "/sys/kernel") {
            // root writes anywhere it may; sysfs refuses new files even to root.
            cases.append(("/sys/ferry.yml", "cannot write /sys/ferry.yml: the folder /sys is not writable: Permission denied"))
        }
        for (path, message) in cases {
            let result = try await FerryTestSupport.Ferry.run(["init", path], in: dir.path)
            #expect(result.status == 2 && result.stderr == "ferry: error: \(message)\n", "\(path): \(result.stderr)")
            #expect(!FileManager.default.fileExists(atPath: path.hasPrefix("/") ? path : dir.file(path)))
        }
    }

    // MARK: --version, completions, help

    @Test func versionNamesTheReleaseAndTheCommit() async throws {
        let dir = try TempDir()
        let result = try await FerryTestSupport.Ferry.run(["--version"], in: dir.path)
        #expect(result.status == 0, "\(result.stderr)")
        let line = result.stdout.trimmingCharacters(in: .newlines)
        let match = line.wholeMatch(of: #/ferry (\d+\.\d+\.\d+) \(commit ([0-9a-f]{12}(?:-dirty)?|unknown)\)/#)
        #expect(match?.output.1 == Substring(FerryVersion.current), "\(line)")
        // Built from this checkout: the commit is one of its commits.
        let package = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path
        if let commit = match?.output.2, let git = try? await Self.git(["-C", package, "rev-parse", "--git-dir"]), git.status == 0 {
            #expect(commit != "unknown", "built from a git checkout, the commit should be known")
            let hash = commit.split(separator: "-")[0]
            #expect(try await Self.git(["-C", package, "cat-file", "-e", "\(hash)^{commit}"]).status == 0, "\(commit) is no commit of \(package)")
        }
    }

    static func git(_ arguments: [String]) async throws -> Spawn.Result {
        try await Spawn.detached("/usr/bin/env", ["git"] + arguments)
    }

    @Test(arguments: [("bash", "complete -o filenames -F _ferry ferry"), ("zsh", "#compdef ferry"), ("fish", "complete -c 'ferry'")])
    func completionScripts(shell: String, marker: String) async throws {
        let dir = try TempDir()
        let result = try await FerryTestSupport.Ferry.run(["--generate-completion-script", shell], in: dir.path)
        #expect(result.status == 0, "\(result.stderr)")
        #expect(result.stdout.contains(marker), "\(result.stdout.prefix(300))")
        for command in ["init", "serve", "sync", "verify", "run", "status", "listen", "token"] {
            #expect(result.stdout.contains(command), "\(shell): no \(command)")
        }
    }

    @Test func anUnknownCompletionShellIsAnError() async throws {
        let dir = try TempDir()
        let result = try await FerryTestSupport.Ferry.run(["--generate-completion-script", "tcsh"], in: dir.path)
        #expect(result.status != 0)
        #expect(result.stderr.contains("tcsh"), "\(result.stderr)")
        #expect(result.stdout.isEmpty)
    }

    static let commands = ["init", "serve", "sync", "verify", "run", "status", "listen", "token"]

    /// A default said twice ("(default full). (default: full)") or in two styles reads as a slip.
    @Test func helpSaysEachDefaultOnceAndOneWay() async throws {
        let dir = try TempDir()
        for command in [[]] + Self.commands.map({ [$0] }) {
            let result = try await FerryTestSupport.Ferry.run(command + ["--help"], in: dir.path)
            #expect(result.status == 0, "\(command): \(result.stderr)")
            let help = result.stdout
            #expect(help.firstMatch(of: #/\(default[^)]*\)\.?\s*\(default/#) == nil, "\(command): \(help)")
            #expect(help.firstMatch(of: #/\(default [^:]/#) == nil, "\(command): write (default: X)\n\(help)")
        }
        let overview = try await FerryTestSupport.Ferry.run(["--help"], in: dir.path).stdout
        #expect(overview.contains("PostgreSQL"), "serve's one-line description names both stores: \(overview)")
        #expect(overview.contains("init"))
    }

    @Test func listSettingsNamesEverySetting() async throws {
        let dir = try TempDir()
        let result = try await FerryTestSupport.Ferry.run(["serve", "--list-settings"], in: dir.path)
        #expect(result.status == 0, "\(result.stderr)")
        #expect(!FileManager.default.fileExists(atPath: dir.file("ferry-data")), "listing settings starts no server")
        for setting in ServerConfiguration.settings {
            #expect(result.stdout.contains("| `\(setting.name)` | `\(setting.environment)` |"), "\(setting.name)")
            #expect(!setting.summary.isEmpty)
        }
        #expect(result.stdout.contains("| `port` | `FERRY_PORT` | `--port` | `8888` |"))
        #expect(result.stdout.contains("| `secret` | `FERRY_SECRET` |  | none |"))
    }
}
