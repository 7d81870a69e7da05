"""Safety limits of the API, all configurable through the environment.

Depth 12, aliases 30, tokens 5,000, page size 200 (``GUANXI_PAGE_SIZE_MAX``), request body
1 MiB, no batching, no mutation over GET; ``GUANXI_INTROSPECTION=0`` turns off
introspection, the IDE and field suggestions.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    try:
        return int(env.get(name, default))
    except ValueError:
        return default


@dataclass(frozen=True)
class Limits:
    max_depth: int = 12
    max_aliases: int = 30
    max_tokens: int = 5000
    max_body_bytes: int = 1024 * 1024
    introspection: bool = True

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Limits:
        env = os.environ if environ is None else environ
        return cls(
            max_depth=_int(env, "GUANXI_MAX_DEPTH", 12),
            max_aliases=_int(env, "GUANXI_MAX_ALIASES", 30),
            max_tokens=_int(env, "GUANXI_MAX_TOKENS", 5000),
            max_body_bytes=_int(env, "GUANXI_MAX_BODY_BYTES", 1024 * 1024),
            introspection=env.get("GUANXI_INTROSPECTION", "1") not in ("0", "false", "no"),
        )


__all__ = ["Limits"]
