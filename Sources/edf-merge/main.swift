import ToolSupport
import EDFCommands

EDFMerge.runAsTool()
