"""The order saga end to end: real broker, real SQLite and PostgreSQL, Kafka and HTTP callbacks."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest

from tests.integration.harness import running_bridge

pytestmark = pytest.mark.integration


async def test_large_order_through_kafka_http_and_approval(
    database_url: str, kafka: str, tmp_path: Path
) -> None:
    async with running_bridge(database_url, kafka, tmp_path) as bridge:
        await bridge.place_order("o-100", 950)

        reserve = await bridge.command("inventory.commands", "o-100")
        assert reserve["type"] == "ReserveInventory" and reserve["items"]
        status, body = await bridge.post(
            f"/tasks/{reserve['taskToken']}/success", {"reserved": True}
        )
        assert status == 200, body

        charge = await bridge.command("payments.commands", "o-100")
        assert charge["amount"] == 950
        await bridge.publish(
            "bridge.replies", {"taskToken": charge["taskToken"], "output": {"charged": 950}}
        )

        request, record = await bridge.next_message(
            "bridge.approvals", lambda v: v["data"]["orderId"] == "o-100"
        )
        assert dict(record.headers)["ce_type"] == b"bridge.ApprovalRequested"
        # A GET shows the page and changes nothing, however often a mail scanner opens it.
        for _ in range(2):
            async with bridge.http.get(request["approveUrl"]) as page:
                assert page.status == 200
                html = await page.text()
                assert "Approve order o-100" in html and "<form" in html
                assert page.headers["Referrer-Policy"] == "same-origin"
                assert page.headers["Cache-Control"] == "no-store"
        process = await bridge.process_for("o-100")
        assert process["status"] == "RUNNING" and process["currentState"] == "ApproveOrder"

        status, body = await bridge.post(request["approveUrl"], {})
        assert status == 200 and body["status"] == "approved"

        done = await bridge.command("orders.done", "o-100")
        assert done == {"type": "OrderCompleted", "orderId": "o-100", "amount": 950}
        process = await bridge.process_for("o-100", "SUCCEEDED")
        assert process["definition"] == "order-saga" and process["version"] == 1
        assert process["output"]["inventory"] == {"reserved": True}
        assert process["output"]["payment"] == {"charged": 950}
        assert process["output"]["approval"]["outcome"] == "APPROVED"

        status, history = await bridge.get(f"/processes/{process['id']}/history")
        assert status == 200
        kinds = [entry["type"] for entry in history["items"]]
        for expected in (
            "ProcessStarted",
            "StateEntered",
            "CommandEmitted",
            "TaskSucceeded",
            "ApprovalRequested",
            "ApprovalDecided",
            "StateExited",
            "ProcessSucceeded",
        ):
            assert expected in kinds
        assert [entry["seq"] for entry in history["items"]] == list(range(1, len(kinds) + 1))

        # The link decided once; a second decision is refused and changes nothing.
        status, body = await bridge.post(request["approveUrl"], {})
        assert status == 409
        _, text = await bridge.get("/metrics")
        assert 'bridge_approvals_concluded_total{outcome="APPROVED"} 1.0' in text
        assert 'bridge_callbacks_total{outcome="success",result="applied",via="kafka"} 1.0' in text


async def test_small_order_skips_approval_and_rejection_fails(
    database_url: str, kafka: str, tmp_path: Path
) -> None:
    async with running_bridge(database_url, kafka, tmp_path) as bridge:
        await bridge.place_order("o-small", 25.5)
        await bridge.place_order("o-big", 1200)
        for order in ("o-small", "o-big"):
            reserve = await bridge.command("inventory.commands", order)
            await bridge.publish(
                "bridge.replies", {"taskToken": reserve["taskToken"], "output": {}}
            )
            charge = await bridge.command("payments.commands", order)
            await bridge.post(f"/tasks/{charge['taskToken']}/success", {"ok": True})

        await bridge.command("orders.done", "o-small")
        assert (await bridge.process_for("o-small", "SUCCEEDED"))["output"]["amount"] == 25.5

        request, _ = await bridge.next_message(
            "bridge.approvals", lambda v: v["data"]["orderId"] == "o-big"
        )
        # A browser: the page's form carries the nonce; the POST decides.
        async with bridge.http.get(request["rejectUrl"]) as page:
            html = await page.text()
        nonce = re.search(r'name="csrf" value="([0-9a-f]+)"', html)
        assert nonce is not None
        status, body = await bridge.post(
            request["rejectUrl"], data={"comment": "too big", "csrf": "forged"}
        )
        assert status == 403
        status, body = await bridge.post(
            request["rejectUrl"], data={"comment": "too big", "csrf": nonce.group(1)}
        )
        assert status == 200 and "rejected" in body
        failed = await bridge.process_for("o-big", "FAILED")
        assert failed["error"] == "Approval.Rejected"
        assert "too big" in failed["cause"]


async def test_duplicates_and_bad_events_do_not_stop_the_worker(
    database_url: str, kafka: str, tmp_path: Path
) -> None:
    async with running_bridge(database_url, kafka, tmp_path) as bridge:
        await bridge.publish("orders.events", None, raw=b"{not json")
        await bridge.publish("orders.events", None, raw=b"\xff\xfe")
        await bridge.publish("orders.events", {"type": "OrderPlaced", "eventId": "e-x"})
        await bridge.publish("orders.events", {"type": "OrderPlaced", "orderId": {"a": 1}})
        await bridge.publish("orders.events", {"type": "SomethingElse", "orderId": "o-other"})
        await bridge.publish("bridge.replies", None, raw=b"[]")
        await bridge.publish("bridge.replies", {"taskToken": "forged", "output": {}})
        await bridge.place_order("o-dup", 10, event_id="same-event")
        await bridge.place_order("o-dup", 10, event_id="same-event")

        reserve = await bridge.command("inventory.commands", "o-dup")
        await bridge.post(f"/tasks/{reserve['taskToken']}/success", {})
        charge = await bridge.command("payments.commands", "o-dup")
        await bridge.post(f"/tasks/{charge['taskToken']}/success", {})
        await bridge.command("orders.done", "o-dup")
        await bridge.process_for("o-dup", "SUCCEEDED")

        _, body = await bridge.get("/processes?correlationKey=o-dup")
        assert len(body["items"]) == 1, "a repeated eventId starts nothing new"
        _, body = await bridge.get("/processes?correlationKey=o-other")
        assert body["items"] == []

        # Four events that are no events, and the reply that is no reply (the forged token is a
        # valid reply: it is refused, not dead-lettered). Replies have an agent of their own.
        deadline = asyncio.get_running_loop().time() + 10
        while True:
            _, text = await bridge.get("/metrics")
            if "bridge_dead_letters_total 5.0" in text:
                break
            assert asyncio.get_running_loop().time() < deadline, text
            await asyncio.sleep(0.1)
        assert 'bridge_dedupe_hits_total{kind="event"} 1.0' in text


async def test_task_callbacks_over_http(database_url: str, kafka: str, tmp_path: Path) -> None:
    async with running_bridge(database_url, kafka, tmp_path) as bridge:
        await bridge.place_order("o-cb", 10)
        reserve = await bridge.command("inventory.commands", "o-cb")
        token = reserve["taskToken"]

        status, body = await bridge.post("/tasks/not-a-real-token/success", {})
        assert status == 404 and body["title"] == "Unknown task token"
        status, body = await bridge.post(f"/tasks/{token}/failure", {"error": 1})
        assert status == 400
        status, body = await bridge.post(
            f"/tasks/{token}/success", data=b"{broken", headers={"content-type": "application/json"}
        )
        assert status == 400
        status, body = await bridge.post(f"/tasks/{token}/heartbeat")
        assert status == 200
        status, body = await bridge.post(
            f"/tasks/{token}/failure", {"error": "Inventory.OutOfStock", "cause": "no books"}
        )
        assert status == 200
        status, body = await bridge.post(f"/tasks/{token}/success", {})
        assert status == 409

        failed = await bridge.process_for("o-cb", "FAILED")
        assert (failed["error"], failed["cause"]) == ("Inventory.OutOfStock", "no books")
        assert failed["currentState"] is None and failed["lastState"] == "ReserveInventory"

        status, body = await bridge.get("/processes/does-not-exist")
        assert status == 404 and body["status"] == 404
        status, body = await bridge.get("/processes?status=NOPE")
        assert status == 400
        status, body = await bridge.get("/processes?definition=order-saga&status=FAILED")
        assert status == 200 and [p["correlationKey"] for p in body["items"]] == ["o-cb"]
        status, body = await bridge.get("/healthz")
        assert status == 200 and body["status"] == "ok"
        status, text = await bridge.get("/metrics")
        assert status == 200
        assert 'bridge_processes{definition="order-saga",status="FAILED"} 1.0' in text
        assert 'bridge_inputs_total{kind="event",result="applied"}' in text
        assert 'bridge_inputs_total{kind="callback",result="not_found"}' in text
        assert "bridge_outbox_backlog" in text and "bridge_batch_seconds_bucket" in text
        assert 'bridge_callbacks_total{outcome="heartbeat",result="applied",via="http"} 1.0' in text
        assert 'bridge_callbacks_total{outcome="failure",result="applied",via="http"} 1.0' in text
        assert 'bridge_callbacks_total{outcome="success",result="conflict",via="http"} 1.0' in text
        assert 'bridge_steps_total{definition="order-saga"} 1.0' in text
        # Consumer lag is read from Kafka in the background: the first scrape may come early.
        events = bridge.topics["orders.events"]
        lag = f'bridge_consumer_lag{{partition="0",topic="{events}"}} 0.0'
        for _ in range(50):
            if lag in text:
                break
            await asyncio.sleep(0.2)
            status, text = await bridge.get("/metrics")
        assert lag in text, text
        status, body = await bridge.get("/approve/unknown-token")
        assert status == 404
