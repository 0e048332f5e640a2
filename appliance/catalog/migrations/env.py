"""Alembic environment: the engine comes from the caller (see ..migrate)."""

from alembic import context

from tapir.appliance.catalog.models import Base

target_metadata = Base.metadata


def run() -> None:
    engine = context.config.attributes["engine"]
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            render_as_batch=connection.dialect.name == "sqlite",
        )
        with context.begin_transaction():
            context.run_migrations()
        connection.commit()


run()
