"""Semantic validation of a parsed definition: every problem pydantic's field checks cannot see.

``semantic_problems(definition)`` yields each problem with the state and field it concerns:
transitions to missing states, unreachable states, paths, templates and JSONata expressions that do
not parse, fields that only one query language allows, and the rules of each bridge resource.
``loading.parse_definition`` raises them together as one ``DefinitionError``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from pydantic import BaseModel
from pydantic.alias_generators import to_pascal

from bridge.asl import (
    approvals,
    choice,
    forms,
    http_task,
    intrinsics,
    jsonata,
    notify,
    paths,
    search,
)
from bridge.asl.dataflow import rfc3339
from bridge.asl.model import (
    APPROVAL,
    CHILD_START_FIELDS,
    EVENT_WAIT,
    EXPRESS_MAX_SECONDS,
    HTTP_INVOKE,
    PROCESS_START,
    PROCESS_START_SYNC,
    RESOURCES,
    SEND,
    SEND_WAIT,
    ChoiceState,
    Definition,
    Machine,
    MapState,
    ParallelState,
    TaskState,
    WaitState,
    _Flow,
    _named_states,
    event_wait_specs,
)
from bridge.asl.schedule_times import spec_problems
from bridge.asl.types import JSON


def semantic_problems(definition: Definition) -> Iterator[str]:
    yield from _machine_problems(definition, "", set(), definition.query_language)
    if definition.express and (definition.timeout_seconds or 0) > EXPRESS_MAX_SECONDS:
        yield (
            f"TimeoutSeconds: an EXPRESS process runs {EXPRESS_MAX_SECONDS} seconds at most; "
            "use STANDARD for longer ones"
        )
    for index, trigger in enumerate(definition.triggers):
        for field in ("correlation_key", "event_id", "type_path", "input_path"):
            value = getattr(trigger, field)
            if value is None:
                continue
            if field in ("correlation_key", "input_path") and jsonata.is_expression(value):
                problem = jsonata.validate(value)
            else:
                problem = paths.validate_path(value)
            if problem:
                yield f"Triggers[{index}].{to_pascal(field)}: {problem}"
    yield from _search_problems("SearchAttributes", definition, definition.query_language)
    yield from _attribute_count_problems(definition)
    yield from _schedule_problems(definition)
    if definition.notify is not None:
        dynamic = [key for key in _keys(definition.notify) if key.endswith(".$")]
        if dynamic:
            yield f"Notify.{dynamic[0]}: a definition's Notify is written out (read the data in "
            "a step's own Notify)"
        for problem in _approval_problems("", {"Notify": definition.notify}):
            yield problem.removeprefix(".")


def _keys(value: JSON) -> Iterator[str]:
    """Every key of ``value``, however deep."""
    if isinstance(value, dict):
        for key, inner in value.items():
            yield key
            yield from _keys(inner)
    elif isinstance(value, list):
        for inner in value:
            yield from _keys(inner)


def _schedule_problems(definition: Definition) -> Iterator[str]:
    seen: set[str] = set()
    for index, declared in enumerate(definition.schedules):
        where = f"Schedules[{index}]"
        if declared.name in seen:
            yield f"{where}.Name: another schedule is named {declared.name!r}"
        seen.add(declared.name)
        at = None
        if declared.at is not None:
            at = rfc3339(declared.at)
            if at is None:
                yield f"{where}.At: {declared.at[:100]!r} is not an RFC 3339 timestamp"
                continue
        problems = spec_problems(declared.cron, declared.time_zone, declared.rate_seconds, at)
        yield from (f"{where}.{problem}" for problem in problems)


def _machine_problems(
    machine: Definition | Machine, prefix: str, names: set[str], language: str
) -> Iterator[str]:
    """Problems of one (sub-)machine; ``names`` collects state names across the whole definition.

    ``language`` is the definition's QueryLanguage, which each state may override.
    """
    states = machine.states
    if machine.start_at not in states:
        yield f"{prefix}StartAt: state {machine.start_at!r} does not exist"
    for name, state in states.items():
        where = f"{prefix}States.{name}"
        if name in names:
            yield f"{where}: state names must be unique in the whole definition"
        names.add(name)
        if len(name) > 80:
            yield f"{where}: state names are at most 80 characters"
        yield from _transition_problems(where, state, states)
        state_language = state.query_language or language
        yield from _search_problems(f"{where}.SearchAttributes", state, state_language)
        if language == "JSONata" and state.query_language == "JSONPath":
            yield f"{where}.QueryLanguage: a JSONata definition cannot have JSONPath states"
        if state_language == "JSONata":
            yield from _jsonata_problems(where, state)
        else:
            yield from _jsonpath_only_problems(where, state)
            yield from _path_problems(where, state)
        if isinstance(state, TaskState):
            yield from _task_problems(where, state, state_language)
        if isinstance(state, TaskState | ParallelState | MapState):
            yield from _error_handling_problems(where, state)
        if isinstance(state, ChoiceState) and state_language == "JSONPath":
            for index, rule in enumerate(state.choices):
                yield from choice.validate_rule(rule, f"{where}.Choices[{index}]")
        if isinstance(state, WaitState):
            given = [
                field
                for field in ("seconds", "timestamp", "seconds_path", "timestamp_path")
                if getattr(state, field) is not None
            ]
            if len(given) != 1:
                yield (
                    f"{where}: a Wait state needs exactly one of Seconds, Timestamp, SecondsPath, "
                    "TimestampPath"
                )
            stamp = state.timestamp
            if (
                isinstance(stamp, str)
                and not jsonata.is_expression(stamp)
                and rfc3339(stamp) is None
            ):
                yield f"{where}.Timestamp: String does not match RFC3339 timestamp"
        if isinstance(state, ParallelState):
            for index, branch in enumerate(state.branches):
                yield from _machine_problems(
                    branch, f"{where}.Branches[{index}].", names, state_language
                )
        if isinstance(state, MapState):
            yield from _map_problems(where, state, names, state_language)
    yield from _reachability_problems(machine, prefix)


def _map_problems(where: str, state: MapState, names: set[str], language: str) -> Iterator[str]:
    if (state.item_processor is None) == (state.iterator is None):
        yield f"{where}: a Map state needs exactly one of ItemProcessor and Iterator"
    elif state.item_processor is not None:
        yield from _machine_problems(
            state.item_processor, f"{where}.ItemProcessor.", names, language
        )
    elif state.iterator is not None:
        yield from _machine_problems(state.iterator, f"{where}.Iterator.", names, language)
    if state.item_selector is not None and state.parameters is not None:
        yield f"{where}: ItemSelector and Parameters are exclusive (Parameters is the old name)"
    if state.items is not None and "items_path" in state.model_fields_set:
        yield f"{where}: Items and ItemsPath are exclusive"
    if state.items is not None and not (
        isinstance(state.items, list)
        or (language == "JSONata" and jsonata.is_expression(state.items))
    ):
        yield f"{where}.Items: must be an array" + (
            " or a JSONata expression" if language == "JSONata" else ""
        )
    if language == "JSONata":
        return
    if state.items_path is not None and (problem := paths.validate_path(state.items_path)):
        yield f"{where}.ItemsPath: {problem}"
    for fixed, path in (
        ("max_concurrency", "max_concurrency_path"),
        ("tolerated_failure_count", "tolerated_failure_count_path"),
        ("tolerated_failure_percentage", "tolerated_failure_percentage_path"),
    ):
        if path in state.model_fields_set and fixed in state.model_fields_set:
            yield f"{where}: {to_pascal(fixed)} and {to_pascal(path)} are exclusive"
        value = getattr(state, path)
        if value is not None and (problem := paths.validate_path(value)):
            yield f"{where}.{to_pascal(path)}: {problem}"
    for field in ("item_selector",):
        template = getattr(state, field)
        if template is not None:
            yield from _template_problems(f"{where}.{to_pascal(field)}", template)


def _targets(state: object) -> Iterator[tuple[str, str]]:
    if isinstance(state, _Flow) and state.next is not None:
        yield "Next", state.next
    if isinstance(state, TaskState | ParallelState | MapState):
        for index, catcher in enumerate(state.catch):
            yield f"Catch[{index}].Next", catcher.next
    if isinstance(state, ChoiceState):
        for index, rule in enumerate(state.choices):
            if isinstance(rule.get("Next"), str):
                yield f"Choices[{index}].Next", rule["Next"]
        if state.default is not None:
            yield "Default", state.default


def _transition_problems(where: str, state: object, states: Mapping[str, object]) -> Iterator[str]:
    for field, target in _targets(state):
        if target not in states:
            yield f"{where}.{field}: state {target!r} does not exist"
    if isinstance(state, _Flow):
        if state.end and state.next is not None:
            yield f"{where}: has both Next and End"
        if not state.end and state.next is None:
            yield f"{where}: needs Next or End: true"
    if isinstance(state, ChoiceState):
        for index, rule in enumerate(state.choices):
            if "Next" not in rule:
                yield f"{where}.Choices[{index}]: a top-level Choice rule needs Next"


def _path_problems(where: str, state: object) -> Iterator[str]:
    for field in (
        "input_path",
        "output_path",
        "seconds_path",
        "timestamp_path",
        "timeout_seconds_path",
        "heartbeat_seconds_path",
        "error_path",
        "cause_path",
    ):
        value = getattr(state, field, None)
        if value is None:
            continue
        if field in ("error_path", "cause_path") and intrinsics.is_intrinsic(value):
            # AWS allows an intrinsic function here (States.Format and a few others).
            problem = intrinsics.validate(value)
        else:
            problem = paths.validate_path(value)
        if problem:
            yield f"{where}.{to_pascal(field)}: {problem}"
    result_path = getattr(state, "result_path", None)
    if result_path is not None and (problem := paths.validate_reference_path(result_path)):
        yield f"{where}.ResultPath: {problem}"
    for field in ("parameters", "result_selector"):
        template = getattr(state, field, None)
        if template is not None:
            yield from _template_problems(f"{where}.{to_pascal(field)}", template)
    for field, assign in _assigns(state):
        if assign is not None:
            yield from _assign_problems(f"{where}.{field}", assign)
    if isinstance(state, TaskState | ParallelState | MapState):
        for index, catcher in enumerate(state.catch):
            if catcher.result_path is not None and (
                problem := paths.validate_reference_path(catcher.result_path)
            ):
                yield f"{where}.Catch[{index}].ResultPath: {problem}"


def _template_problems(where: str, template: JSON) -> Iterator[str]:
    if isinstance(template, dict):
        for key, value in template.items():
            if key.endswith(".$"):
                if not isinstance(value, str):
                    yield f"{where}.{key}: a field ending in .$ needs a path or intrinsic string"
                elif intrinsics.is_intrinsic(value):
                    if problem := intrinsics.validate(value):
                        yield f"{where}.{key}: {problem}"
                elif problem := paths.validate_path(value):
                    yield f"{where}.{key}: {problem}"
            else:
                yield from _template_problems(f"{where}.{key}", value)
    elif isinstance(template, list):
        for index, item in enumerate(template):
            yield from _template_problems(f"{where}[{index}]", item)


#: Fields that only JSONPath states have, and what JSONata states use instead.
_JSONPATH_ONLY = {
    "input_path": "Arguments or Output",
    "output_path": "Output",
    "parameters": "Arguments",
    "result_selector": "Output",
    "result_path": "Output and Assign",
    "items_path": "Items",
    "seconds_path": "Seconds",
    "timestamp_path": "Timestamp",
    "timeout_seconds_path": "TimeoutSeconds",
    "heartbeat_seconds_path": "HeartbeatSeconds",
    "max_concurrency_path": "MaxConcurrency",
    "tolerated_failure_count_path": "ToleratedFailureCount",
    "tolerated_failure_percentage_path": "ToleratedFailurePercentage",
    "error_path": "Error",
    "cause_path": "Cause",
}
_EXPRESSION_FIELDS = (
    "timeout_seconds",
    "heartbeat_seconds",
    "seconds",
    "max_concurrency",
    "tolerated_failure_count",
    "tolerated_failure_percentage",
)


def _jsonata_problems(where: str, state: object) -> Iterator[str]:
    assert isinstance(state, BaseModel)
    given = state.model_fields_set
    for field, instead in _JSONPATH_ONLY.items():
        if field in given:
            yield f"{where}.{to_pascal(field)}: is a JSONPath field; JSONata states use {instead}"
    for field in ("arguments", "output", "items", "item_selector", "error", "cause", "timestamp"):
        if field in given:
            value = getattr(state, field)
            yield from jsonata.validate_template(value, f"{where}.{to_pascal(field)}")
    for field in _EXPRESSION_FIELDS:
        value = getattr(state, field, None)
        if isinstance(value, str):
            yield from jsonata.validate_template(value, f"{where}.{to_pascal(field)}")
    if isinstance(state, ChoiceState):
        for index, rule in enumerate(state.choices):
            at = f"{where}.Choices[{index}]"
            unknown = set(rule) - {"Condition", "Next", "Assign", "Output", "Comment"}
            for key in sorted(unknown):
                yield f"{at}.{key}: not a field of a JSONata choice rule (use Condition)"
            condition = rule.get("Condition")
            if condition is None:
                yield f"{at}: a JSONata choice rule needs Condition"
            elif not isinstance(condition, bool):
                yield from jsonata.validate_template(condition, f"{at}.Condition")
            if "Output" in rule:
                yield from jsonata.validate_template(rule["Output"], f"{at}.Output")
    for index, catcher in enumerate(getattr(state, "catch", [])):
        if "result_path" in catcher.model_fields_set:
            yield f"{where}.Catch[{index}].ResultPath: is a JSONPath field; use Output and Assign"
        if catcher.output is not None:
            yield from jsonata.validate_template(catcher.output, f"{where}.Catch[{index}].Output")
    for field, assign in _assigns(state):
        if assign is not None:
            yield from jsonata.validate_template(assign, f"{where}.{field}")


def _jsonpath_only_problems(where: str, state: object) -> Iterator[str]:
    assert isinstance(state, BaseModel)
    given = state.model_fields_set
    for field in ("arguments", "output"):
        if field in given:
            yield (
                f"{where}.{to_pascal(field)}: is a JSONata field; set QueryLanguage to JSONata "
                "on the state or the definition"
            )
    for field in _EXPRESSION_FIELDS:
        if isinstance(getattr(state, field, None), str):
            yield f"{where}.{to_pascal(field)}: a {{% %}} expression needs QueryLanguage JSONata"
    for index, catcher in enumerate(getattr(state, "catch", [])):
        if catcher.output is not None:
            yield f"{where}.Catch[{index}].Output: is a JSONata field"


def _assigns(state: object) -> list[tuple[str, JSON]]:
    assigns = [("Assign", getattr(state, "assign", None))]
    assigns += [
        (f"Catch[{index}].Assign", catcher.assign)
        for index, catcher in enumerate(getattr(state, "catch", []))
    ]
    assigns += [
        (f"Choices[{index}].Assign", rule.get("Assign"))
        for index, rule in enumerate(getattr(state, "choices", []))
    ]
    return assigns


def _assign_problems(where: str, assign: JSON) -> Iterator[str]:
    if not isinstance(assign, dict):
        yield f"{where}: must be an object of variable names and values"
        return
    for key in assign:
        name = key[:-2] if key.endswith(".$") else key
        if not name.isidentifier() or name.startswith("$"):
            yield f"{where}.{key}: a variable name is a letter or _ then letters, digits or _"
        elif name == "states":
            yield f"{where}.{key}: $states is reserved"
    yield from _template_problems(where, assign)


def _event_wait_problems(where: str, given: JSON) -> Iterator[str]:
    specs = event_wait_specs(given)
    if not specs:
        yield f"{where}: {EVENT_WAIT} needs Topic, EventType, CorrelationKey and KeyPath, or Events"
    for index, spec in enumerate(specs):
        at = (
            where
            if len(specs) == 1 and "Events" not in (given or {})
            else f"{where}.Events[{index}]"
        )
        if not isinstance(spec.get("Topic"), str) or not spec["Topic"]:
            yield f"{at}.Topic: a literal topic name, so that the workers know what to read"
        types = spec.get("EventType")
        if not (
            isinstance(types, str)
            or (isinstance(types, list) and types and all(isinstance(t, str) for t in types))
        ):
            yield f"{at}.EventType: a literal event type or list of types"
        key_path = spec.get("KeyPath")
        if not isinstance(key_path, str):
            yield f"{at}.KeyPath: the JSONPath of the correlation key in the event's data"
        elif problem := paths.validate_path(key_path):
            yield f"{at}.KeyPath: {problem}"
        if "CorrelationKey" not in spec and "CorrelationKey.$" not in spec:
            yield f"{at}.CorrelationKey: the key to wait for (usually CorrelationKey.$)"
        event_id = spec.get("EventId")
        if event_id is not None and (
            not isinstance(event_id, str) or paths.validate_path(event_id) is not None
        ):
            yield f"{at}.EventId: the JSONPath of the event's identity"
        buffer = spec.get("BufferSeconds")
        if buffer is not None and (
            isinstance(buffer, bool) or not isinstance(buffer, int) or buffer < 0
        ):
            yield f"{at}.BufferSeconds: a whole number of seconds"
        unknown = set(spec) - {
            "Topic",
            "EventType",
            "CorrelationKey",
            "CorrelationKey.$",
            "KeyPath",
            "TypePath",
            "BufferSeconds",
            "EventId",
        }
        for key in sorted(unknown):
            yield f"{at}.{key}: not a field of an event wait"


def _http_problems(where: str, given: JSON, language: str) -> Iterator[str]:
    """Problems of a ``bridge:http:invoke`` task's Parameters (Arguments) that show before it
    runs: fields, and the literal method, URL and headers. Values read from the data are checked
    when the task runs (a bad one fails it with ``Http.InvalidRequest``)."""
    jsonata_state = language == "JSONata"

    def dynamic(key: str, value: JSON) -> bool:
        return key.endswith(".$") or (jsonata_state and jsonata.is_expression(value))

    if jsonata_state and jsonata.is_expression(given):
        return
    if not isinstance(given, dict):
        yield f"{where}: {HTTP_INVOKE} needs Method and Url"
        return
    names = {key[:-2] if key.endswith(".$") else key: key for key in given}
    for name in sorted(set(names) - set(http_task.FIELDS)):
        yield f"{where}.{names[name]}: not a field of an HTTP call"
    if "Method" not in names:
        yield f"{where}: {HTTP_INVOKE} needs Method"
    elif not dynamic(names["Method"], given[names["Method"]]):
        method = http_task.method_problem(given["Method"])
        if not isinstance(method, str):
            yield f"{where}.Method: {method.text}"
        elif "RequestBody" in names and method in ("GET", "HEAD"):
            yield f"{where}.RequestBody: a {method} request has no body"
    urls = [name for name in ("Url", "ApiEndpoint") if name in names]
    if not urls:
        yield f"{where}: {HTTP_INVOKE} needs Url (or ApiEndpoint)"
    elif len(urls) == 2:
        yield f"{where}: Url and ApiEndpoint are exclusive"
    for name in urls:
        key = names[name]
        if not dynamic(key, given[key]) and (problem := http_task.url_problem(given[key])):
            yield f"{where}.{key}: {problem}"
    for name in ("Headers", "QueryParameters"):
        key = names.get(name)
        if key is None or dynamic(key, given[key]):
            continue
        if not isinstance(given[key], dict):
            yield f"{where}.{key}: must be an object"
            continue
        if name == "Headers":
            seen: set[str] = set()
            for header, value in given[key].items():
                literal = not dynamic(header, value)
                header_name = header[:-2] if header.endswith(".$") else header
                problem = http_task.header_problem(header_name, value if literal else "")
                if problem is not None:
                    yield f"{where}.Headers.{header}: {problem}"
                if header_name.lower() in seen:
                    yield f"{where}.Headers.{header}: given twice"
                seen.add(header_name.lower())


def _task_problems(where: str, state: TaskState, language: str) -> Iterator[str]:
    if state.resource not in RESOURCES:
        known = ", ".join(RESOURCES)
        yield f"{where}.Resource: unknown resource {state.resource!r}; known: {known}"
        return
    field = "Arguments" if language == "JSONata" else "Parameters"
    given = state.arguments if language == "JSONata" else state.parameters
    if state.resource == EVENT_WAIT:
        yield from _event_wait_problems(f"{where}.{field}", given)
        return
    if state.resource == HTTP_INVOKE:
        yield from _http_problems(f"{where}.{field}", given, language)
        if state.heartbeat_seconds is not None or state.heartbeat_seconds_path is not None:
            yield f"{where}.HeartbeatSeconds: an HTTP call sends no heartbeats"
    if state.resource in (PROCESS_START, PROCESS_START_SYNC):
        yield from _child_start_problems(where, field, state, language)
        return
    if state.resource == APPROVAL and isinstance(given, dict):
        yield from _approval_problems(f"{where}.{field}", given)
    parameters = given if isinstance(given, dict) else {}
    if state.resource in (SEND, SEND_WAIT) and not (
        language == "JSONata" and jsonata.is_expression(given)
    ):
        if "Topic" not in parameters and "Topic.$" not in parameters:
            yield f"{where}.{field}: {state.resource} needs Topic"
        if "Message" not in parameters and "Message.$" not in parameters:
            yield f"{where}.{field}: {state.resource} needs Message"
    if state.resource == APPROVAL and ("Form" in parameters or "Outcomes" in parameters):
        # A form written out in the definition is checked now, not when a process reaches it.
        _, problems = forms.parse_form(parameters.get("Form"), parameters.get("Outcomes"))
        yield from (f"{where}.{field}.{problem}" for problem in problems)
    token = "$states.context.Task.Token" if language == "JSONata" else "$$.Task.Token"
    if state.resource == SEND_WAIT and token not in repr(given):
        yield f"{where}.{field}: .waitForTaskToken needs {token} in the message"
    if state.timeout_seconds is not None and state.timeout_seconds_path is not None:
        yield f"{where}: TimeoutSeconds and TimeoutSecondsPath are exclusive"
    if state.heartbeat_seconds is not None and state.heartbeat_seconds_path is not None:
        yield f"{where}: HeartbeatSeconds and HeartbeatSecondsPath are exclusive"
    if (
        state.heartbeat_seconds is not None
        and state.timeout_seconds is not None
        and isinstance(state.heartbeat_seconds, int)
        and isinstance(state.timeout_seconds, int)
        and state.heartbeat_seconds >= state.timeout_seconds
    ):
        yield f"{where}.HeartbeatSeconds: must be smaller than TimeoutSeconds"


def _approval_problems(where: str, given: dict[str, JSON]) -> Iterator[str]:
    """Problems of an approval's Notify and Escalation that show before it runs; what the
    data gives (``Notify.$``, ``To.$``, ``Url.$``) is judged when it is used."""
    escalation = given.get("Escalation")
    if escalation is not None and (problem := approvals.escalation_problem(escalation)):
        yield f"{where}.Escalation{problem}"
    spec = given.get("Notify")
    if spec is None:
        return
    if not isinstance(spec, dict):
        yield f"{where}.Notify: must be an object"
        return
    for key in sorted(spec):
        if key.removesuffix(".$") not in notify.FIELDS:
            yield f"{where}.Notify.{key}: not a field (known: {', '.join(notify.FIELDS)})"
    on = spec.get("On")
    if on is not None and not (
        on in notify.EVENTS
        or (isinstance(on, list) and all(event in notify.EVENTS for event in on))
    ):
        yield f"{where}.Notify.On: must list some of {', '.join(notify.EVENTS)}"
    mail = spec.get("Email")
    if mail is not None:
        if not isinstance(mail, dict) or set(mail) - {"To", "To.$"}:
            yield f"{where}.Notify.Email: must be an object with To (or To.$)"
        elif isinstance(to := mail.get("To"), str | list | dict):
            values = to.values() if isinstance(to, dict) else [to]
            for value in values:
                for address in value if isinstance(value, list) else [value]:
                    problem = (
                        notify.address_problem(address)
                        if isinstance(address, str)
                        else "an address must be text"
                    )
                    if problem is not None:
                        yield f"{where}.Notify.Email.To: {problem}"
    hooks = spec.get("Webhook")
    for hook in hooks if isinstance(hooks, list) else [] if hooks is None else [hooks]:
        if not isinstance(hook, dict):
            yield f"{where}.Notify.Webhook: must be an object with Url and Format"
            continue
        for key in sorted(set(hook) - {"Url", "Url.$", "Format"}):
            yield f"{where}.Notify.Webhook.{key}: not a field (known: Url, Format)"
        if "Url" not in hook and "Url.$" not in hook:
            yield f"{where}.Notify.Webhook: needs Url"
        if "Url" in hook and (problem := http_task.url_problem(hook["Url"])):
            yield f"{where}.Notify.Webhook.Url: {problem}"
        if hook.get("Format", "slack") not in notify.FORMATS:
            yield f"{where}.Notify.Webhook.Format: must be one of {', '.join(notify.FORMATS)}"


def _child_start_problems(where: str, field: str, state: TaskState, language: str) -> Iterator[str]:
    given = state.arguments if language == "JSONata" else state.parameters
    if not (language == "JSONata" and jsonata.is_expression(given)):
        if not isinstance(given, dict):
            yield f"{where}.{field}: {state.resource} needs Definition (and Input, Name, ...)"
            return
        names = {key[:-2] if key.endswith(".$") else key: key for key in given}
        if "Definition" not in names:
            yield f"{where}.{field}.Definition: the child's definition (NAME, NAME:ALIAS, ...)"
        elif names["Definition"] == "Definition" and (
            not isinstance(given["Definition"], str) or not given["Definition"]
        ):
            yield f"{where}.{field}.Definition: a definition name, NAME:ALIAS or NAME:VERSION"
        for name in sorted(set(names) - set(CHILD_START_FIELDS)):
            known = ", ".join(CHILD_START_FIELDS)
            yield f"{where}.{field}.{names[name]}: not a field of a child start; known: {known}"
    if state.heartbeat_seconds is not None or state.heartbeat_seconds_path is not None:
        yield f"{where}.HeartbeatSeconds: a child process sends no heartbeats"
    if state.resource == PROCESS_START and (
        state.timeout_seconds is not None or state.timeout_seconds_path is not None
    ):
        yield (
            f"{where}.TimeoutSeconds: {PROCESS_START} answers at once; only "
            f"{PROCESS_START_SYNC} waits"
        )
    if state.timeout_seconds is not None and state.timeout_seconds_path is not None:
        yield f"{where}: TimeoutSeconds and TimeoutSecondsPath are exclusive"


def _error_handling_problems(
    where: str, state: TaskState | ParallelState | MapState
) -> Iterator[str]:
    for index, retrier in enumerate(state.retry):
        if "States.ALL" in retrier.error_equals and (
            len(retrier.error_equals) != 1 or index != len(state.retry) - 1
        ):
            yield f"{where}.Retry[{index}]: States.ALL must stand alone in the last retrier"
    for index, catcher in enumerate(state.catch):
        if "States.ALL" in catcher.error_equals and (
            len(catcher.error_equals) != 1 or index != len(state.catch) - 1
        ):
            yield f"{where}.Catch[{index}]: States.ALL must stand alone in the last catcher"


def _reachability_problems(machine: Definition | Machine, prefix: str) -> Iterator[str]:
    seen: set[str] = set()
    pending = [machine.start_at]
    while pending:
        name = pending.pop()
        if name in seen or name not in machine.states:
            continue
        seen.add(name)
        pending.extend(target for _, target in _targets(machine.states[name]))
    for name in machine.states:
        if name not in seen:
            yield f"{prefix}States.{name}: is not reachable from StartAt"


def _search_problems(where: str, owner: object, language: str) -> Iterator[str]:
    """A ``SearchAttributes`` object: names, and each path or expression (bridge.asl.search)."""
    fields = getattr(owner, "search_attributes", None)
    if fields is None:
        return
    jsonata_language = language == "JSONata"
    yield from search.fields_problems(where, fields, jsonata=jsonata_language)
    for key, value in fields.items():
        if jsonata_language:
            yield from jsonata.validate_template(value, f"{where}/{key}")
        elif key.endswith(".$"):
            if not isinstance(value, str):
                yield f"{where}.{key}: a field ending in .$ needs a path or intrinsic string"
            elif intrinsics.is_intrinsic(value):
                if problem := intrinsics.validate(value):
                    yield f"{where}.{key}: {problem}"
            elif problem := paths.validate_path(value):
                yield f"{where}.{key}: {problem}"


def _attribute_count_problems(definition: Definition) -> Iterator[str]:
    """A process has one index row per attribute name: a definition may name so many."""
    names = set(search.attribute_name(key) for key in definition.search_attributes or {})
    for _, state in _named_states(definition):
        names |= {
            search.attribute_name(key) for key in getattr(state, "search_attributes", None) or {}
        }
    if len(names) > search.MAX_ATTRIBUTES:
        yield (
            f"SearchAttributes: the definition names {len(names)} search attributes in all; "
            f"at most {search.MAX_ATTRIBUTES}"
        )
