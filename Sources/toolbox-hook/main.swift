import RuntimeCommands

ToolboxHook.runAsTool()
