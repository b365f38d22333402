"""SWIM/Lifeguard gossip membership: a pure protocol core (``protocol``) driven by a gevent agent (``agent``)."""
from __future__ import annotations

from axon.gossip.config import GossipConfig
from axon.gossip.crypto import gossip_key_for
from axon.gossip.errors import CodecError, GossipError, TransportError
from axon.gossip.protocol import Gossip, MemberEvent, Notice, PushPullRequest, SendPacket

__all__ = ["GossipConfig", "GossipError", "CodecError", "TransportError", "Gossip", "MemberEvent", "Notice",
           "PushPullRequest", "SendPacket", "GossipAgent", "gossip_key_for"]


def __getattr__(name: str):
    # the agent pulls in gevent; load it only when asked for
    if name == "GossipAgent":
        from axon.gossip.agent import GossipAgent
        return GossipAgent
    raise AttributeError(name)
