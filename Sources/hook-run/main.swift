import RuntimeCommands

HookRun.runByName()
