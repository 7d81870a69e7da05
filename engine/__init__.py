"""guanxi's core engine: plugin host, entity metadata, database, record API.

A plugin needs only what this package re-exports: ``hookimpl`` to mark its hook
functions (and ``for_entities`` to narrow the per-record ones), the error types, and
the types it receives (``Actor``, ``Record``, ``RecordEvent``, ``Money``). The hooks
themselves are specified in ``hookspecs``.
"""

from .actor import SYSTEM, Actor
from .config import Config
from .engine import Engine
from .errors import (
    ConfigError,
    ConflictError,
    FieldProblem,
    GuanxiError,
    LimitExceeded,
    MigrationError,
    NotFound,
    PermissionDenied,
    PluginError,
    TransitionValuesError,
    Unauthenticated,
    ValidationError,
    WorkflowError,
)
from .hookspecs import for_entities, hookimpl
from .records import Page, Record, RecordEvent
from .timeline import TimelineEntry, TimelineKey
from .validation import Money

__all__ = [
    "SYSTEM",
    "Actor",
    "Config",
    "ConfigError",
    "ConflictError",
    "Engine",
    "FieldProblem",
    "GuanxiError",
    "LimitExceeded",
    "MigrationError",
    "Money",
    "NotFound",
    "Page",
    "PermissionDenied",
    "PluginError",
    "Record",
    "RecordEvent",
    "TimelineEntry",
    "TimelineKey",
    "Unauthenticated",
    "ValidationError",
    "TransitionValuesError",
    "WorkflowError",
    "for_entities",
    "hookimpl",
]

__version__ = "0.1.0"
