import SlurmCommands

SrunWrapper.runAsTool()
