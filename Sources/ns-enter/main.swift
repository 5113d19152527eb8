import RuntimeCommands

NamespaceEnter.runQuickly()
