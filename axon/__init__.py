"""Axon: a fault-tolerant, strongly consistent distributed key-value store."""
__version__ = "0.1.0"
