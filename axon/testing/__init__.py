"""Test support: simulation, history recording and linearizability checking."""
