import ToolSupport
import ToolboxCommands

ImageSquash.runAsTool()
