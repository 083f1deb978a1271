"""``bridge purge``: delete finished processes past their retention now, or say what would go."""

from __future__ import annotations

import asyncio
import json

import click

from bridge.cli_settings import settings_of


@click.command("purge")
@click.option("--dry-run", is_flag=True, help="Only say what would be deleted.")
@click.option("--json", "as_json", is_flag=True, help="Print the figures as JSON.")
def purge(dry_run: bool, as_json: bool) -> None:
    """Delete the finished processes (and their history) past their retention.

    A worker does this every few minutes; this does it at once. Retention is
    BRIDGE_RETENTION_DAYS (90 by default, 0 keeps processes for good), or a definition's own
    RetentionDays.
    """
    settings = settings_of()

    async def run() -> None:
        from bridge.definitions import Registry
        from bridge.retention import Retention, days_of
        from bridge.store.database import open_database
        from bridge.store.revision import at_head

        db = open_database(settings.database_url)
        try:
            if not await at_head(db):
                raise click.ClickException(
                    "the database has no bridge schema, or an older one: run `bridge db upgrade` "
                    f"first ({settings.database_url})"
                )
            registry = Registry()
            await registry.refresh(db)
            retention = Retention(db, registry, settings.retention_days)
            expired = await retention.expired()
            days = {
                e.definition: days_of(registry.latest(e.definition), settings.retention_days)
                for e in expired
            }
            if as_json and dry_run:
                click.echo(
                    json.dumps(
                        [
                            {
                                "definition": e.definition,
                                "retentionDays": days[e.definition],
                                "processes": e.processes,
                                "oldestEnd": e.oldest_end.isoformat(),
                                "newestEnd": e.newest_end.isoformat(),
                            }
                            for e in expired
                        ]
                    )
                )
                return
            if not as_json:
                for e in expired:
                    click.echo(
                        f"{e.definition}: {e.processes} finished process(es) older than "
                        f"{days[e.definition]} day(s), ended {e.oldest_end:%Y-%m-%d %H:%M} to "
                        f"{e.newest_end:%Y-%m-%d %H:%M} UTC"
                    )
            if dry_run:
                total = sum(e.processes for e in expired)
                click.echo(f"would delete {total} process(es) (dry run: nothing deleted)")
                return
            purged = await retention.purge()
            if as_json:
                click.echo(
                    json.dumps(
                        {"deleted": purged.processes, "historyChunks": purged.history_chunks}
                    )
                )
            else:
                click.echo(f"deleted {purged.total} process(es) and their history")
        finally:
            await db.dispose()

    asyncio.run(run())
