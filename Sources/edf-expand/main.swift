import ToolSupport
import EDFCommands

EDFExpand.runAsTool()
