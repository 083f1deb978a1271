"""Event correlation against a small reference model of its intended semantics.

The real engine (``Engine.apply`` on a fresh SQLite file, a controllable clock, expiries found
with ``correlation.due_expiries`` and applied as ``BufferExpired`` like the timer scanner does)
is driven with generated sequences of start events, awaited events, duplicates (redeliveries at
the same offset and republished copies with the same identity), clock advances, scanner runs and
restarts, and compared with a pure-Python model of the rules:

* an event whose identity was seen before changes nothing (identity: CloudEvents source + id,
  the trigger's ``EventId`` path, else topic/partition/offset);
* a start event starts a process for its key (``OnRunning: StartNew``);
* an event of a type some wait listens for goes to every process waiting for (type, key); when
  none waits it is kept until now + TTL (the wait's ``BufferSeconds``, else the configured
  default); a wait that begins takes the oldest live kept event for its (type, key) at once;
  a kept event whose TTL ends unconsumed is dead-lettered once; each kept event is taken once;
* events are applied in the order published.

Two rules are also pinned by example tests at the end; the engine of commit fb8559b broke
both (a533595 fixed them): an event that starts a process was never kept for another
definition's wait that begins later (``Batch._event`` kept events only ``if read.candidates and
not delivered and not started``), and when two waits want one event type, a wait without
``BufferSeconds`` counted as 0 seconds instead of the configured default (``(interest.
buffer_seconds or 0) > (known.buffer_seconds or 0)`` in ``Registry.add`` and
``events.candidates``), so the shorter explicit TTL won.
"""

from __future__ import annotations

import itertools
import json
import shutil
import tempfile
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import Phase, given, settings
from hypothesis import event as note
from hypothesis import strategies as st
from sqlalchemy import select

from bridge.asl.loading import parse_definition
from bridge.definitions import Registry
from bridge.engine import BufferExpired, Engine, EngineConfig, EventReceived, Outcome
from bridge.events import KafkaRecord
from bridge.store import correlation, history_chunks, outbox
from bridge.store.database import open_database, reading
from bridge.store.schema import buffered_events, history, inbox, processes

TOPIC = "t"
DLQ = "bridge.dlq"
SOURCE = "test"
KEYS = ("k0", "k1")
T0 = datetime(2030, 1, 1, tzinfo=UTC)


# ------------------------------------------------------------------------------ definitions


def _wait(event_type: str, buffer_seconds: int | None, result_path: str, then: str) -> dict:
    parameters: dict[str, Any] = {
        "Topic": TOPIC,
        "EventType": [event_type],
        "CorrelationKey.$": "$.k",
        "KeyPath": "$.k",
    }
    if buffer_seconds is not None:
        parameters["BufferSeconds"] = buffer_seconds
    return {
        "Type": "Task",
        "Resource": "bridge:event:waitFor",
        "Parameters": parameters,
        "ResultPath": result_path,
        "Next": then,
    }


def flow_document(buffer_a: int | None, buffer_b: int | None) -> dict:
    """Started by ``Started``; waits for ``A`` then ``B`` with the same key, then succeeds."""
    return {
        "Triggers": [
            {"Topic": TOPIC, "EventType": "Started", "CorrelationKey": "$.k", "EventId": "$.id"}
        ],
        "StartAt": "WaitA",
        "States": {
            "WaitA": _wait("A", buffer_a, "$.a", "WaitB"),
            "WaitB": _wait("B", buffer_b, "$.b", "Done"),
            "Done": {"Type": "Succeed"},
        },
    }


def watcher_document(buffer_started: int | None) -> dict:
    """Started by ``W``; waits for the ``Started`` event of its key (which starts ``flow``)."""
    return {
        "Triggers": [
            {"Topic": TOPIC, "EventType": "W", "CorrelationKey": "$.k", "EventId": "$.id"}
        ],
        "StartAt": "WaitStarted",
        "States": {
            "WaitStarted": _wait("Started", buffer_started, "$.s", "Done"),
            "Done": {"Type": "Succeed"},
        },
    }


