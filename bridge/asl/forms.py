"""Forms of human tasks: the fields an approval asks for, and outcomes beyond approve and reject.

An approval's ``Form`` is a JSON Schema subset: an object whose ``properties`` are strings
(optionally an ``enum``, a ``date`` or a ``multiline`` text, with ``minLength``, ``maxLength``,
``pattern``), numbers and integers (``minimum``, ``maximum``) and booleans, each with a
``title`` and ``description``, and a ``required`` list. ``Outcomes`` adds decisions of its own
(``{"Name": "REQUEST_CHANGES", "Label": "Request changes"}``), which conclude the approval at
once with that outcome.

Pure: parsing a declaration (every problem named by its field) and checking submitted values.
The page and the JSON API check values with the same ``check_values``; a form post's text is
read as the field's type first (``from_text``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from typing import Final, Literal

from bridge.asl.types import JSON

FieldType = Literal["string", "number", "integer", "boolean"]
#: Field names read as JSONPath names and HTML form names alike.
FIELD_NAME: Final = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
#: An outcome's name, as the step's ``outcome`` (APPROVED and REJECTED are the built-in ones).
OUTCOME_NAME: Final = re.compile(r"^[A-Z][A-Z0-9_]{0,39}$")
BUILT_IN_OUTCOMES: Final = frozenset(
    {"APPROVED", "REJECTED", "EXPIRED", "DECIDED", "APPROVE", "REJECT"}
)
MAX_FIELDS: Final = 50
MAX_OUTCOMES: Final = 10
#: The longest text a field takes when its declaration says no less.
MAX_TEXT: Final = 10_000
#: The longest pattern (patterns run on approvers' input: kept short and simple).
MAX_PATTERN: Final = 200
_FIELD_KEYS: Final = frozenset(
    {
        "type",
        "title",
        "description",
        "enum",
        "format",
        "minimum",
        "maximum",
        "minLength",
        "maxLength",
        "pattern",
        "default",
    }
)
_FORMATS: Final = frozenset({"date", "multiline"})


@dataclass(frozen=True)
class FormField:
    name: str
    type: FieldType
    title: str
    description: str | None = None
    required: bool = False
    enum: tuple[str, ...] = ()
    format: str | None = None
    minimum: float | None = None
    maximum: float | None = None
    min_length: int | None = None
    max_length: int = MAX_TEXT
    pattern: str | None = None
    default: JSON = None

    @property
    def widget(self) -> str:
        """How a page shows it: select, checkbox, date, textarea, number or text."""
        if self.enum:
            return "select"
        if self.type == "boolean":
            return "checkbox"
        if self.format in ("date", "multiline"):
            return "date" if self.format == "date" else "textarea"
        return "number" if self.type in ("number", "integer") else "text"


@dataclass(frozen=True)
class TaskOutcome:
    name: str
    label: str


@dataclass(frozen=True)
class Form:
    fields: tuple[FormField, ...] = ()
    outcomes: tuple[TaskOutcome, ...] = ()

    def to_json(self) -> dict[str, JSON]:
        """What the approval row keeps, to show the page and check values without the
        definition."""
        return {"schema": self.schema, "outcomes": [[o.name, o.label] for o in self.outcomes]}

    @classmethod
    def from_json(cls, value: JSON) -> Form:
        if not isinstance(value, dict):
            return cls()
        outcomes = value.get("outcomes") or []
        assert isinstance(outcomes, list)
        fields, _ = parse_fields(value.get("schema"))
        return cls(
            fields,
            tuple(
                TaskOutcome(str(item[0]), str(item[1]))
                for item in outcomes
                if isinstance(item, list)
            ),
        )

    @property
    def schema(self) -> JSON:
        if not self.fields:
            return None
        return {
            "type": "object",
            "properties": {field.name: _field_schema(field) for field in self.fields},
            "required": [field.name for field in self.fields if field.required],
        }

    def outcome(self, name: str) -> TaskOutcome | None:
        return next((outcome for outcome in self.outcomes if outcome.name == name), None)


def _field_schema(field: FormField) -> dict[str, JSON]:
    found: dict[str, JSON] = {
        "type": field.type,
        "title": field.title,
        "description": field.description,
        "enum": list(field.enum) or None,
        "format": field.format,
        "minimum": field.minimum,
        "maximum": field.maximum,
        "minLength": field.min_length,
        "maxLength": field.max_length if field.type == "string" else None,
        "pattern": field.pattern,
        "default": field.default,
    }
    return {key: value for key, value in found.items() if value is not None}


def parse_form(form: JSON, outcomes: JSON) -> tuple[Form, list[str]]:
    """The form ``Form`` and ``Outcomes`` declare, and every problem, named by its field."""
    fields, problems = parse_fields(form)
    found_outcomes, outcome_problems = _parse_outcomes(outcomes)
    return Form(fields, found_outcomes), problems + outcome_problems


def parse_fields(form: JSON) -> tuple[tuple[FormField, ...], list[str]]:
    if form is None:
        return (), []
    if not isinstance(form, dict):
        return (), ["Form: must be a JSON Schema object"]
    problems = [
        f"Form.{key}: not supported (type, properties, required)"
        for key in form
        if key not in ("type", "properties", "required", "title", "description")
    ]
    if form.get("type", "object") != "object":
        problems.append("Form.type: must be object")
    properties = form.get("properties") or {}
    required = form.get("required") or []
    if not isinstance(properties, dict):
        return (), [*problems, "Form.properties: must be an object of fields"]
    if not isinstance(required, list) or not all(isinstance(name, str) for name in required):
        problems.append("Form.required: must be a list of field names")
        required = []
    if len(properties) > MAX_FIELDS:
        problems.append(f"Form.properties: at most {MAX_FIELDS} fields")
    problems += [
        f"Form.required: {name!r} is not one of the properties"
        for name in required
        if name not in properties
    ]
    fields = []
    for name, spec in properties.items():
        field, field_problems = _parse_field(str(name), spec, name in required)
        problems += field_problems
        if field is not None:
            fields.append(field)
    return tuple(fields), problems


def _parse_field(name: str, spec: JSON, required: bool) -> tuple[FormField | None, list[str]]:
    where = f"Form.properties.{name[:64]}"
    if not FIELD_NAME.fullmatch(name):
        return None, [f"{where}: a field name is letters, digits and _ (64 at most)"]
    if not isinstance(spec, dict):
        return None, [f"{where}: must be an object (type, title, ...)"]
    problems = [f"{where}.{key}: not supported" for key in spec if key not in _FIELD_KEYS]
    kind = spec.get("type")
    if kind not in ("string", "number", "integer", "boolean"):
        return None, [*problems, f"{where}.type: string, number, integer or boolean"]
    text_fields = {"title": spec.get("title", name), "description": spec.get("description")}
    for key, value in text_fields.items():
        if value is not None and (not isinstance(value, str) or len(value) > 500):
            problems.append(f"{where}.{key}: a text of 500 characters at most")
    enum = spec.get("enum") or []
    if enum and (
        kind != "string"
        or not isinstance(enum, list)
        or not all(isinstance(v, str) and v for v in enum)
        or len(enum) > 200
    ):
        problems.append(f"{where}.enum: a list of strings (200 at most), for a string field")
        enum = []
    form_format = spec.get("format")
    if form_format is not None and (kind != "string" or form_format not in _FORMATS):
        problems.append(f"{where}.format: date or multiline, for a string field")
    bounds: dict[str, float | None] = {}
    for key in ("minimum", "maximum"):
        value = spec.get(key)
        if value is not None and (
            kind not in ("number", "integer")
            or isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
        ):
            problems.append(f"{where}.{key}: a number, for a number or integer field")
            value = None
        bounds[key] = value
    lengths: dict[str, int | None] = {}
    for key in ("minLength", "maxLength"):
        value = spec.get(key)
        if value is not None and (
            kind != "string"
            or isinstance(value, bool)
            or not isinstance(value, int)
            or not 0 <= value <= MAX_TEXT
        ):
            problems.append(f"{where}.{key}: a whole number from 0 to {MAX_TEXT}, for a string")
            value = None
        lengths[key] = value
    pattern = spec.get("pattern")
    if pattern is not None:
        if kind != "string" or not isinstance(pattern, str) or len(pattern) > MAX_PATTERN:
            problems.append(
                f"{where}.pattern: a regular expression of {MAX_PATTERN} characters at most"
            )
            pattern = None
        else:
            try:
                re.compile(pattern)
            except re.error as exc:
                problems.append(f"{where}.pattern: not a regular expression: {exc}")
                pattern = None
    if problems:
        return None, problems
    title = text_fields["title"]
    description = text_fields["description"]
    return (
        FormField(
            name=name,
            type=kind,
            title=str(title),
            description=None if description is None else str(description),
            required=required,
            enum=tuple(enum),
            format=form_format,
            minimum=bounds["minimum"],
            maximum=bounds["maximum"],
            min_length=lengths["minLength"],
            max_length=lengths["maxLength"] if lengths["maxLength"] is not None else MAX_TEXT,
            pattern=pattern,
            default=spec.get("default"),
        ),
        [],
    )


def _parse_outcomes(outcomes: JSON) -> tuple[tuple[TaskOutcome, ...], list[str]]:
    if outcomes is None:
        return (), []
    if not isinstance(outcomes, list) or len(outcomes) > MAX_OUTCOMES:
        return (), [f"Outcomes: a list of {MAX_OUTCOMES} outcomes at most ({{Name, Label}})"]
    found: list[TaskOutcome] = []
    problems = []
    for index, item in enumerate(outcomes):
        where = f"Outcomes[{index}]"
        if not isinstance(item, dict) or set(item) - {"Name", "Label"}:
            problems.append(f"{where}: an object with Name and Label")
            continue
        name, label = item.get("Name"), item.get("Label", item.get("Name"))
        if not isinstance(name, str) or not OUTCOME_NAME.fullmatch(name):
            problems.append(f"{where}.Name: capitals, digits and _ (REQUEST_CHANGES), 40 at most")
            continue
        if name in BUILT_IN_OUTCOMES:
            problems.append(f"{where}.Name: {name} is built in (approve and reject are offered)")
            continue
        if any(outcome.name == name for outcome in found):
            problems.append(f"{where}.Name: {name} twice")
            continue
        if not isinstance(label, str) or not 0 < len(label) <= 100:
            problems.append(f"{where}.Label: a text of 100 characters at most")
            continue
        found.append(TaskOutcome(name, label))
    return tuple(found), problems


def from_text(field: FormField, text: str | None) -> JSON:
    """A form post's text as the field's type (None when blank); ``ValueError`` saying why."""
    if field.type == "boolean":
        return text is not None and text.strip().lower() in ("on", "true", "yes", "1")
    if text is None or not text.strip():
        return None
    text = text.strip() if field.widget != "textarea" else text
    if field.type == "integer":
        try:
            return int(text)
        except ValueError:
            raise ValueError("a whole number, please") from None
    if field.type == "number":
        try:
            number = float(text)
        except ValueError:
            raise ValueError("a number, please") from None
        if not math.isfinite(number):
            raise ValueError("a number, please")
        return int(number) if number.is_integer() and "." not in text else number
    return text


def check_values(form: Form, given: Mapping[str, JSON]) -> tuple[dict[str, JSON], dict[str, str]]:
    """The values to keep (every field, None when not given) and the errors by field name."""
    errors: dict[str, str] = {}
    unknown = [name for name in given if not any(field.name == name for field in form.fields)]
    for name in unknown[:10]:
        errors[str(name)[:64]] = "not a field of this form"
    values: dict[str, JSON] = {}
    for field in form.fields:
        value = given.get(field.name)
        problem = _problem(field, value)
        if problem is not None:
            errors[field.name] = problem
        values[field.name] = value
    return values, errors


def _problem(field: FormField, value: JSON) -> str | None:
    if value is None or value == "":
        return "required" if field.required and field.type != "boolean" else None
    if field.type == "boolean":
        if not isinstance(value, bool):
            return "true or false"
        return "required" if field.required and not value else None
    if field.type in ("number", "integer"):
        if isinstance(value, bool) or not isinstance(value, int | float):
            return "a number" if field.type == "number" else "a whole number"
        if field.type == "integer" and not (isinstance(value, int) or value.is_integer()):
            return "a whole number"
        if not math.isfinite(value):
            return "a number"
        if field.minimum is not None and value < field.minimum:
            return f"at least {_number(field.minimum)}"
        if field.maximum is not None and value > field.maximum:
            return f"at most {_number(field.maximum)}"
        return None
    if not isinstance(value, str):
        return "a text"
    if "\x00" in value:
        return "holds a NUL character"
    if len(value) > field.max_length:
        return f"{field.max_length} characters at most"
    if field.min_length is not None and len(value) < field.min_length:
        return f"{field.min_length} characters at least"
    if field.enum and value not in field.enum:
        return "one of " + ", ".join(field.enum[:20])
    if field.format == "date":
        try:
            date.fromisoformat(value)
        except ValueError:
            return "a date (YYYY-MM-DD)"
        if len(value) != 10:
            return "a date (YYYY-MM-DD)"
    if field.pattern is not None and re.fullmatch(field.pattern, value) is None:
        return f"does not match {field.pattern}"
    return None


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


__all__ = [
    "Form",
    "FormField",
    "TaskOutcome",
    "check_values",
    "from_text",
    "parse_form",
]
