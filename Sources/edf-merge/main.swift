import ToolSupport
import ToolboxCommands

EDFMerge.runAsTool()
