"""Run migrations on the connection `catalog` hands over, or, when invoked as
`alembic upgrade head` from the repository root, on CATALOG_DB (else the
alembic.ini url) opened with the same engine settings the CLI uses."""

import os

from alembic import context

from catalog import dialects
from catalog.database import open_engine
from catalog.schema import metadata

config = context.config


def run(connection) -> None:
    context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


connection = config.attributes.get("connection")
if connection is not None:
    run(connection)
else:
    target = os.environ.get("CATALOG_DB") or config.get_main_option("sqlalchemy.url")
    engine = open_engine(target)
    try:
        with engine.begin() as conn:
            # The same lock `catalog` takes, so two upgrades never race.
            dialects.lock_schema(conn)
            run(conn)
    finally:
        engine.dispose()