def listener_document(buffer_a: int | None) -> dict:
    """No trigger; only its wait for ``A`` (so that two waits want ``A`` with their own TTL)."""
    return {
        "StartAt": "Listen",
        "States": {"Listen": _wait("A", buffer_a, "$.a", "Done"), "Done": {"Type": "Succeed"}},
    }


@dataclass(frozen=True)
class Spec:
    """A scenario: the definitions' documents and their meaning for the model."""

    documents: tuple[tuple[str, dict], ...]
    #: definition -> (trigger type, [(state name, awaited type), ...])
    shapes: dict[str, tuple[str, list[tuple[str, str]]]]
    default_ttl: int
    #: awaited type -> every BufferSeconds given for it (None: the default)
    buffers: dict[str, list[int | None]]

    def ttl(self, event_type: str) -> int:
        """The intended TTL: long enough for every wait that wants the event."""
        return max(self.default_ttl if b is None else b for b in self.buffers[event_type])

    @property
    def triggers(self) -> set[str]:
        return {trigger for trigger, _ in self.shapes.values()}

    @property
    def awaited(self) -> set[str]:
        return set(self.buffers)

    def registry(self) -> Registry:
        registry = Registry()
        for name, document in self.documents:
            registry.add(parse_definition(document, name))
        return registry


ABSENT = -1


def scenario(
    buffer_a: int | None,
    buffer_b: int | None,
    default_ttl: int,
    *,
    watcher: int | None = ABSENT,
    listener: int | None = ABSENT,
) -> Spec:
    """``flow``, and optionally ``watcher`` and ``listener`` with their BufferSeconds."""
    documents: list[tuple[str, dict]] = [("flow", flow_document(buffer_a, buffer_b))]
    shapes = {"flow": ("Started", [("WaitA", "A"), ("WaitB", "B")])}
    buffers: dict[str, list[int | None]] = {"A": [buffer_a], "B": [buffer_b]}
    if watcher != ABSENT:
        documents.append(("watcher", watcher_document(watcher)))
        shapes["watcher"] = ("W", [("WaitStarted", "Started")])
        buffers["Started"] = [watcher]
    if listener != ABSENT:
        documents.append(("listener", listener_document(listener)))
        buffers["A"].append(listener)
    return Spec(tuple(documents), shapes, default_ttl, buffers)


# ------------------------------------------------------------------------------ the model


@dataclass(frozen=True)
class Published:
    """One record as produced: ``enc`` is ``ce`` (binary CloudEvent) or ``json`` (plain)."""

    kind: str
    key: str
    enc: str
    eid: str
    partition: int
    offset: int

    def record(self) -> KafkaRecord:
        if self.enc == "ce":
            headers = (
                ("ce_specversion", b"1.0"),
                ("ce_type", self.kind.encode()),
                ("ce_id", self.eid.encode()),
                ("ce_source", SOURCE.encode()),
            )
            value = {"k": self.key}
        else:
            headers = ()
            value = {"type": self.kind, "k": self.key, "id": self.eid}
        return KafkaRecord(
            TOPIC,
            self.partition,
            self.offset,
            self.key.encode(),
            json.dumps(value).encode(),
            headers,
        )

    def identity(self, triggers: set[str]) -> str:
        if self.enc == "ce":
            return f"ce|{SOURCE}|{self.eid}"
        if self.kind in triggers:  # the trigger's EventId: $.id
            return f"id|{TOPIC}|{self.eid}"
        return f"pos|{TOPIC}/{self.partition}/{self.offset}"


@dataclass
class MProcess:
    definition: str
    start: str
    key: str
    waits: list[tuple[str, str]]
    received: list[tuple[str, str]] = field(default_factory=list)
    wait_seq: int | None = None

    @property
    def waiting_for(self) -> str | None:
        return self.waits[0][1] if self.waits and self.wait_seq is not None else None

    def view(self) -> tuple[str, str, str | None, list[tuple[str, str]]]:
        status = "RUNNING" if self.waits else "SUCCEEDED"
        state = self.waits[0][0] if self.waits else "Done"  # an ended process stays there
        return self.definition, status, state, self.received


