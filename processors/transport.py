"""faust's aiokafka transport with a configurable consumer fetch wait, and a table manager
that does not wait.

faust-streaming 0.15.3 hard-codes ``fetch_max_wait_ms=1500`` for worker consumers. Brokers that
answer a fetch only when that wait runs out (the embedded test broker) would then add ~0.7 s to
every hop, so the bridge sets its own value: short while records come, longer once none came for
a second, so that an idle worker does not fetch a hundred times a second.

faust's table manager sleeps one second at start before it registers the app's tables, and the
consumer joins its group only after that. The bridge keeps no faust tables (its state is in SQL),
so that second only delays every (re)start of a worker.

faust hands each record to its stream through ``Service.wait_first(callback(record),
suspend_flow.wait())``: four tasks per record, so that a rebalance can abandon a hand-over that
waits for room in a full stream buffer. Most hand-overs never wait; ``PromptConsumer`` runs the
callback at once and only one that waits goes through ``wait_first``, from where it stopped.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Collection, Coroutine, Generator
from typing import Any, ClassVar, cast

import aiokafka
import faust
from faust.tables import TableManager
from faust.transport.consumer import CONSUMER_FETCHING
from faust.transport.drivers import aiokafka as driver

log = logging.getLogger(__name__)


class _ConsumerThread(driver.AIOKafkaConsumerThread):
    fetch_max_wait_ms: ClassVar[int] = 10
    fetch_idle_wait_ms: ClassVar[int] = 250

    def _create_worker_consumer(self, transport: Any) -> aiokafka.AIOKafkaConsumer:
        consumer = super()._create_worker_consumer(transport)
        # aiokafka reads this attribute when it builds its fetcher in start().
        consumer._fetch_max_wait_ms = self.fetch_max_wait_ms
        return consumer

    async def on_start(self) -> None:
        await super().on_start()
        fetcher = getattr(self._consumer, "_fetcher", None)
        if fetcher is not None:
            adapt_fetch_wait(fetcher, self.fetch_max_wait_ms, self.fetch_idle_wait_ms)


#: Without records for this long, a consumer is idle and fetches with the longer wait.
IDLE_AFTER_SECONDS = 1.0


def adapt_fetch_wait(fetcher: Any, busy_ms: int, idle_ms: int) -> None:
    """Make aiokafka's ``fetcher`` wait ``busy_ms`` per fetch while records come, and
    ``idle_ms`` (if longer) once none came for ``IDLE_AFTER_SECONDS``.

    The fetcher reads ``_fetch_max_wait_ms`` each time it builds a request, and
    ``_proc_fetch_request`` says whether a response brought records.
    """
    idle_ms = max(idle_ms, busy_ms)
    fetch = fetcher._proc_fetch_request
    last_records = time.monotonic()

    async def fetch_and_adapt(assignment: Any, node_id: Any, request: Any) -> bool:
        nonlocal last_records
        got_records: bool = await fetch(assignment, node_id, request)
        now = time.monotonic()
        if got_records:
            last_records = now
        idle = now - last_records >= IDLE_AFTER_SECONDS
        fetcher._fetch_max_wait_ms = idle_ms if idle else busy_ms
        return got_records

    fetcher._proc_fetch_request = fetch_and_adapt


def transport_class(
    fetch_max_wait_ms: int, fetch_idle_wait_ms: int = 250
) -> type[driver.Transport]:
    """A transport class whose worker consumers wait at most ``fetch_max_wait_ms`` per fetch
    while records come, and ``fetch_idle_wait_ms`` once idle."""
    thread = type(
        "ConsumerThread",
        (_ConsumerThread,),
        {"fetch_max_wait_ms": fetch_max_wait_ms, "fetch_idle_wait_ms": fetch_idle_wait_ms},
    )

    class BridgeConsumer(PromptConsumer):
        def _new_consumer_thread(self) -> driver.AIOKafkaConsumerThread:
            consumer_thread: driver.AIOKafkaConsumerThread = thread(
                self, loop=self.loop, beacon=self.beacon
            )
            return consumer_thread

    class BridgeTransport(driver.Transport):
        Consumer: ClassVar[type[driver.Consumer]] = BridgeConsumer

    return BridgeTransport


class _Started:
    """Awaiting it goes on with ``coroutine``, which already ran up to awaiting ``first`` (what
    it handed to the event loop then): the rest of a hand-over, inside a task."""

    def __init__(self, coroutine: Coroutine[Any, Any, Any], first: Any) -> None:
        self._coroutine = coroutine
        self._first = first

    def __await__(self) -> Generator[Any, Any, Any]:
        # What ``yield from`` does, from a coroutine already past its first step: the values it
        # hands to the event loop go up, what the task sends or throws in goes down.
        coroutine, handed = self._coroutine, self._first
        while True:
            try:
                received = yield handed
            except GeneratorExit:
                coroutine.close()
                raise
            except BaseException as exc:  # thrown in by the task: a cancel
                try:
                    handed = coroutine.throw(exc)
                except StopIteration as finished:
                    return finished.value
            else:
                try:
                    handed = coroutine.send(received)
                except StopIteration as finished:
                    return finished.value


class PromptConsumer(driver.Consumer):
    """faust's aiokafka consumer, handing records over without a task when none has to wait.

    ``_drain_messages`` is faust-streaming 0.15.3's (``faust/transport/consumer.py``, BSD
    licence), with ``_hand_over`` in place of its ``wait_first`` call.
    """

    async def _hand_over(self, message: Any) -> None:
        """What ``wait_first(callback(message), suspend_flow.wait())`` does: deliver
        ``message``, unless the flow is suspended (a rebalance) before it could be."""
        service: Any = self
        if self.suspend_flow.is_set() or service._stopped.is_set() or service._crashed.is_set():
            await self.wait_first(self.callback(message), self.suspend_flow.wait())
            return
        work = cast(Coroutine[Any, Any, Any], self.callback(message))
        try:
            first = work.send(None)
        except StopIteration:
            return  # delivered without waiting: the common case
        # It waits (a full stream buffer): from here on as faust does it, so that a rebalance
        # meanwhile abandons it.
        await self.wait_first(_Started(work, first), self.suspend_flow.wait())

    async def _drain_messages(self, fetcher: Any) -> None:  # pragma: no cover - faust's loop
        getmany = self.getmany
        service: Any = self
        consumer_should_stop = service._stopped.is_set
        fetcher_should_stop = fetcher._stopped.is_set

        get_read_offset = self._read_offset.__getitem__
        set_read_offset = self._read_offset.__setitem__
        flag_consumer_fetching = CONSUMER_FETCHING
        set_flag = self.diag.set_flag
        unset_flag = self.diag.unset_flag
        commit_every = self._commit_every
        acks_enabled_for = self.app.topics.acks_enabled_for
        hand_over = self._hand_over

        yield_every = 100
        num_since_yield = 0
        sleep = asyncio.sleep

        try:
            while not (consumer_should_stop() or fetcher_should_stop()):
                set_flag(flag_consumer_fetching)
                ait = getmany(timeout=1.0)
                # Sleeping because sometimes getmany is called in a loop never releasing to
                # the event loop.
                await self.sleep(0)
                if not self.should_stop:
                    async for tp, message in ait:
                        num_since_yield += 1
                        if num_since_yield > yield_every:
                            await sleep(0)
                            num_since_yield = 0

                        offset = message.offset
                        r_offset = get_read_offset(tp)
                        if r_offset is None or offset >= r_offset:
                            gap = offset - (r_offset or 0)
                            # We have a gap in income messages
                            if gap > 1 and r_offset:
                                acks_enabled = acks_enabled_for(message.topic)
                                if acks_enabled:
                                    await self._add_gap(tp, r_offset + 1, offset)
                            if commit_every is not None and self._n_acked >= commit_every:
                                self._n_acked = 0
                                await self.commit()
                            await hand_over(message)
                            set_read_offset(tp, offset)
                        else:
                            self.log.dev(
                                "DROPPED MESSAGE ROFF %r: k=%r v=%r",
                                offset,
                                message.key,
                                message.value,
                            )
                    unset_flag(flag_consumer_fetching)

        except self.consumer_stopped_errors:
            if self.transport.app.should_stop:
                # we're already stopping so ignore
                self.log.info("Broker stopped consumer, shutting down...")
                return
            raise
        except asyncio.CancelledError:
            if self.transport.app.should_stop:
                # we're already stopping so ignore
                self.log.info("Consumer shutting down for user cancel.")
                return
            raise
        except Exception as exc:
            self.log.exception("Drain messages raised: %r", exc)
            raise
        finally:
            unset_flag(flag_consumer_fetching)


class BridgeApp(faust.App):
    """A faust app using ``transport_cls`` for its consumer."""

    transport_cls: type[driver.Transport] = driver.Transport
    #: The domain-event topics it consumes, set by processors.app.build_app.
    event_topics: EventTopics | None = None

    def _new_transport(self) -> Any:
        return self.transport_cls(self.conf.broker_consumer, self)


class PromptTableManager(TableManager):
    """faust's table manager without the one-second pause before it registers tables.

    The pause gives an app time to declare tables after it started; the bridge declares none.
    Same steps as ``TableManager.on_start`` otherwise.
    """

    async def on_start(self) -> None:
        if not self.should_stop:
            await self._update_channels()
            await self.recovery.start()


class EventTopics:
    """The domain-event topics the worker consumes; a definition deployed while it runs adds
    the topics it reads. ``others`` are topics the same faust topic reads that are no domain
    events (the replies topic)."""

    def __init__(self, app: faust.App, topic: Any, others: Collection[str] = ()) -> None:
        self._app = app
        self._topic = topic
        self._others = frozenset(others)
        self._warned: set[str] = set()

    @property
    def names(self) -> list[str]:
        return sorted(name for name in self._topic.topics if name not in self._others)

    def follow(self, wanted: Collection[str]) -> list[str]:
        """Consume the topics of ``wanted`` not consumed yet, too; returns them. The consumer
        subscribes again (a rebalance of the group), and every worker of the group that
        follows the same definitions does the same.

        Called again and again (``Worker.follow_topics``): faust drops a change flagged while
        the group rebalances (its conductor clears the flag then), so a topic added but not in
        the subscription yet is flagged again until it is.

        A topic of ``wanted`` that is one of ``others`` is read as what that topic carries, not
        as domain events: said once in the log."""
        misread = sorted(set(wanted) & self._others - self._warned)
        if misread:
            self._warned.update(misread)
            log.warning(
                "a deployed definition reads its events from %s, which the worker reads as "
                "task replies (a record that is none goes to the dead-letter topic): give the "
                "definition a topic of its own",
                ", ".join(misread),
            )
        added = sorted(set(wanted) - set(self._topic.topics))
        conductor: Any = self._app.topics  # faust.transport.conductor.TopicConductor
        if added:
            # In place: the agent's stream reads a clone that shares this list.
            self._topic.topics.extend(added)
        if added or self.unsubscribed():
            changed = conductor._subscription_changed
            if changed is None or not changed.is_set():
                # faust's conductor resubscribes when told its topics changed.
                conductor._flag_changes()
        return added

    def unsubscribed(self) -> list[str]:
        """The topics followed that faust's consumer is not subscribed to yet."""
        conductor: Any = self._app.topics
        subscribed = conductor._topic_name_index
        return sorted(name for name in self._topic.topics if name not in subscribed)


class SharedNamesTopic(faust.Topic):
    """A topic whose clones (faust makes some for an agent's stream) share its list of topic
    names, also while it is empty (faust's Topic replaces an empty list by a new one), so that
    names added to it (``EventTopics.follow``) reach every clone."""

    def __init__(self, app: faust.App, *, topics: list[str] | None = None, **kwargs: Any) -> None:
        super().__init__(app, topics=topics, **kwargs)
        if topics is not None:
            self.topics = topics
