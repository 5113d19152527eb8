import ToolSupport
import ToolboxCommands

EDFExpand.runAsTool()
