"""The replicated state machine: commands, the LevelDB store, the change feed, and the Raft adapter."""
