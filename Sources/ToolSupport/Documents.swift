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
}
