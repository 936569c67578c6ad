"""The batch engine: every command that walks inputs and writes outputs runs through it."""
