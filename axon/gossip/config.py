"""GossipConfig: every tunable of the SWIM/Lifeguard protocol, defaults as memberlist's LAN profile."""
from __future__ import annotations

from dataclasses import dataclass, fields

from axon.gossip.errors import GossipError


@dataclass(frozen=True)
class GossipConfig:
    probe_interval: float = 1.0            # seconds between failure-detection probes
    probe_timeout: float = 0.5             # wait for a direct ack before asking others (ping-req)
    indirect_checks: int = 3               # members asked to probe indirectly
    suspicion_mult: int = 4                # suspicion timeout = mult * log10(N) * probe_interval
    suspicion_max_timeout_mult: int = 6    # upper bound of the timeout, as a multiple of the minimum
    awareness_max_multiplier: int = 8      # local health stretches timeouts up to this factor
    retransmit_mult: int = 4               # each broadcast is sent mult * ceil(log10(N+1)) times
    gossip_interval: float = 0.2
    gossip_nodes: int = 3                  # fanout of each gossip round
    gossip_to_the_dead_time: float = 30.0  # keep gossiping to a dead member this long (lets it refute)
    push_pull_interval: float = 30.0       # full-state sync with one random member (TCP)
    reconnect_interval: float = 30.0       # push-pull with one random dead member, heals partitions
    dead_retention: float = 3600.0         # dead/left members are reported this long, then forgotten
    packet_size: int = 1400                # UDP packet budget, headers and encryption included
    max_stream_size: int = 4 * 1024 * 1024
    stream_timeout: float = 10.0           # TCP push-pull connect/read/write timeout
    join_backoff_max: float = 30.0         # cap of join_in_background's retry delay
    meta_max_size: int = 512               # encoded metadata bytes
    replay_window: float = 30.0            # accept packets stamped within this many seconds of our clock
    replay_memory: int = 16384             # packet ids remembered against replays (bounded; see replay.py)

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                raise GossipError(f"GossipConfig.{f.name} must be a positive number, got {value!r}")
        if self.probe_timeout > self.probe_interval:
            raise GossipError("probe_timeout must not exceed probe_interval")
        if self.suspicion_mult < 1 or self.suspicion_max_timeout_mult < 1 or self.awareness_max_multiplier < 1:
            raise GossipError("multipliers must be >= 1")
        if self.packet_size < 512:
            raise GossipError("packet_size must be at least 512 bytes")
        if self.meta_max_size > self.packet_size // 2:
            raise GossipError("meta_max_size must be at most half of packet_size")
        for name in ("indirect_checks", "suspicion_mult", "suspicion_max_timeout_mult", "awareness_max_multiplier",
                     "retransmit_mult", "gossip_nodes", "packet_size", "max_stream_size", "meta_max_size",
                     "replay_memory"):
            if not isinstance(getattr(self, name), int):
                raise GossipError(f"GossipConfig.{name} must be an int")

    @classmethod
    def lan(cls) -> "GossipConfig":
        return cls()

    @classmethod
    def local(cls) -> "GossipConfig":
        """Faster detection for a single machine or a tiny LAN (like memberlist's local profile)."""
        return cls(probe_interval=1.0, probe_timeout=0.2, gossip_interval=0.1, suspicion_mult=3,
                   push_pull_interval=15.0, stream_timeout=1.0, gossip_to_the_dead_time=15.0,
                   reconnect_interval=15.0)
