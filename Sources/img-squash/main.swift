import ToolboxCommands

ImageSquash.runAsTool()
