import ToolSupport
import ToolboxCommands

ImageBuild.runAsTool()