@dataclass
class MKept:
    event_key: str
    event_type: str
    key: str
    expires_at: datetime
    consumed: bool = False
    expired: bool = False

    def live(self, now: datetime) -> bool:
        return not self.consumed and not self.expired and now < self.expires_at


class Model:
    def __init__(self, spec: Spec) -> None:
        self.spec = spec
        self.seen: set[str] = set()
        self.processes: dict[str, MProcess] = {}
        self.kept: list[MKept] = []
        self.dead: list[str] = []
        self.seq = itertools.count()

    def event(self, published: Published, now: datetime) -> bool:
        """Apply one event; whether it is a duplicate."""
        ident = published.identity(self.spec.triggers)
        if ident in self.seen:
            return True
        self.seen.add(ident)
        kind, key = published.kind, published.key
        delivered = False
        if kind in self.spec.awaited:
            waiting = sorted(
                (p for p in self.processes.values() if p.waiting_for == kind and p.key == key),
                key=lambda p: p.wait_seq or 0,
            )
            for process in waiting:
                self._arrive(process, kind, ident, now)
                delivered = True
        for name, (trigger, waits) in self.spec.shapes.items():
            if trigger == kind:
                process = MProcess(name, ident, key, list(waits))
                self.processes[ident + "|" + name] = process
                self._begin(process, now)
        # Kept also when it started a process: another definition's wait may want it later.
        if kind in self.spec.awaited and not delivered:
            expires = now + timedelta(seconds=self.spec.ttl(kind))
            self.kept.append(MKept(ident, kind, key, expires))
        return False

    def _arrive(self, process: MProcess, kind: str, ident: str, now: datetime) -> None:
        process.received.append((kind, ident))
        process.waits.pop(0)
        process.wait_seq = None
        self._begin(process, now)

    def _begin(self, process: MProcess, now: datetime) -> None:
        """The next wait begins: it takes the oldest live kept event, or waits."""
        while process.waits:
            kind = process.waits[0][1]
            kept = next(
                (
                    k
                    for k in self.kept
                    if k.event_type == kind and k.key == process.key and k.live(now)
                ),
                None,
            )
            if kept is None:
                process.wait_seq = next(self.seq)
                return
            kept.consumed = True
            process.received.append((kind, kept.event_key))
            process.waits.pop(0)

    def expire(self, now: datetime) -> None:
        for kept in self.kept:
            if not kept.consumed and not kept.expired and kept.expires_at <= now:
                kept.expired = True
                self.dead.append(kept.event_key)

    def view(self) -> dict[str, Any]:
        return {
            "processes": {(p.definition, p.start): p.view() for p in self.processes.values()},
            "dead": sorted(self.dead),
            "kept": sorted(
                (k.event_key, k.event_type, k.key, k.expires_at, k.consumed, k.expired)
                for k in self.kept
            ),
            "seen": sorted(self.seen),
        }


# ------------------------------------------------------------------------------ the real engine


class CountingEntropy:
    def __init__(self) -> None:
        self.counter = itertools.count(1)

    def new_id(self) -> str:
        return f"id-{next(self.counter):06d}"

    def new_token(self) -> str:
        return f"token-{next(self.counter):06d}"

    def random_int(self, low: int, high: int) -> int:
        return low

    def uuid4(self) -> str:
        return self.new_id()


