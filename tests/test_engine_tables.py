"""The engine's own tables (audit, history, timers, outbox...) follow the engine version."""

from __future__ import annotations

import pytest
from pony.orm import db_session

from guanxi.engine import MigrationError


def test_a_missing_engine_table_is_a_pending_change_that_migrate_creates(make_engine):
    first = make_engine()
    with db_session:
        first.db.execute('DROP TABLE "guanxi_timer"')
    first.close()
    with pytest.raises(MigrationError, match="create engine table guanxi_timer"):
        make_engine(migrate=False)
    again = make_engine(migrate=True)
    with db_session:
        assert again.classes["GxTimer"].select().count() == 0
