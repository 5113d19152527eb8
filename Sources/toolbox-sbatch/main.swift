import SlurmCommands

SbatchWrapper.runAsTool()