class World:
    """One engine on one SQLite file, with a clock the test moves."""

    def __init__(self, path: Path, spec: Spec) -> None:
        self.url = f"sqlite+aiosqlite:///{path}"
        self.spec = spec
        self.now = T0
        self.entropy = CountingEntropy()
        self.config = EngineConfig(
            dlq_topic=DLQ, lifecycle_topic="", buffer_seconds=spec.default_ttl
        )
        self.offsets = Counter[int]()
        self._open()

    def _open(self) -> None:
        self.db = open_database(self.url)
        self.engine = Engine(
            self.db, self.spec.registry(), self.config, entropy=self.entropy, clock=lambda: self.now
        )

    async def restart(self) -> None:
        await self.db.dispose()
        self._open()

    async def close(self) -> None:
        await self.db.dispose()

    def publish(self, kind: str, key: str, enc: str, eid: str) -> Published:
        partition = KEYS.index(key) if key in KEYS else 0
        offset = self.offsets[partition]
        self.offsets[partition] += 1
        return Published(kind, key, enc, eid, partition, offset)

    def republish(self, earlier: Published) -> Published:
        """The same event produced again (a producer retry): a new offset."""
        offset = self.offsets[earlier.partition]
        self.offsets[earlier.partition] += 1
        return Published(
            earlier.kind, earlier.key, earlier.enc, earlier.eid, earlier.partition, offset
        )

    async def apply(self, events: list[Published]) -> list[Outcome]:
        return await self.engine.apply([EventReceived(e.record()) for e in events])

    async def scan(self) -> list[Outcome]:
        """What the timer scanner does for expired buffered events, at the test's clock."""
        async with reading(self.db) as conn:
            due = await correlation.due_expiries(conn, self.now, 1000)
        if not due:
            return []
        return await self.engine.apply([BufferExpired(item.id) for item in due])

    async def view(self) -> dict[str, Any]:
        async with reading(self.db) as conn:
            rows = (
                await conn.execute(
                    select(
                        processes.c.id,
                        processes.c.definition,
                        processes.c.status,
                        processes.c.current_state,
                    )
                )
            ).all()
            chunks = (
                await conn.execute(
                    select(history.c.process_id, history.c.seq, history.c.entries).order_by(
                        history.c.process_id, history.c.seq
                    )
                )
            ).all()
            dead = [m.value for m in await outbox.pending(conn) if m.topic == DLQ]
            kept = (await conn.execute(select(buffered_events))).all()
            seen = (await conn.execute(select(inbox.c.key))).scalars()
            dead_keys = sorted(value["eventKey"] for value in dead)
            seen_keys = sorted(seen)
        starts: dict[str, str] = {}
        received: dict[str, list[tuple[str, str]]] = {row.id: [] for row in rows}
        for chunk in chunks:
            for entry in history_chunks.entries(chunk.seq, chunk.entries):
                details = entry["details"]
                if entry["type"] == "ProcessStarted":
                    starts[chunk.process_id] = details["eventKey"]
                elif entry["type"] == "EventReceived":
                    received[chunk.process_id].append((details["type"], details["eventKey"]))
        found: dict[tuple[str, str], Any] = {}
        for row in rows:
            ident = (row.definition, starts[row.id])
            assert ident not in found, f"two processes started by one event: {ident}"
            found[ident] = (row.definition, row.status, row.current_state, received[row.id])
        return {
            "processes": found,
            "dead": dead_keys,
            "kept": sorted(
                (
                    row.event_key,
                    row.event_type,
                    row.correlation_key,
                    row.expires_at,
                    row.consumed_at is not None,
                    row.expired_at is not None,
                )
                for row in kept
            ),
            "seen": seen_keys,
        }


async def check(world: World, model: Model) -> None:
    real, expected = await world.view(), model.view()
    # Invariants first, for readable failures.
    for *_, got in real["processes"].values():
        keys = [event_key for _, event_key in got]
        assert len(keys) == len(set(keys)), f"an event reached one process twice: {got}"
    taken = Counter(
        event_key
        for _, _, _, got in real["processes"].values()
        for _, event_key in got
        if any(event_key == row[0] for row in real["kept"])
    )
    assert all(count == 1 for count in taken.values()), f"a kept event was taken twice: {taken}"
    assert len(real["dead"]) == len(set(real["dead"])), f"dead-lettered twice: {real['dead']}"
    assert not set(real["dead"]) & set(taken), "a dead-lettered event was also delivered"
    # Then the model.
    assert real["processes"] == expected["processes"]
    assert real["dead"] == expected["dead"]
    assert real["kept"] == expected["kept"]
    assert real["seen"] == expected["seen"]


