"""HTTP tasks (``bridge:http:invoke``) in the pure core, and the invoker's pure parts: validation,
building the request, the result of a response, error names and ``Http.4xx``/``Http.5xx``
matching, redaction, the allow-list, the interpreter's steps and the local runner. No I/O."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest

from bridge.asl import errors
from bridge.asl.effects import CancelTimer, CloseWait, InvokeHttp, StartTimer
from bridge.asl.errors import DefinitionError, StatesError
from bridge.asl.http_task import (
    DEADLINE_GRACE_SECONDS,
    DEFAULT_TIMEOUT_SECONDS,
    REDACTED,
    HttpRequest,
    build_request,
    failure_of,
    redact_headers,
    redact_url,
    response_result,
)
from bridge.asl.inputs import HttpAnswered, Stop, TaskSucceeded, TimerFired
from bridge.asl.loading import parse_definition
from bridge.asl.process import ProcessStatus
from bridge.invoker import host_allowed, parse_pattern
from bridge.local import MocksError, run_local
from bridge.settings import Settings
from tests.unit.driver import Driver, of_type, one

# --------------------------------------------------------------------- definitions


def http_definition(
    parameters: Any = None, *, language: str = "JSONPath", **task: Any
) -> dict[str, Any]:
    field = "Arguments" if language == "JSONata" else "Parameters"
    state: dict[str, Any] = {
        "Type": "Task",
        "Resource": "bridge:http:invoke",
        field: parameters
        if parameters is not None
        else {"Method": "GET", "Url": "https://api.example.com/items"},
        "End": True,
        **task,
    }
    document: dict[str, Any] = {"StartAt": "Call", "States": {"Call": state}}
    if language == "JSONata":
        document["QueryLanguage"] = "JSONata"
    return document


def problems(document: dict[str, Any]) -> list[str]:
    try:
        parse_definition(document, "t")
    except DefinitionError as exc:
        return exc.problems
    return []


def test_a_valid_http_task_loads() -> None:
    assert problems(http_definition()) == []
    assert (
        problems(
            http_definition(
                {
                    "Method": "POST",
                    "ApiEndpoint": "http://127.0.0.1:8080/v1/orders",
                    "Headers": {"Authorization.$": "$.auth", "X-Count": 3},
                    "QueryParameters": {"page": 1, "tags": ["a", "b"]},
                    "RequestBody": {"orderId.$": "$.orderId"},
                },
                TimeoutSeconds=5,
            )
        )
        == []
    )


@pytest.mark.parametrize(
    ("parameters", "expected"),
    [
        ({"Url": "https://x.test/"}, "needs Method"),
        ({"Method": "GET"}, "needs Url (or ApiEndpoint)"),
        ({"Method": "FETCH", "Url": "https://x.test/"}, "Method: must be one of GET, POST"),
        ({"Method": "GET", "Url": "ftp://x.test/"}, "Url: must be an absolute http"),
        ({"Method": "GET", "Url": "/relative"}, "Url: must be an absolute http"),
        ({"Method": "GET", "Url": "https://u:p@x.test/"}, "must not carry credentials"),
        ({"Method": "GET", "Url": "https://x.test/a b"}, "spaces or control characters"),
        (
            {"Method": "GET", "Url": "https://x.test/", "ApiEndpoint": "https://y.test/"},
            "Url and ApiEndpoint are exclusive",
        ),
        ({"Method": "GET", "Url": "https://x.test/", "Body": {}}, "Body: not a field"),
        (
            {"Method": "GET", "Url": "https://x.test/", "RequestBody": {"a": 1}},
            "RequestBody: a GET request has no body",
        ),
        ({"Method": "GET", "Url": "https://x.test/", "Headers": {"Host": "y"}}, "set by the HTTP"),
        (
            {"Method": "GET", "Url": "https://x.test/", "Headers": {"Bad Name": "v"}},
            "not a valid header name",
        ),
        (
            {"Method": "GET", "Url": "https://x.test/", "Headers": {"X-A": "a\r\nX-B: b"}},
            "line breaks",
        ),
        ({"Method": "GET", "Url": "https://x.test/", "Headers": ["a"]}, "must be an object"),
        ("not an object", "needs Method and Url"),
    ],
)
def test_validation_names_the_field(parameters: Any, expected: str) -> None:
    found = problems(http_definition(parameters))
    assert any(expected in problem for problem in found), found
    assert all(problem.startswith("States.Call") for problem in found), found


def test_an_http_task_takes_no_heartbeat() -> None:
    found = problems(http_definition(HeartbeatSeconds=5, TimeoutSeconds=10))
    assert found == ["States.Call.HeartbeatSeconds: an HTTP call sends no heartbeats"]


def test_values_read_from_the_data_are_checked_when_the_task_runs() -> None:
    dynamic = {"Method.$": "$.method", "Url.$": "$.url", "Headers.$": "$.headers"}
    assert problems(http_definition(dynamic)) == []
    jsonata = {"Method": "{% $states.input.m %}", "Url": "{% $states.input.u %}"}
    assert problems(http_definition(jsonata, language="JSONata")) == []
    assert problems(http_definition("{% $states.input.request %}", language="JSONata")) == []


# --------------------------------------------------------------------- building the request


def test_a_json_body_is_encoded_with_its_content_type() -> None:
    request = build_request(
        {"Method": "post", "Url": "https://x.test/orders", "RequestBody": {"id": "o-1", "n": 2}}
    )
    assert request == HttpRequest(
        "POST",
        "https://x.test/orders",
        {"Content-Type": "application/json"},
        '{"id":"o-1","n":2}',
    )


def test_a_string_body_is_sent_as_text_and_a_given_content_type_wins() -> None:
    text = build_request({"Method": "PUT", "Url": "https://x.test/a", "RequestBody": "a=1&b=2"})
    assert text.body == "a=1&b=2"
    assert text.headers == {"Content-Type": "text/plain; charset=utf-8"}
    form = build_request(
        {
            "Method": "PUT",
            "Url": "https://x.test/a",
            "Headers": {"content-type": "application/x-www-form-urlencoded"},
            "RequestBody": "a=1&b=2",
        }
    )
    assert form.headers == {"content-type": "application/x-www-form-urlencoded"}


def test_query_parameters_join_the_urls_own_and_the_fragment_goes() -> None:
    request = build_request(
        {
            "Method": "GET",
            "Url": "HTTPS://x.test/search?q=a%20b#top",
            "QueryParameters": {"page": 2, "exact": True, "tag": ["x", "y z"]},
        }
    )
    assert request.url == "https://x.test/search?q=a+b&page=2&exact=true&tag=x&tag=y+z"
    assert build_request({"Method": "GET", "Url": "https://x.test"}).url == "https://x.test/"


def test_header_values_become_strings() -> None:
    request = build_request(
        {"Method": "DELETE", "Url": "https://x.test/a/1", "Headers": {"X-Count": 3, "X-A": "b"}}
    )
    assert request.headers == {"X-Count": "3", "X-A": "b"}
    assert request.body is None


@pytest.mark.parametrize(
    ("parameters", "expected"),
    [
        ({"Method": "GET", "Url": 42}, "Url: must be an absolute"),
        ({"Method": None, "Url": "https://x.test/"}, "Method: must be one of"),
        ({"Method": "GET", "Url": "https://x.test/", "Headers": {"X": {"a": 1}}}, "X: a header"),
        ({"Method": "GET", "Url": "https://x.test/", "Headers": {"A": "1", "a": "2"}}, "twice"),
        ({"Method": "GET", "Url": "https://x.test/", "QueryParameters": {"a": None}}, "a value"),
        ({"Method": "GET", "Url": "https://x.test/", "QueryParameters": "a=1"}, "an object"),
        ({"Method": "HEAD", "Url": "https://x.test/", "RequestBody": "x"}, "no body"),
        ({"Method": "GET", "Url": "https://x.test/", "Other": 1}, "unknown field(s) Other"),
        ([1, 2], "must be an object"),
    ],
)
def test_a_bad_request_from_the_data_is_http_invalid_request(
    parameters: Any, expected: str
) -> None:
    with pytest.raises(StatesError) as raised:
        build_request(parameters)
    assert raised.value.error == "Http.InvalidRequest"
    assert expected in raised.value.cause


def test_the_request_survives_its_json_form() -> None:
    request = build_request(
        {"Method": "PATCH", "Url": "https://x.test/a", "Headers": {"A": "b"}, "RequestBody": [1]}
    )
    assert HttpRequest.from_json(json.loads(json.dumps(request.to_json()))) == request


# --------------------------------------------------------------------- the response


def test_a_json_response_is_parsed_and_headers_are_lower_cased_and_joined() -> None:
    result = response_result(
        201,
        "Created",
        [("Content-Type", "application/json"), ("X-A", "1"), ("x-a", "2")],
        b'{"id": "r-1"}',
        "application/json",
        None,
    )
    assert result == {
        "StatusCode": 201,
        "StatusText": "Created",
        "Headers": {"content-type": "application/json", "x-a": "1, 2"},
        "ResponseBody": {"id": "r-1"},
    }


@pytest.mark.parametrize(
    ("body", "content_type", "charset", "expected"),
    [
        (b"hello", "text/plain", "utf-8", "hello"),
        (b'{"a": 1}', "application/problem+json", None, {"a": 1}),
        (b"not json", "application/json", None, "not json"),
        (b"", "application/json", None, None),
        ("caf\u00e9".encode("latin-1"), "text/plain", "latin-1", "caf\u00e9"),
        (b"x", "text/plain", "no-such-charset", "x"),
    ],
)
def test_the_body_is_json_when_it_says_so_else_text(
    body: bytes, content_type: str, charset: str | None, expected: Any
) -> None:
    result = response_result(200, "OK", [], body, content_type, charset)
    assert result["ResponseBody"] == expected


def test_a_2xx_answer_is_no_failure_and_any_other_is_http_status() -> None:
    ok = response_result(204, "No Content", [], b"", None, None)
    assert failure_of(ok) is None
    missing = response_result(
        404,
        "Not Found",
        [("Content-Type", "application/json"), ("Set-Cookie", "s=secret")],
        b'{"message": "no such order"}',
        "application/json",
        None,
    )
    failure = failure_of(missing)
    assert failure is not None and failure.error == "Http.404"
    cause = json.loads(failure.cause)
    assert cause["StatusCode"] == 404
    assert cause["ResponseBody"] == {"message": "no such order"}
    assert cause["Headers"]["set-cookie"] == REDACTED
    assert failure_of(response_result(302, "Found", [], b"", None, None)) is not None


def test_a_long_body_is_cut_short_in_the_cause() -> None:
    failure = failure_of(response_result(500, "Oops", [], b"x" * 100_000, "text/plain", None))
    assert failure is not None
    assert len(failure.cause) <= 8192
    assert json.loads(failure.cause)["ResponseBody"].endswith("...")


# --------------------------------------------------------------------- error names and matching


@pytest.mark.parametrize(
    ("error_equals", "error", "matches"),
    [
        (["Http.5xx"], "Http.503", True),
        (["Http.5xx"], "Http.500", True),
        (["Http.5xx"], "Http.404", False),
        (["Http.4xx"], "Http.404", True),
        (["Http.4xx"], "Http.4000", False),
        (["Http.4xx"], "Http.40", False),
        (["Http.4xx"], "Http.Timeout", False),
        (["Http.4xx"], "Http.404\n", False),
        (["Http.6xx"], "Http.600", False),
        (["Http.404"], "Http.404", True),
        (["Http.404"], "Http.4xx", False),
        (["States.ALL"], "Http.503", True),
        (["States.TaskFailed"], "Http.Timeout", True),
        (["States.Timeout"], "Http.Timeout", False),
        (["Http.Timeout", "Http.ConnectionError"], "Http.ConnectionError", True),
    ],
)
def test_error_equals_matches_http_errors(
    error_equals: list[str], error: str, matches: bool
) -> None:
    assert errors.error_matches(error_equals, error) is matches


# --------------------------------------------------------------------- redaction


def test_secret_headers_and_query_values_are_masked() -> None:
    assert redact_headers(
        {
            "Authorization": "Bearer abc",
            "X-Api-Key": "k",
            "Cookie": "c",
            "X-Auth-Token": "t",
            "Accept": "application/json",
            "Idempotency-Key": "p-1",
        }
    ) == {
        "Authorization": REDACTED,
        "X-Api-Key": REDACTED,
        "Cookie": REDACTED,
        "X-Auth-Token": REDACTED,
        "Accept": "application/json",
        "Idempotency-Key": "p-1",
    }
    assert (
        redact_url("https://x.test/a?q=1&access_token=abc&key=k&page=2")
        == "https://x.test/a?q=1&access_token=***&key=***&page=2"
    )
    assert redact_url("https://user:pw@x.test:8443/a") == "https://x.test:8443/a"


def test_what_the_history_shows_of_a_request_has_no_secret_and_no_body() -> None:
    request = build_request(
        {
            "Method": "POST",
            "Url": "https://x.test/a?token=t0p",
            "Headers": {"Authorization": "Bearer s3cret", "X-Trace": "1"},
            "RequestBody": {"card": "4111"},
        }
    )
    shown = request.redacted()
    assert shown == {
        "method": "POST",
        "url": "https://x.test/a?token=***",
        "headers": {"Authorization": REDACTED, "X-Trace": "1", "Content-Type": "application/json"},
        "hasBody": True,
    }
    assert "s3cret" not in json.dumps(shown) and "4111" not in json.dumps(shown)


# --------------------------------------------------------------------- the interpreter


def driver(**task: Any) -> Driver:
    parameters = task.pop(
        "Parameters",
        {
            "Method": "POST",
            "Url": "https://api.example.com/orders",
            "Headers": {"Authorization.$": "$.auth", "Idempotency-Key.$": "$$.Execution.Id"},
            "RequestBody": {"orderId.$": "$.orderId"},
        },
    )
    return Driver(parse_definition(http_definition(parameters, **task), "calls"))


def ok(body: Any = None, status: int = 200) -> dict[str, Any]:
    return {"StatusCode": status, "StatusText": "", "Headers": {}, "ResponseBody": body}


def test_the_task_asks_for_the_call_and_waits() -> None:
    run = driver(TimeoutSeconds=5)
    started = run.start({"orderId": "o-1", "auth": "Bearer s3cret"})
    call = one(started.effects, InvokeHttp)
    assert call.request == {
        "Method": "POST",
        "Url": "https://api.example.com/orders",
        "Headers": {
            "Authorization": "Bearer s3cret",
            "Idempotency-Key": "p-1",
            "Content-Type": "application/json",
        },
        "Body": '{"orderId":"o-1"}',
    }
    assert call.timeout_seconds == 5
    assert call.deadline == run.now + timedelta(seconds=5)
    assert run.wait.kind == "http" and run.wait.id == call.wait_id
    timer = one(started.effects, StartTimer)
    assert timer.due_at == call.deadline + timedelta(seconds=DEADLINE_GRACE_SECONDS)
    assert run.wait.timeout_timer == timer.timer_id
    entry = next(entry for entry in started.history if entry.type == "HttpInvoked")
    assert entry.details["headers"]["Authorization"] == REDACTED
    # The input had it already (StateEntered); the call's own entry does not repeat it.
    assert "s3cret" not in json.dumps(entry.details)


def test_the_timeout_is_sixty_seconds_unless_the_state_says() -> None:
    run = driver()
    call = one(run.start({"orderId": "o-1", "auth": "x"}).effects, InvokeHttp)
    assert call.timeout_seconds == DEFAULT_TIMEOUT_SECONDS == 60


def test_a_2xx_answer_is_the_result() -> None:
    run = driver(ResultPath="$.created")
    run.start({"orderId": "o-1", "auth": "x"})
    answer = ok({"id": "r-1"}, 201)
    done = run.apply(HttpAnswered(run.wait.id, answer), after=1)
    assert run.running.status is ProcessStatus.SUCCEEDED
    assert run.running.output == {"orderId": "o-1", "auth": "x", "created": answer}
    assert (
        one(done.effects, CloseWait).wait_id == one(run.log[0].result.effects, InvokeHttp).wait_id
    )
    assert of_type(done.effects, CancelTimer)


def test_a_response_header_secret_is_masked_in_the_history_not_in_the_result() -> None:
    run = driver()
    run.start({"orderId": "o-1", "auth": "x"})
    answer = {**ok("hi"), "Headers": {"set-cookie": "s=1"}}
    done = run.apply(HttpAnswered(run.wait.id, answer))
    succeeded = next(entry for entry in done.history if entry.type == "TaskSucceeded")
    assert succeeded.details["output"]["Headers"] == {"set-cookie": REDACTED}
    assert run.running.output["Headers"] == {"set-cookie": "s=1"}


def test_a_404_is_caught_by_http_4xx() -> None:
    definition = http_definition(
        {"Method": "GET", "Url": "https://x.test/o"},
        Catch=[{"ErrorEquals": ["Http.4xx"], "Next": "Missing", "ResultPath": "$.error"}],
    )
    definition["States"]["Missing"] = {"Type": "Succeed"}
    run = Driver(parse_definition(definition, "calls"))
    run.start({})
    run.apply(HttpAnswered(run.wait.id, ok({"message": "gone"}, 404)))
    assert run.running.status is ProcessStatus.SUCCEEDED
    error = run.running.output["error"]
    assert error["Error"] == "Http.404"
    assert json.loads(error["Cause"])["ResponseBody"] == {"message": "gone"}


def test_a_503_is_retried_by_http_5xx_with_a_new_call() -> None:
    run = driver(Retry=[{"ErrorEquals": ["Http.5xx"], "IntervalSeconds": 2, "MaxAttempts": 2}])
    first = one(run.start({"orderId": "o-1", "auth": "x"}).effects, InvokeHttp)
    failed = run.apply(HttpAnswered(first.wait_id, ok("busy", 503)))
    assert run.wait.kind == "retry"
    retry = one(failed.effects, StartTimer)
    again = run.apply(TimerFired(retry.timer_id), after=2)
    second = one(again.effects, InvokeHttp)
    assert second.wait_id != first.wait_id and second.request == first.request
    run.apply(HttpAnswered(second.wait_id, ok({"done": True})))
    assert run.running.status is ProcessStatus.SUCCEEDED


def test_a_call_without_response_fails_with_its_error() -> None:
    run = driver()
    run.start({"orderId": "o-1", "auth": "x"})
    run.apply(HttpAnswered(run.wait.id, error="Http.ConnectionError", cause="refused"))
    assert run.running.status is ProcessStatus.FAILED
    assert (run.running.error, run.running.cause) == ("Http.ConnectionError", "refused")


def test_the_states_deadline_fails_it_with_http_timeout() -> None:
    run = driver(TimeoutSeconds=3)
    run.start({"orderId": "o-1", "auth": "x"})
    timer = run.wait.timeout_timer
    assert timer is not None
    ended = run.apply(TimerFired(timer), after=3 + DEADLINE_GRACE_SECONDS)
    assert run.running.status is ProcessStatus.FAILED
    assert run.running.error == "Http.Timeout"
    assert of_type(ended.effects, CloseWait)


def test_an_answer_after_the_deadline_is_refused_like_a_late_callback() -> None:
    run = driver(TimeoutSeconds=3)
    run.start({"orderId": "o-1", "auth": "x"})
    before = run.running
    late = run.offer(HttpAnswered(run.wait.id, ok()), after=3 + DEADLINE_GRACE_SECONDS)
    assert late.rejected is not None and "too late" in late.rejected
    assert late.process == before and late.effects == ()
    # Within the grace, the call's own Http.Timeout is taken.
    run2 = driver(TimeoutSeconds=3)
    run2.start({"orderId": "o-1", "auth": "x"})
    run2.apply(HttpAnswered(run2.wait.id, error="Http.Timeout", cause="slow"), after=3.5)
    assert run2.running.error == "Http.Timeout"


def test_only_the_calls_own_answer_is_taken() -> None:
    run = driver()
    run.start({"orderId": "o-1", "auth": "x"})
    assert run.offer(HttpAnswered("another-call", ok())).rejected
    assert run.offer(TaskSucceeded(run.wait.id, {})).rejected


def test_stopping_the_process_cancels_the_call() -> None:
    run = driver()
    call = one(run.start({"orderId": "o-1", "auth": "x"}).effects, InvokeHttp)
    stopped = run.apply(Stop())
    assert one(stopped.effects, CloseWait).wait_id == call.wait_id


def test_a_bad_request_from_the_data_is_catchable() -> None:
    definition = http_definition(
        {"Method": "GET", "Url.$": "$.url"},
        Catch=[{"ErrorEquals": ["Http.InvalidRequest"], "Next": "Bad"}],
    )
    definition["States"]["Bad"] = {"Type": "Succeed"}
    run = Driver(parse_definition(definition, "calls"))
    started = run.start({"url": "not a url"})
    assert not of_type(started.effects, InvokeHttp)
    assert run.running.status is ProcessStatus.SUCCEEDED
    assert run.running.output["Error"] == "Http.InvalidRequest"


def test_jsonata_arguments_build_the_request() -> None:
    definition = http_definition(
        {
            "Method": "GET",
            "Url": "{% 'https://x.test/orders/' & $states.input.id %}",
            "QueryParameters": {"full": "{% $states.input.full %}"},
        },
        language="JSONata",
        TimeoutSeconds="{% $states.input.timeout %}",
    )
    run = Driver(parse_definition(definition, "calls"))
    call = one(run.start({"id": "o-9", "full": True, "timeout": 7}).effects, InvokeHttp)
    assert call.request["Url"] == "https://x.test/orders/o-9?full=true"
    assert call.timeout_seconds == 7


# --------------------------------------------------------------------- the allow-list


@pytest.mark.parametrize(
    ("url", "patterns", "allowed"),
    [
        ("https://evil.test/", [], True),
        ("https://api.example.com/a", ["api.example.com"], True),
        ("https://API.example.com./a", ["api.example.com"], True),
        ("https://other.example.com/a", ["api.example.com"], False),
        ("https://a.b.example.com/a", ["*.example.com"], True),
        ("https://example.com/a", ["*.example.com"], False),
        ("https://notexample.com/a", ["*.example.com"], False),
        ("http://127.0.0.1:8080/a", ["127.0.0.1:8080"], True),
        ("http://127.0.0.1:8081/a", ["127.0.0.1:8080"], False),
        ("http://127.0.0.1/a", ["127.0.0.1:80"], True),
        ("https://127.0.0.1/a", ["127.0.0.1:80"], False),
        ("http://127.0.0.1:9/a", ["127.0.0.1:*"], True),
        ("http://[::1]:8080/a", ["[::1]:8080"], True),
        ("http://[::1]:8081/a", ["[::1]:8080"], False),
        ("https://anything.test/", ["*"], True),
        ("https://x.test:99999/", ["x.test"], False),
    ],
)
def test_the_allow_list_matches_host_and_port(url: str, patterns: list[str], allowed: bool) -> None:
    assert host_allowed(url, patterns) is allowed


def test_host_patterns_parse_and_bad_ones_are_refused_at_start() -> None:
    assert parse_pattern("*.Example.com:8443") == ("*.example.com", "8443")
    assert parse_pattern("[::1]") == ("::1", None)
    settings = Settings(http_allowed_hosts="api.example.com, 127.0.0.1:8080")  # type: ignore[arg-type]
    assert settings.http_allowed_hosts == ["api.example.com", "127.0.0.1:8080"]
    with pytest.raises(ValueError, match="not a host pattern"):
        Settings(http_allowed_hosts="https://api.example.com/")  # type: ignore[arg-type]


# --------------------------------------------------------------------- the local runner


def test_the_local_runner_answers_http_tasks_from_mocks() -> None:
    definition = http_definition(
        {"Method": "GET", "Url": "https://x.test/o"},
        Retry=[{"ErrorEquals": ["Http.5xx"], "IntervalSeconds": 1, "MaxAttempts": 1}],
        Catch=[{"ErrorEquals": ["Http.Timeout"], "Next": "Slow"}],
        ResultSelector={"id.$": "$.ResponseBody.id"},
    )
    definition["States"]["Slow"] = {"Type": "Fail", "Error": "Slow"}
    result = run_local(
        definition,
        {},
        mocks={"Call": [{"Return": {"StatusCode": 503}}, {"Return": {"ResponseBody": {"id": 7}}}]},
        skip_waits=True,
    )
    assert result.succeeded and result.output == {"id": 7}
    thrown = run_local(
        definition, {}, mocks={"Call": {"Throw": {"Error": "Http.Timeout"}}}, skip_waits=True
    )
    assert thrown.error == "Slow"
    never = run_local(definition, {}, mocks={"Call": {"Timeout": True}}, skip_waits=True)
    assert never.error == "Slow"
    with pytest.raises(MocksError, match="StatusCode"):
        run_local(definition, {}, mocks={"Call": {"Return": {"StatusCode": 42}}})
