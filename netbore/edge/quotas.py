"""
Limits on creating tunnels, against squatting names (issue 10, item 9):
live and held tunnels per account and per anonymous client address, and a
rate of create calls per client address.
"""

from __future__ import annotations

from .._types import Clock
from .apierrors import quota_exceeded, rate_limited
from .config import EdgeConfig
from .ratelimit import AuthFailureLimiter
from .registry import IRegistry

__all__ = ["CreateLimits"]


class CreateLimits:
    """
    The control API's checks before it creates a tunnel; each raises the
    L{netbore.edge.apierrors.ApiError} to answer with.
    """

    def __init__(self, config: EdgeConfig, registry: IRegistry, clock: Clock) -> None:
        self.config = config
        self.registry = registry
        # The sliding window of failed authentications, counting every
        # create call instead (each costs two signatures).
        self.rate = AuthFailureLimiter(clock, config.creates_per_minute)

    def count_create(self, addr: str) -> None:
        """
        Count one create call from C{addr}, unless it made too many (429).
        """
        retry_after = self.rate.check(addr)
        if retry_after is not None:
            raise rate_limited(retry_after, "tunnel creates")
        self.rate.failed(addr)

    def quota_key(self, owner: str | None, addr: str) -> str:
        """
        What a new tunnel of C{owner} (L{None}: anonymous, from C{addr})
        counts against, once it is sure there is room for it (403).
        """
        if owner is not None:
            key, limit, whose = f"account:{owner}", self.config.max_tunnels_per_account, f"account {owner!r}"
        else:
            key, limit, whose = f"address:{addr}", self.config.max_tunnels_per_address, "your address"
        if self.registry.held_by(key) >= limit:
            raise quota_exceeded(
                f"{whose} already holds {limit} tunnels, the most this edge allows; "
                "delete one or wait for one to be released"
            )
        return key