# ------------------------------------------------------------------------------ fixtures


# Module-scoped: hypothesis runs many examples in one test call (its health check refuses a
# function-scoped fixture there).
@pytest.fixture(scope="module")
def template(migrated_sqlite: Path) -> Path:
    """A migrated, empty database file (tests/conftest.py), copied for every example."""
    return migrated_sqlite


class Fresh:
    """A copy of the template in a temporary folder of its own."""

    def __init__(self, template: Path) -> None:
        self.template = template

    async def __aenter__(self) -> Path:
        self.folder = tempfile.TemporaryDirectory(prefix="bridge-corr-")
        path = Path(self.folder.name) / "bridge.db"
        shutil.copyfile(self.template, path)
        return path

    async def __aexit__(self, *exc: object) -> None:
        self.folder.cleanup()


@pytest.fixture
async def world(template: Path) -> AsyncIterator[World]:
    async with Fresh(template) as path:
        world = World(path, scenario(buffer_a=20, buffer_b=None, default_ttl=60))
        try:
            yield world
        finally:
            await world.close()


# ------------------------------------------------------------------------------ the property

#: Weights by repetition: mostly new events, some copies, clock moves, the odd restart.
WHAT = ["new"] * 5 + ["story"] * 2 + ["redeliver", "republish"] * 2 + ["advance"] * 3 + ["restart"]


@st.composite
def operation(draw: st.DrawFn) -> tuple:
    what = draw(st.sampled_from(WHAT))
    flush = draw(st.booleans())  # end the batch after this event (else it goes with the next)
    if what == "new":
        kind = draw(st.sampled_from(["A", "B", "Started", "A", "B", "Started", "W"]))
        key = draw(st.sampled_from([KEYS[0], KEYS[0], KEYS[1]]))
        return ("new", kind, key, draw(st.sampled_from(["ce", "json"])), flush)
    if what == "story":  # Started, A and B of one key in some order, in one batch or several
        kinds = draw(st.permutations(["Started", "A", "B"]))
        key = draw(st.sampled_from(KEYS))
        encodings = draw(st.lists(st.sampled_from(["ce", "json"]), min_size=3, max_size=3))
        flushes = draw(st.lists(st.booleans(), min_size=3, max_size=3))
        return ("story", tuple(zip(kinds, [key] * 3, encodings, flushes, strict=True)))
    if what in ("redeliver", "republish"):
        return (what, draw(st.integers(0, 30)), flush)
    if what == "advance":
        return ("advance", draw(st.sampled_from([1, 5, 10, 19, 20, 21, 45])), flush)
    return ("restart",)


operations = st.lists(operation(), min_size=4, max_size=30)
specs = st.builds(
    scenario,
    buffer_a=st.sampled_from([None, 0, 5, 20]),
    buffer_b=st.sampled_from([None, 5, 20]),
    default_ttl=st.sampled_from([10, 30]),
    watcher=st.sampled_from([ABSENT, None, 5, 30]),
    listener=st.sampled_from([ABSENT, None, 0, 5, 40]),
)


async def run(template: Path, spec: Spec, ops: list[tuple], model: Model) -> None:
    async with Fresh(template) as path:
        world = World(path, spec)
        try:
            await drive(world, model, ops)
        finally:
            await world.close()


