import ToolboxCommands

ImagePull.runAsTool()
