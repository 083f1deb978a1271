"""A worker's readiness: every failing check is named."""

from __future__ import annotations

from bridge.worker_health import GroupState, readiness

JOINED = GroupState(joined=True, partitions=2)


def test_ready_when_the_database_answers_the_group_joined_and_the_outbox_flows() -> None:
    assert readiness(None, JOINED, None, 60).ready
    assert readiness(None, JOINED, 59.0, 60).ready
    # A worker beside others with every partition taken is ready: it stands by.
    assert readiness(None, GroupState(joined=True, partitions=0), None, 60).ready


def test_each_failing_check_gives_its_reason() -> None:
    found = readiness("connection refused", GroupState(joined=False, partitions=0), 61.0, 60)
    assert not found.ready
    assert found.reasons == [
        "the database does not answer: connection refused",
        "the consumer group has not given this worker its partitions yet",
        "a message has waited 61s to be published (more than 60s: is the broker away?)",
    ]
