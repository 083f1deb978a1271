"""Alembic environment: migrations run on a connection that bridge.store.migrate hands in.

There is no alembic.ini and no URL here. ``bridge.store.migrate`` opens the connection, starts
the transaction (taking the migration lock first) and passes the synchronous side of its
``AsyncConnection`` as ``config.attributes["connection"]``; alembic sees a transaction already
open and runs every step inside it, so the caller owns the transaction. Offline mode
(``sql=True``) renders the SQL script for the dialect named by the ``sqlalchemy.url`` option.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from bridge.store.schema import metadata

config = context.config


def run_offline() -> None:
    context.configure(
        url=config.get_main_option("sqlalchemy.url"),
        target_metadata=metadata,
        literal_binds=True,
        render_as_batch=True,
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_online(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=True,
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_offline()
else:
    connection = config.attributes.get("connection")
    if not isinstance(connection, Connection):
        raise RuntimeError(
            "bridge migrations run through bridge.store.migrate, which passes a connection "
            'in config.attributes["connection"]'
        )
    run_online(connection)
