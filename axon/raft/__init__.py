"""Axon's Raft: pure core, WAL, transport and the gevent driver."""