async def drive(world: World, model: Model, ops: list[tuple]) -> None:
    published: list[Published] = []
    pending: list[tuple[Published, bool]] = []
    ids = itertools.count()
    duplicates = 0

    async def flush() -> None:
        if not pending:
            return
        outcomes = await world.apply([event for event, _ in pending])
        for (event, duplicate), outcome in zip(pending, outcomes, strict=True):
            assert outcome.ok, outcome
            assert (outcome.status == "duplicate") == duplicate, (event, outcome)
            nonlocal duplicates
            duplicates += duplicate
        pending.clear()

    flat: list[tuple] = []
    for op in ops:
        if op[0] == "story":
            flat.extend(("new", *step) for step in op[1])
        else:
            flat.append(op)
    for op in flat:
        match op:
            case ("new", kind, key, enc, flush_now):
                event = world.publish(kind, key, enc, f"e{next(ids)}")
            case ("redeliver" | "republish", index, flush_now) if published:
                earlier = published[index % len(published)]
                event = earlier if op[0] == "redeliver" else world.republish(earlier)
            case ("advance", seconds, scan):
                await flush()
                world.now += timedelta(seconds=seconds)
                if scan:
                    for outcome in await world.scan():
                        assert outcome.ok, outcome
                    model.expire(world.now)
                    # The scanner may list an expiry again (a stale read): nothing happens.
                    assert all(o.status == "ignored" for o in await world.scan())
                continue
            case ("restart",):
                await flush()
                await world.restart()
                continue
            case _:
                continue
        published.append(event)
        pending.append((event, model.event(event, world.now)))
        if flush_now:
            await flush()
    await flush()
    await check(world, model)
    view = model.view()
    statuses = Counter(status for _, status, _, _ in view["processes"].values())
    note(f"succeeded processes: {min(statuses['SUCCEEDED'], 2)}")
    note(f"dead letters: {min(len(view['dead']), 2)}")
    note(f"taken from the buffer: {min(sum(k[4] for k in view['kept']), 2)}")
    note(f"duplicates: {min(duplicates, 2)}")


@settings(
    max_examples=40,
    deadline=None,
    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink],
)
@given(spec=specs, ops=operations)
async def test_correlation_matches_the_model(template: Path, spec: Spec, ops: list[tuple]) -> None:
    await run(template, spec, ops, Model(spec))


# ------------------------------------------------------------------------------ examples


def _started(world: World, key: str, eid: str, enc: str = "json") -> Published:
    return world.publish("Started", key, enc, eid)


async def test_an_event_before_its_process_is_delivered_when_the_wait_begins(world: World) -> None:
    model = Model(world.spec)
    early = world.publish("A", "k0", "ce", "a1")
    model.event(early, world.now)
    [outcome] = await world.apply([early])
    assert outcome.status == "ignored" and "buffered until" in outcome.reason
    world.now += timedelta(seconds=10)
    start = _started(world, "k0", "s1")
    model.event(start, world.now)
    [outcome] = await world.apply([start])
    assert outcome.status == "applied"
    await check(world, model)
    view = await world.view()
    [(_, status, state, got)] = view["processes"].values()
    assert (status, state, got) == ("RUNNING", "WaitB", [("A", "ce|test|a1")])
    # Nothing left to expire: the event was taken.
    world.now += timedelta(seconds=3600)
    assert await world.scan() == []


async def test_a_duplicate_of_a_buffered_event_is_not_kept_twice(world: World) -> None:
    model = Model(world.spec)
    first = world.publish("A", "k0", "ce", "a1")
    again = world.republish(first)
    outcomes = await world.apply([first])
    world.now += timedelta(seconds=5)
    outcomes += await world.apply([again, first])  # a producer retry and a redelivery
    assert [o.status for o in outcomes] == ["ignored", "duplicate", "duplicate"]
    model.event(first, T0)
    # Two processes start and take one copy at most, in the order they began.
    world.now += timedelta(seconds=1)
    one, two = _started(world, "k0", "s1"), _started(world, "k0", "s2")
    await world.apply([one, two])
    model.event(one, world.now)
    model.event(two, world.now)
    await check(world, model)
    view = await world.view()
    assert view["processes"][("flow", "id|t|s1")][3] == [("A", "ce|test|a1")]
    assert view["processes"][("flow", "id|t|s2")][3] == []


