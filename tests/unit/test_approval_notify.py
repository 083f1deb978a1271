"""Pure tests of approval notices and escalation: the ``Notify`` and ``Escalation`` parameters
(parsed in the core, validated at deploy), the effects a step emits (who is told of what, when),
how an escalation changes the seats, and what a mail or webhook body says of hostile data."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bridge.asl.approvals import Ballot, Escalation, Vote, escalation_of
from bridge.asl.effects import ChangeSeats, NotifyApprovers, StartTimer
from bridge.asl.errors import DefinitionError, StatesError
from bridge.asl.inputs import ApprovalDecided, Stop, TimerFired
from bridge.asl.loading import parse_definition
from bridge.asl.notify import NotifySpec, Webhook, address_problem, notify_of
from bridge.notices import Notice, SeatLinks, mail, one_line, shown_recipient, webhook_body
from tests.unit.driver import Driver, approval, of_type

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


NOTIFY = {
    "Email": {"To": {"ann": "ann@example.com", "finance": ["f1@example.com", "f2@example.com"]}},
    "Webhook": {"Url": "https://hooks.example.com/T/B/x", "Format": "slack"},
}


def test_a_request_tells_every_seat_and_a_decision_tells_the_outcome() -> None:
    run = approval({"Assignees": ["ann"], "Groups": ["finance"], "Rule": "All", "Notify": NOTIFY})
    started = run.start({})
    told = one(started.effects)
    assert told.event == "Requested" and told.seats == ("user:ann", "group:finance")
    assert told.notify.addresses("user:ann") == ("ann@example.com",)
    assert told.notify.addresses("group:finance") == ("f1@example.com", "f2@example.com")
    assert told.notify.webhooks == (Webhook(url="https://hooks.example.com/T/B/x"),)

    run.apply(ApprovalDecided(run.wait.id, True, seat="user:ann"))
    decided = run.apply(ApprovalDecided(run.wait.id, False, seat="group:finance"))
    told = one(decided.effects)
    assert told.event == "Decided" and told.outcome == "REJECTED"


def test_an_approval_left_undecided_tells_everyone_it_is_closed() -> None:
    """A stopped process closes its approval: the people asked hear so (no links), once."""
    run = approval({"Assignees": ["ann"], "Groups": ["finance"], "Rule": "All", "Notify": NOTIFY})
    run.start({})
    run.apply(ApprovalDecided(run.wait.id, True, seat="user:ann"))
    stopped = run.apply(Stop())
    told = one(stopped.effects)
    assert (told.event, told.outcome) == ("Decided", "CLOSED")
    assert told.seats == ("user:ann", "group:finance")
    assert told.notify.webhooks == (Webhook(url="https://hooks.example.com/T/B/x"),)
    assert notice(event="Decided", outcome="CLOSED").headline.startswith("Closed: ")


def test_a_decided_approval_is_not_told_closed_as_well() -> None:
    run = approval({"Assignees": ["ann"], "Notify": NOTIFY})
    run.start({})
    decided = run.apply(ApprovalDecided(run.wait.id, True))
    assert [(t.event, t.outcome) for t in of_type(decided.effects, NotifyApprovers)] == [
        ("Decided", "APPROVED")
    ]


def test_an_approval_closed_in_the_step_that_asked_for_it_tells_nobody_it_is_closed() -> None:
    """A branch fails in the step that opened its sibling's approval: nobody was asked yet (the
    request is skipped when it goes out), so nobody hears of the close either."""
    definition = parse_definition(
        {
            "StartAt": "Both",
            "States": {
                "Both": {
                    "Type": "Parallel",
                    "Branches": [
                        {
                            "StartAt": "Approve",
                            "States": {
                                "Approve": {
                                    "Type": "Task",
                                    "Resource": "bridge:approval",
                                    "Parameters": {"Assignees": ["ann"], "Notify": NOTIFY},
                                    "End": True,
                                }
                            },
                        },
                        {"StartAt": "Boom", "States": {"Boom": {"Type": "Fail", "Error": "X"}}},
                    ],
                    "End": True,
                }
            },
        },
        "test",
    )
    started = Driver(definition).start({})
    assert [(t.event, t.outcome) for t in of_type(started.effects, NotifyApprovers)] == [
        ("Requested", None)
    ]


def test_a_notify_without_decided_is_not_told_of_the_close() -> None:
    run = approval({"Assignees": ["ann"], "Notify": {**NOTIFY, "On": ["Requested"]}})
    run.start({})
    assert of_type(run.apply(Stop()).effects, NotifyApprovers) == []


def one(effects: Any) -> NotifyApprovers:
    found = of_type(effects, NotifyApprovers)
    assert len(found) == 1, found
    return found[0]


def test_a_reminder_tells_only_the_seats_that_have_not_decided() -> None:
    run = approval(
        {
            "Assignees": ["ann", "bob"],
            "Rule": "All",
            "RemindBeforeSeconds": 600,
            "Notify": {"Email": {"To": {"ann": "a@x.org", "bob": "b@x.org"}}, "On": "Reminded"},
        }
    )
    started = run.start({})
    assert of_type(started.effects, NotifyApprovers) == []  # On: only reminders
    run.apply(ApprovalDecided(run.wait.id, True, seat="user:ann"))
    (reminder,) = run.wait.ballot.reminder_timers
    reminded = run.apply(TimerFired(reminder), after=3000)
    assert one(reminded.effects).seats == ("user:bob",)


def test_an_escalation_adds_seats_and_tells_only_the_new_ones() -> None:
    run = approval(
        {
            "Assignees": ["ann"],
            "Notify": {"Email": {"To": {"ann": "a@x.org", "carol": "c@x.org"}}},
            "Escalation": {"AfterSeconds": 600, "AddAssignees": ["carol"]},
        }
    )
    started = run.start({})
    ballot = run.wait.ballot
    assert ballot is not None and ballot.escalation_timer is not None
    assert any(
        isinstance(e, StartTimer) and e.timer_id == ballot.escalation_timer for e in started.effects
    )
    escalated = run.apply(TimerFired(ballot.escalation_timer), after=600)
    assert one(escalated.effects).seats == ("user:carol",)
    assert of_type(escalated.effects, ChangeSeats)[0].seats == ("user:ann", "user:carol")
    entries = [e for e in escalated.history if e.type == "ApprovalEscalated"]
    assert entries[0].details == {"added": ["user:carol"], "removed": []}
    # The new seat decides.
    done = run.apply(ApprovalDecided(run.wait.id, True, seat="user:carol"))
    assert run.running.status.value == "SUCCEEDED"
    assert one(done.effects).event == "Decided"


def test_a_reassignment_takes_the_undecided_seats_away() -> None:
    run = approval(
        {
            "Assignees": ["ann", "bob"],
            "Rule": 2,
            "Escalation": {"AfterSeconds": 60, "AddGroups": ["managers"], "Reassign": True},
        }
    )
    run.start({})
    run.apply(ApprovalDecided(run.wait.id, True, seat="user:ann"))
    ballot = run.wait.ballot
    assert ballot is not None and ballot.escalation_timer is not None
    run.apply(TimerFired(ballot.escalation_timer), after=60)
    assert run.wait.ballot is not None
    assert run.wait.ballot.seats == ("user:ann", "group:managers")
    # bob's links no longer count: he is no seat.
    refused = run.offer(ApprovalDecided(run.wait.id, True, seat="user:bob"))
    assert refused.rejected
    run.apply(ApprovalDecided(run.wait.id, True, seat="group:managers"))
    assert run.running.status.value == "SUCCEEDED"


def test_a_decided_approval_cancels_its_escalation() -> None:
    run = approval({"Escalation": {"AfterSeconds": 60, "AddAssignees": ["carol"]}})
    run.start({})
    timer = run.wait.ballot.escalation_timer
    decided = run.apply(ApprovalDecided(run.wait.id, True))
    assert any(getattr(e, "timer_id", None) == timer for e in decided.effects)


@given(
    st.lists(st.sampled_from(["a", "b", "c", "d"]), min_size=1, max_size=4, unique=True),
    st.lists(st.sampled_from(["a", "b", "c", "d"]), max_size=4, unique=True),
    st.lists(st.sampled_from(["c", "d", "e"]), min_size=1, max_size=3, unique=True),
    st.booleans(),
)
def test_an_escalation_keeps_every_vote_and_adds_its_seats(
    seats: list[str], voted: list[str], added: list[str], reassign: bool
) -> None:
    seats_ = tuple(f"user:{s}" for s in seats)
    votes = tuple(
        Vote(seat=f"user:{s}", approved=True, at=T0) for s in voted if f"user:{s}" in seats_
    )
    escalation = Escalation(
        after_seconds=1, seats=tuple(f"user:{s}" for s in added), reassign=reassign
    )
    ballot = Ballot(seats=seats_, votes=votes, rule="All", escalation=escalation)
    after, new, removed = ballot.escalated()
    assert all(vote.seat in after.seats for vote in after.votes)
    assert all(seat in after.seats for seat in escalation.seats)
    assert set(new) == set(escalation.seats) - set(seats_)
    assert not set(removed) & {vote.seat for vote in votes}
    assert len(after.seats) == len(set(after.seats))
    assert after.escalation is None
    if not reassign:
        assert removed == () and after.seats[: len(seats_)] == seats_


@pytest.mark.parametrize(
    ("given", "problem"),
    [
        ({"Notify": "mail"}, "Notify must be an object"),
        ({"Notify": {"Sms": {}}}, "Notify.Sms is not a field"),
        ({"Notify": {"On": ["Never"]}}, "Notify.On"),
        ({"Notify": {"Webhook": {"Url": "x", "Format": "irc"}}}, "Format"),
        ({"Assignees": ["ann"], "Notify": {"Email": {"To": ["a@x.org"]}}}, "map seats"),
        ({"Escalation": {"AfterSeconds": 0, "AddAssignees": ["x"]}}, "AfterSeconds"),
        ({"Escalation": {"AfterSeconds": 5}}, "needs AddAssignees or AddGroups"),
    ],
)
def test_a_bad_notify_or_escalation_from_the_data_fails_the_step_by_name(
    given: dict[str, Any], problem: str
) -> None:
    with pytest.raises(StatesError, match=problem):
        seats = ("user:ann",) if "Assignees" in given else ("anyone",)
        notify_of(given, "Approve", seats)
        escalation_of(given, "Approve")


def test_deploy_names_the_state_and_field_of_a_bad_notify() -> None:
    with pytest.raises(DefinitionError) as caught:
        approval(
            {
                "Notify": {
                    "Email": {"To": {"ann": "not an address\r\nBcc: x@evil"}},
                    "Webhook": {"Url": "ftp://hooks.example.com", "Format": "irc"},
                },
                "Escalation": {"AfterSeconds": -1, "AddAssignees": ["x"]},
            }
        )
    text = "\n".join(caught.value.problems)
    assert "States.Approve.Parameters.Notify.Email.To: " in text
    assert "States.Approve.Parameters.Notify.Webhook.Url: " in text
    assert "States.Approve.Parameters.Notify.Webhook.Format: " in text
    assert "States.Approve.Parameters.Escalation.AfterSeconds: " in text


def test_addresses_that_could_change_a_header_are_refused() -> None:
    assert address_problem("ann@example.com") is None
    for bad in ("ann@example.com\r\nBcc: x@y.z", "a\x00@x.org", "a@x.org, b@y.org", "<a@x.org>"):
        assert address_problem(bad) is not None
    # A user seat named by its address needs no To entry; a name that is none gets no mail.
    spec = NotifySpec(email=(), webhooks=(Webhook(url="https://h.example.com"),))
    assert spec.addresses("user:ann@example.com") == ("ann@example.com",)
    assert spec.addresses("user:ann") == ()


HOSTILE = "Order <b>1</b>\r\nBcc: victim@example.com\x00"


def notice(**changes: Any) -> Notice:
    values: dict[str, Any] = {
        "delivery_id": "d-1",
        "event": "Requested",
        "title": HOSTILE,
        "description": "<script>alert(1)</script>",
        "data": {"note": "<img src=x onerror=alert(1)>", "blob": "x" * 100_000},
        "process_id": "p-1",
        "definition": "orders",
        "state": "Approve",
        "approval_id": "a-1",
        "status_url": "http://bridge/approvals/a-1",
        "links": (SeatLinks("user:ann", "http://bridge/approve/A", "http://bridge/reject/R"),),
    }
    values.update(changes)
    return Notice(**values)


def test_a_mail_escapes_what_the_events_say_and_cannot_be_given_headers() -> None:
    message = mail(notice(), "bridge@example.com", "ann@example.com", "example.com")
    assert "\r" not in message["Subject"] and "\n" not in message["Subject"]
    assert message["Bcc"] is None
    assert message["Message-ID"] == "<d-1@example.com>"
    assert message["X-Bridge-Delivery-Id"] == "d-1"
    plain = message.get_body(("plain",))
    html = message.get_body(("html",))
    assert plain is not None and html is not None
    text, page = plain.get_content(), html.get_content()
    assert "http://bridge/approve/A" in text and "http://bridge/reject/R" in text
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert "<img" not in page
    assert 'href="http://bridge/approve/A"' in page
    assert len(text) < 10_000  # the blob is cut
    assert "more characters" in text


def test_webhook_bodies_slack_teams_and_json() -> None:
    slack = webhook_body(notice(), "slack")
    assert slack["text"].startswith("Approval requested: Order <b>1</b> Bcc")
    buttons = [e for b in slack["blocks"] if b["type"] == "actions" for e in b["elements"]]
    assert [b["url"] for b in buttons] == ["http://bridge/approve/A", "http://bridge/reject/R"]
    assert "&lt;b&gt;" in slack["blocks"][0]["text"]["text"]
    teams = webhook_body(notice(), "teams")
    assert teams["@type"] == "MessageCard"
    assert teams["potentialAction"][0]["targets"][0]["uri"] == "http://bridge/approve/A"
    plain = webhook_body(notice(event="Decided", outcome="APPROVED", links=()), "json")
    assert plain["type"] == "bridge.ApprovalDecided" and plain["outcome"] == "APPROVED"


def test_what_history_and_logs_show_of_a_recipient() -> None:
    assert shown_recipient("webhook", "https://hooks.slack.com/services/T/B/secret") == (
        "https://hooks.slack.com/…"
    )
    assert shown_recipient("email", "a@x.org\r\n") == "a@x.org"
    assert one_line("a\r\nb\x00c", 10) == "a b c"


def test_a_definition_wide_notify_serves_steps_without_their_own() -> None:
    states = {
        "First": {
            "Type": "Task",
            "Resource": "bridge:approval",
            "Parameters": {"Assignees": ["ann"]},
            "Next": "Second",
        },
        "Second": {
            "Type": "Task",
            "Resource": "bridge:approval",
            "Parameters": {"Assignees": ["ann"], "Notify": {"On": ["Decided"]}},
            "End": True,
        },
    }
    definition = parse_definition(
        {
            "StartAt": "First",
            "States": states,
            "Notify": {"Email": {"To": {"ann": "ann@example.com"}}},
        },
        "test",
    )
    run = Driver(definition)
    first = one(run.start({}).effects)
    assert first.notify.addresses("user:ann") == ("ann@example.com",)
    second = run.apply(ApprovalDecided(run.wait.id, True))
    told = of_type(second.effects, NotifyApprovers)
    # The second step's own Notify wins: no request, and no addresses of the definition's.
    assert [(t.state, t.event) for t in told] == [("First", "Decided")]

    with pytest.raises(DefinitionError) as caught:
        parse_definition(
            {"StartAt": "First", "States": states, "Notify": {"Email": {"To.$": "$.x"}}}, "test"
        )
    assert any(problem.startswith("Notify.To.$") for problem in caught.value.problems)
