import SlurmCommands

SallocWrapper.runAsTool()