async def test_a_duplicate_after_expiry_and_restart_changes_nothing(world: World) -> None:
    model = Model(world.spec)
    first = world.publish("A", "k0", "json", "a1")
    await world.apply([first])
    model.event(first, world.now)
    world.now += timedelta(seconds=20)  # BufferSeconds of WaitA
    [expired] = await world.scan()
    model.expire(world.now)
    assert expired.status == "applied" and "unmatched" in expired.reason
    await world.restart()
    world.now += timedelta(days=1)
    [outcome] = await world.apply([first])  # redelivered a day later, after a restart
    assert outcome.status == "duplicate"
    await check(world, model)
    assert (await world.view())["dead"] == [first.identity({"Started"})]


async def test_after_expiry_a_late_wait_gets_nothing(world: World) -> None:
    model = Model(world.spec)
    early = world.publish("A", "k0", "ce", "a1")
    await world.apply([early])
    model.event(early, world.now)
    world.now += timedelta(seconds=20)
    # The scanner has not run yet: the wait that begins now must not take the stale event...
    start = _started(world, "k0", "s1")
    await world.apply([start])
    model.event(start, world.now)
    # ...and the scanner dead-letters it once, however often it looks.
    assert [o.status for o in await world.scan()] == ["applied"]
    assert await world.scan() == []
    model.expire(world.now)
    await check(world, model)
    view = await world.view()
    assert view["processes"][("flow", "id|t|s1")][1:] == ("RUNNING", "WaitA", [])
    assert view["dead"] == ["ce|test|a1"]


async def test_an_event_reaches_every_waiting_process_in_one_batch(world: World) -> None:
    model = Model(world.spec)
    batch = [
        _started(world, "k0", "s1", "ce"),
        _started(world, "k0", "s2"),
        world.publish("A", "k0", "json", "a1"),
        world.publish("B", "k0", "ce", "b1"),
        world.publish("A", "k1", "ce", "a2"),
    ]
    outcomes = await world.apply(batch)
    for event in batch:
        model.event(event, world.now)
    assert [o.status for o in outcomes] == ["applied", "applied", "applied", "applied", "ignored"]
    await check(world, model)
    view = await world.view()
    assert {v[1] for v in view["processes"].values()} == {"SUCCEEDED"}


# ------------------------------------------------------------------------------ two more rules
# Both failed before commit a533595 (see the module docstring).


async def test_a_start_event_is_kept_for_a_wait_that_begins_later(template: Path) -> None:
    """The issue: an event that arrives "before the process exists" is kept, also when the same
    event starts a process of another definition."""
    spec = scenario(20, 20, 60, watcher=30)
    async with Fresh(template) as path:
        world = World(path, spec)
        try:
            model = Model(spec)
            start = world.publish("Started", "k0", "json", "s1")
            watch = world.publish("W", "k0", "json", "w1")
            for event in (start, watch):
                model.event(event, world.now)
                await world.apply([event])
            assert model.processes["id|t|w1|watcher"].received == [("Started", "id|t|s1")]
            await check(world, model)
        finally:
            await world.close()


async def test_the_longest_ttl_of_the_waits_that_want_an_event_applies(template: Path) -> None:
    """A wait without BufferSeconds keeps an event for the configured default, even when another
    wait for the same type gives a shorter BufferSeconds."""
    spec = scenario(None, None, 60, listener=5)
    async with Fresh(template) as path:
        world = World(path, spec)
        try:
            model = Model(spec)
            early = world.publish("A", "k0", "ce", "a1")
            model.event(early, world.now)
            await world.apply([early])
            [kept] = (await world.view())["kept"]
            assert kept[3] == T0 + timedelta(seconds=60)
            world.now += timedelta(seconds=30)  # past the listener's 5 s, within the default 60
            await world.scan()
            model.expire(world.now)
            start = world.publish("Started", "k0", "json", "s1")
            model.event(start, world.now)
            await world.apply([start])
            await check(world, model)
        finally:
            await world.close()
