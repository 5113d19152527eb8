import FoundationEssentials
import Glibc
import Runtime
import ToolSupport
import ToolboxCore
import ToolboxModel

/// The submitting side's pipeline, shared by toolbox-srun and toolbox-sbatch: edf-expand ENV |
/// img-pull | img-build | img-squash, each a command of its own, the document passed along on
/// stdin and stdout. img-build runs only for an environment with a containerfile.
enum Stages {
    typealias Stage = (String, [String])

    /// The stages for the environment `name`; `pullHere` false leaves pulling to the nodes
    /// (edf-expand alone). `build`: img-build, inserted before img-squash when needed.
    static func list(environment name: String, quiet: Bool, pullHere: Bool) -> (stages: [Stage], build: Stage) {
        let flags = quiet ? ["-q"] : []
        var stages: [Stage] = [("edf-expand", [tool("edf-expand"), name])]
        if pullHere {
            stages.append(("img-pull", [tool("img-pull")] + flags))
            stages.append(("img-squash", [tool("img-squash")] + flags))
        }
        return (stages, ("img-build", [tool("img-build")] + flags))
    }

    /// The stages as a shell pipeline (for --dry-run), img-build included where it may run.
    static func shellText(_ stages: [Stage], build: Stage) -> String {
        var all = stages
        if let squash = all.firstIndex(where: { $0.0 == "img-squash" }) { all.insert(build, at: squash) }
        return all.map { $0.1.map(\.shellQuoted).joined(separator: " ") }.joined(separator: " | ")
    }

    /// Runs the stages, each with the previous one's output on stdin. A stage that fails has
    /// said why on stderr; `tool` adds which stage it was and that `what` was not started, and
    /// exits with the stage's status. Returns the document and each stage's time.
    static func run(
        _ given: [Stage], build: Stage, tool: String, what: String, environment: [String: String]
    ) throws(Diagnostic) -> (document: [UInt8], timings: [String]) {
        var stages = given
        var document: [UInt8] = []
        var timings: [String] = []
        var index = 0
        while index < stages.count {
            let (name, command) = stages[index]
            index += 1
            let started = Date()
            let result = ChildProcess.run(command, input: document, environment: environment)
            timings.append("\(name) \(Int(Date().timeIntervalSince(started) * 1000)) ms")
            if let failure = result.failure {
                throw Diagnostic(
                    kind: result.status == -1 && failure.contains("No such file") ? .commandNotFound : .system,
                    message: "cannot run \(command[0]): \(failure)", hint: "install the toolbox's commands beside \(tool), or on PATH")
            }
            guard result.status == 0 else {
                StandardStreams.writeError("\(tool): error: the \(name) stage failed (exit status \(result.status)); \(what) was not started\n")
                Glibc.exit(result.status)
            }
            document = result.output
            if name == "edf-expand", let rendered = try? JSONDecoder().decode(EnvironmentDocument.self, from: Data(document)) {
                if rendered.image == nil {
                    // No image, no container: nothing to pull, build or squash.
                    break
                } else if rendered.containerfile != nil, let squash = stages.firstIndex(where: { $0.0 == "img-squash" }) {
                    // A Containerfile: built on the pulled image, before img-squash.
                    stages.insert(build, at: squash)
                } else if case .local(let path)? = rendered.image {
                    // A squashfs file named by the EDF: img-pull and img-squash would pass it
                    // through. Checked here, so that a wrong file stops the job before it starts.
                    System.close(try PreparedImage.checkImage(path, what: "image", source: nil))
                    break
                }
            }
        }
        while document.last == 10 { document.removeLast() }
        // The document reaches the tasks in one environment variable, and Linux takes at most
        // 128 KiB for one (NAME=VALUE): refused here, not by exec on the nodes.
        let limit = 128 << 10
        if document.count + SrunWrapper.documentVariable.utf8.count + 2 > limit {
            throw Diagnostic(
                kind: .invalid,
                message: "the rendered environment is \((document.count + 1023) >> 10) KiB; it reaches the tasks in one variable, which Linux limits to 128 KiB",
                hint: "make the EDF's [env] smaller: long values can live in a file that a mount brings into the container")
        }
        return (document, timings)
    }

    /// A toolbox command: beside this one, else on PATH.
    static func tool(_ name: String) -> String {
        if let sibling = FileReader.sibling(name) { return sibling }
        for entry in (ProcessContext.current().environment["PATH"] ?? "").split(separator: ":") where access(entry + "/" + name, X_OK) == 0 {
            return entry + "/" + name
        }
        return name
    }
}
