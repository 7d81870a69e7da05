"""The Engine: one installation's plugins, entity registry, database and record API.

No module globals: a test can build several engines side by side. Building an Engine
loads plugins and metadata and builds the Pony classes; :meth:`Engine.open` connects the
database and brings its schema up to date (or refuses, naming the differences).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pony.orm import db_session

from .actor import SYSTEM, Actor
from .auth import Auth, AuthEvents
from .config import Config
from .contributions import collect
from .database import DatabaseURL, bind, build_database
from .duplicates import DuplicateMatcher
from .errors import ConfigError, MigrationError
from .idempotency import Idempotency
from .merge import merge_records
from .metadata import EntityRegistry
from .migrations import MigrationPlan, apply_migration, plan_migration
from .permissions import RolePolicy
from .plugins import EntityHooks, PluginInfo, call_with_origin, load_plugins
from .policy import Policy
from .records import Record, Records
from .roles import load_roles
from .workflow_defs import load_workflows, wanted_state_fields
from .workflow_runtime import WorkflowRuntime
from .yamlload import load_yaml

#: Entities every installation has; plugins refer to them by name.
CORE_ENTITIES: tuple[dict[str, Any], ...] = (
    {
        "name": "Team",
        "label": "Team",
        "labels": {"zh": "团队"},
        "natural_key": "name",
        "fields": {
            "name": {
                "type": "string",
                "required": True,
                "unique": True,
                "max_length": 120,
                "labels": {"zh": "名称"},
            },
            "parent": {
                "type": "ref",
                "to": "Team",
                "reverse": "children",
                "labels": {"zh": "上级团队"},
            },
        },
    },
    {
        "name": "User",
        "label": "User",
        "labels": {"zh": "用户"},
        "natural_key": "username",
        "fields": {
            "username": {
                "type": "string",
                "required": True,
                "unique": True,
                "max_length": 150,
                "labels": {"zh": "用户名"},
            },
            "display_name": {"type": "string", "max_length": 150, "labels": {"zh": "显示名"}},
            "email": {"type": "email", "labels": {"zh": "电子邮件"}},
            "roles": {"type": "json", "labels": {"zh": "角色"}},
            "team": {"type": "ref", "to": "Team", "reverse": "users", "labels": {"zh": "团队"}},
            "active": {"type": "bool", "default": True, "labels": {"zh": "启用"}},
            "password_hash": {"type": "string", "internal": True, "max_length": 255},
        },
    },
)
ADMIN_ENTITY_KEYS = frozenset({"entities", "extend"})


def utcnow() -> datetime:
    """Now as naive UTC, the form every datetime is stored in."""
    return datetime.now(UTC).replace(tzinfo=None)


class Engine:
    """One guanxi installation.

    ``plugins`` adds plugin objects beside the installed ones (tests, embedding);
    ``use_entry_points=False`` loads only those. ``clock`` returns naive UTC now.
    """

    def __init__(
        self,
        config: Config | None = None,
        *,
        plugins: Sequence[Any] = (),
        use_entry_points: bool = True,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.config = config or Config.from_env()
        self.pm, self.plugins = load_plugins(
            self.config, extra=plugins, use_entry_points=use_entry_points
        )
        self.hook = self.pm.hook
        #: ``entity_hooks(name, entity)``: a per-record hook's caller for one entity, or None
        self.entity_hooks = EntityHooks(self.pm)
        # The engine's own reaction to user changes (tokens die); not listed in self.plugins.
        self.pm.register(AuthEvents(), name="guanxi.auth")
        found = collect(self.pm)
        #: Roles by name; the engine's own ``admin`` first (plugins may not replace it).
        self.roles = found["role"]
        self.workflow_files = found["workflow_file"]
        self.actions = found["action"]
        self.conditions = found["condition"]
        self.analytics = found["analytics"]
        self.periodic_jobs = found["periodic_job"]
        self.demo_data = found["demo_data"]
        self.registry = self._build_registry()
        self.db, self.classes = build_database(self.registry)
        self.url = DatabaseURL.parse(self.config.db_url, self.config.home)
        self.records = Records(self)
        #: Duplicate keys (查重): declares the guanxi_dedup_key table, so before open().
        self.duplicates = DuplicateMatcher(self)
        self.clock = clock or utcnow
        self.secret = b""
        self.is_open = False
        # Roles and workflow definitions are checked at start-up: a bad file stops it here.
        self.role_defs = load_roles(self.roles, self.config.home / "roles.yaml", self.registry)
        #: Every record read and write passes this (see permissions.py).
        self.policy: Policy = RolePolicy(self)
        loaded = load_workflows(self)
        self.workflows = loaded.workflows
        self.workflow_notices = loaded.notices
        self.runtime = WorkflowRuntime(self, self.workflows)
        self.auth = Auth(self)
        self.idempotency = Idempotency(self)

    def now(self) -> datetime:
        return self.clock()

    def plugin(self, name: str) -> PluginInfo | None:
        return next((p for p in self.plugins if p.name == name), None)

    def merge(
        self, entity: str, survivor_id: Any, other_ids: Sequence[Any], *, actor: Actor = SYSTEM
    ) -> Record:
        """Merge duplicate records into ``survivor_id`` in one transaction (merge.py)."""
        return merge_records(self, entity, survivor_id, other_ids, actor)

    # -- metadata -------------------------------------------------------------------------
    def _build_registry(self) -> EntityRegistry:
        registry = EntityRegistry()
        for description in CORE_ENTITIES:
            registry.declare(description, "engine")
        call_with_origin(
            self.pm,
            "register_entities",
            lambda plugin: lambda description: registry.declare(description, f"plugin {plugin}"),
        )
        call_with_origin(
            self.pm,
            "extend_entities",
            lambda plugin: (
                lambda entity, fields: registry.extend(entity, fields, f"plugin {plugin}")
            ),
            argument="extend",
        )
        for path in self.admin_files("entities"):
            self._declare_admin_file(registry, path)
        # A workflow may bind a state field its entity does not declare: add it as an enum
        # of the workflow's states.
        for wanted in wanted_state_fields(self):
            if registry.declares(wanted.entity) and not registry.declares(
                wanted.entity, wanted.field
            ):
                registry.extend(
                    wanted.entity,
                    {
                        wanted.field: {
                            "type": "enum",
                            "label": "State",
                            "labels": {"zh": "状态"},
                            "indexed": True,
                            "choices": [{"value": k, **v} for k, v in wanted.states.items()],
                        }
                    },
                    wanted.where,
                )
        return registry.finalize()

    def admin_files(self, folder: str) -> list[Path]:
        """The admin's ``$GUANXI_HOME/<folder>/*.yaml`` files, in name order."""
        base = self.config.home / folder
        return sorted([*base.glob("*.yaml"), *base.glob("*.yml")]) if base.is_dir() else []

    def _declare_admin_file(self, registry: EntityRegistry, path: Path) -> None:
        data = load_yaml(path)
        if data is None:
            return
        if not isinstance(data, dict):
            raise ConfigError(
                "an entities file must be a mapping with `entities:` and/or `extend:`",
                where=f"{path}:1",
            )
        for key in data:
            if key not in ADMIN_ENTITY_KEYS:
                line = getattr(data, "key_lines", {}).get(key, 1)
                raise ConfigError(
                    f"unknown key {key!r}; use `entities:` and `extend:`", where=f"{path}:{line}"
                )
        entities = data.get("entities") or []
        if not isinstance(entities, list):
            raise ConfigError(
                "`entities:` must be a list", where=f"{path}:{data.key_lines['entities']}"
            )
        for description in entities:
            registry.declare(description, str(path))
        extend = data.get("extend") or {}
        if not isinstance(extend, dict):
            raise ConfigError(
                "`extend:` must map entity names to fields",
                where=f"{path}:{data.key_lines['extend']}",
            )
        for entity, fields in extend.items():
            registry.extend(entity, fields, f"{path}:{extend.key_lines.get(entity, 1)}")

    # -- database -------------------------------------------------------------------------
    def open(self, *, migrate: bool = False) -> MigrationPlan:
        """Connect and map the database; return the migration plan that was applied.

        A fresh database is always created. On an existing one, pending additive changes
        are applied only with ``migrate=True`` (``guanxi migrate``/``init``); otherwise
        they stop start-up with a MigrationError naming each. Destructive differences
        always stop it, changing nothing.
        """
        if self.is_open:
            raise RuntimeError("the engine is already open")
        bind(self.db, self.url)
        self.db.generate_mapping(create_tables=False, check_tables=False)
        plan = plan_migration(self.db, self.registry)
        if plan.refused:
            raise MigrationError(
                "the database schema differs from the entity descriptions in ways guanxi "
                "will not change; nothing was changed:\n  " + "\n  ".join(plan.refused),
                differences=list(plan.refused),
            )
        if plan.pending and not (migrate or plan.fresh):
            raise MigrationError(
                "the database needs migrating before guanxi can start; run `guanxi migrate`:\n  "
                + "\n  ".join(c.description for c in plan.changes),
                differences=[c.description for c in plan.changes],
            )
        if plan.pending:
            plan = apply_migration(self.db, self.registry)
        self.is_open = True
        self.secret = self._installation_secret()
        try:
            self.state_changes = self.runtime.reconcile_states()
        except ConfigError:
            self.close()
            raise
        # index existing records of entities whose duplicate keys are new or changed
        self.duplicates.sync()
        return plan

    def pending_migration(self) -> MigrationPlan:
        """What ``guanxi migrate`` would do, without doing it (the engine must not be open)."""
        bind(self.db, self.url)
        self.db.generate_mapping(create_tables=False, check_tables=False)
        return plan_migration(self.db, self.registry)

    def _installation_secret(self) -> bytes:
        """The per-installation key that signs cursors and download links."""
        setting = self.classes["GxSetting"]
        with db_session:
            row = setting.get(key="secret")
            if row is None:
                row = setting(key="secret", value=secrets.token_hex(32))
            return bytes.fromhex(row.value)

    def close(self) -> None:
        """Release the database connections of this engine."""
        if self.db.provider is not None:
            self.db.disconnect()
            self.db.provider.disconnect()
        self.is_open = False
