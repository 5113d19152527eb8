import ToolboxCommands

EDFExpand.runAsTool()
