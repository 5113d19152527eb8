import RuntimeCommands
import ToolSupport

HookRun.runAsTool()
