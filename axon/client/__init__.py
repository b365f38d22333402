"""The Python client of an Axon cluster: ``Client`` (axon/client/client.py); ``http`` is its transport."""
from axon.client.client import Client, OutcomeUnknown, WatchCompacted, WatchEvent
from axon.client.http import ClientError

__all__ = ["Client", "ClientError", "OutcomeUnknown", "WatchCompacted", "WatchEvent"]
