import ToolSupport
import ToolboxCommands

ImagePull.runAsTool()
