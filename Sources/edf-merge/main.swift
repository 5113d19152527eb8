import ToolboxCommands

EDFMerge.runAsTool()
