"""Configuration of one guanxi installation, read from the environment.

Every setting has a ``GUANXI_*`` variable and a sensible default so a fresh machine runs
on an embedded SQLite file in the working directory.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from .errors import ConfigError

DEFAULT_DB_FILE = "guanxi.db"
#: The variables the engine and the GraphQL layer read themselves; every other GUANXI_*
#: one is a plugin setting.
OWN = frozenset(
    {
        "GUANXI_HOME",
        "GUANXI_DATABASE_URL",
        "GUANXI_PLUGINS",
        "GUANXI_TIMEZONE",
        "GUANXI_CURRENCY",
        "GUANXI_PAGE_SIZE_MAX",
        "GUANXI_SQLITE_SYNC",
        "GUANXI_SERVE_WORKER",
        "GUANXI_INTROSPECTION",
        "GUANXI_MAX_ALIASES",
        "GUANXI_MAX_BODY_BYTES",
        "GUANXI_MAX_DEPTH",
        "GUANXI_MAX_TOKENS",
    }
)


def _positive(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None:
        return default
    if not raw.isdigit() or int(raw) <= 0:
        raise ConfigError(f"{name} {raw!r} must be a positive whole number")
    return int(raw)


@dataclass(frozen=True)
class Config:
    """Settings of one Engine; build with :meth:`from_env` or directly in tests."""

    home: Path = field(default_factory=Path.cwd)
    database_url: str | None = None
    #: Business plugins to load (None = all installed). Core plugins always load.
    plugins: tuple[str, ...] | None = None
    timezone: str = "UTC"
    currency: str = "CNY"
    page_size_default: int = 50
    page_size_max: int = 200
    #: Plugin settings: every ``GUANXI_<PLUGIN>_<NAME>`` variable the engine itself does not
    #: read, by variable name (``GUANXI_SALES_CLAIM_CAP``); plugins read them with
    #: :meth:`setting`. Tests pass ``settings={...}``.
    settings: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: object) -> Config:
        env = os.environ if environ is None else environ
        plugins = env.get("GUANXI_PLUGINS")
        config = cls(
            home=Path(env.get("GUANXI_HOME") or Path.cwd()).resolve(),
            database_url=env.get("GUANXI_DATABASE_URL") or None,
            plugins=tuple(p.strip() for p in plugins.split(",") if p.strip())
            if plugins is not None
            else None,
            timezone=env.get("GUANXI_TIMEZONE", "UTC"),
            currency=env.get("GUANXI_CURRENCY", "CNY").upper(),
            page_size_max=_positive(env, "GUANXI_PAGE_SIZE_MAX", 200),
            settings={k: v for k, v in env.items() if k.startswith("GUANXI_") and k not in OWN},
        )
        return replace(config, **overrides) if overrides else config.checked()

    def checked(self) -> Config:
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ConfigError(
                f"GUANXI_TIMEZONE {self.timezone!r} is not a known time zone"
            ) from exc
        if len(self.currency) != 3 or not self.currency.isalpha():
            raise ConfigError(f"GUANXI_CURRENCY {self.currency!r} is not an ISO 4217 code")
        return self

    def setting(self, name: str, default: int) -> int:
        """A plugin's whole-number setting ``name`` (``GUANXI_SALES_CLAIM_CAP``), or
        ``default`` when it is not set; anything but a whole number >= 0 is a ConfigError
        naming the variable."""
        raw = self.settings.get(name)
        if raw is None or str(raw).strip() == "":
            return default
        text = str(raw).strip()
        if not text.isdigit():
            raise ConfigError(f"{name} {raw!r} must be a whole number (0 or more)")
        return int(text)

    @property
    def db_url(self) -> str:
        """The database URL, defaulting to ``guanxi.db`` in the home folder."""
        return self.database_url or f"sqlite:///{self.home / DEFAULT_DB_FILE}"

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)
