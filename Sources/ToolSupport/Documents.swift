import FoundationEssentials
import ToolboxCore
import ToolboxModel

extension EnvironmentDocument {
    /// The document in `text` (JSON), decoded and checked (`problems`), for a stage that reads
    /// one; `source` names it in messages, `previous` says what writes such documents.
    public static func read(_ text: String, source: String, previous: String) throws(Diagnostic) -> EnvironmentDocument {
        let document: EnvironmentDocument
        do {
            document = try JSONDecoder().decode(EnvironmentDocument.self, from: Data(text.utf8))
        } catch {
            throw Diagnostic(
                kind: .syntax, file: source, message: "not an environment document: \(describeDecodingError(error))",
                hint: "give the JSON that \(previous) writes")
        }
        if let problem = document.problems.first {
            throw Diagnostic(
                kind: .invalid, file: source, key: problem.key, message: problem.message,
                hint: "give the JSON that \(previous) writes, unchanged")
        }
        return document
    }

    /// The document a container is made from: an environment document, or what img-squash
    /// prints without one (img-pull's output with `squash` added, or the squash result alone, as
    /// for layer files and in the image's `FILE.json`): then the container is the image alone,
    /// with the EDF's defaults.
    public static func readForContainer(_ text: String, source: String, previous: String) throws(Diagnostic) -> EnvironmentDocument {
        let data = Data(text.utf8)
        if let keys = try? JSONDecoder().decode(TopLevelKeys.self, from: data), !keys.names.contains("schemaVersion") {
            let nested = keys.names.contains("squash")
            if nested || (keys.names.contains("path") && keys.names.contains("blockSize")) {
                let squash: SquashResult
                do {
                    squash = nested ? try JSONDecoder().decode(Nested.self, from: data).squash : try JSONDecoder().decode(SquashResult.self, from: data)
                } catch {
                    throw Diagnostic(
                        kind: .syntax, file: source,
                        message: "not img-squash's result: \(describeDecodingError(error))",
                        hint: "give the JSON that \(previous) writes, unchanged")
                }
                var document = EnvironmentDocument(image: .local(path: squash.path))
                document.squash = squash
                return document
            }
        }
        return try read(text, source: source, previous: previous)
    }

    private struct Nested: Decodable {
        var squash: SquashResult
    }

    /// The names of a JSON object's keys.
    private struct TopLevelKeys: Decodable {
        var names: Set<String>

        struct Key: CodingKey {
            var stringValue: String
            var intValue: Int? { nil }
            init(stringValue: String) { self.stringValue = stringValue }
            init?(intValue: Int) { nil }
        }

        init(from decoder: any Decoder) throws {
            names = Set(try decoder.container(keyedBy: Key.self).allKeys.map(\.stringValue))
        }
    }
}
