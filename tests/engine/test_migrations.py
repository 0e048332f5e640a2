"""The Alembic migrations build exactly the schema the models describe, on both databases."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from tapir.appliance.catalog.database import Catalog
from tapir.appliance.catalog.migrate import alembic_config, current
from tapir.appliance.catalog.models import Base


def test_migrations_match_the_models(catalog: Catalog) -> None:
    catalog.upgrade()  # idempotent on an already migrated catalog
    with catalog.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == []
    head = ScriptDirectory.from_config(alembic_config(catalog.engine)).get_current_head()
    assert current(catalog.engine) == head
