import RuntimeCommands
import ToolSupport

NamespaceEnter.runAsTool()
