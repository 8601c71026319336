"""The webhook body contract on its own (webhooks/schemas.py): what `load_event` accepts, what it
returns, and the message for each way a body can break it. The HTTP answers are in
tests/sources/test_standard.py."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import hypothesis
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from marshmallow import Schema, fields, validate

from webhooks.schemas import EVENT_TYPES, ValidationError, full_load, load_event, quick_load, quick_schema

MISSING = ["Missing data for required field."]
AT = "2026-11-22T10:00:00Z"


def body(kind: str, timestamp: Any = AT, **data: Any) -> dict[str, Any]:
    return {"type": f"customer.{kind}", "timestamp": timestamp, "data": data}


def errors(payload: Any) -> Any:
    with pytest.raises(ValidationError) as raised:
        load_event(payload)
    return raised.value.messages


def test_the_five_event_types() -> None:
    assert EVENT_TYPES == (
        "customer.created",
        "customer.updated",
        "customer.deleted",
        "customer.erasure_requested",
        "customer.merged",
    )


@pytest.mark.parametrize(
    "event",
    [
        body("created", external_id="crm-1", name="Mars Missions", description="d", labels=["vip"]),
        body("created", external_id="crm-1", name="Mars Missions"),
        body("updated", external_id="crm-1", description="only this"),
        body("updated", external_id="crm-1"),
        body("deleted", external_id="crm-1"),
        body("erasure_requested", external_id="crm-1", purchase_ids=[356018965, 1]),
    ],
    ids=["created", "created-minimal", "updated-partial", "updated-empty", "deleted", "erasure"],
)
def test_a_valid_event_is_loaded_as_sent(event: dict[str, Any]) -> None:
    assert load_event(event) == {**event, "timestamp": "2026-11-22T10:00:00.000000+00:00"}


def test_the_timestamp_is_returned_in_utc_with_microseconds() -> None:
    loaded = load_event(body("deleted", "2026-11-22T12:00:00.5+02:00", external_id="crm-1"))
    assert loaded["timestamp"] == "2026-11-22T10:00:00.500000+00:00"


@pytest.mark.parametrize(
    ("kind", "data"),
    [
        ("created", {"name": "n"}),
        ("updated", {}),
        ("deleted", {}),
        ("erasure_requested", {"purchase_ids": [1]}),
    ],
)
def test_external_id_is_required_for_every_type(kind: str, data: dict[str, Any]) -> None:
    assert errors(body(kind, **data)) == {"data": {"external_id": MISSING}}


@pytest.mark.parametrize("field", ["type", "timestamp", "data"])
def test_every_envelope_field_is_required(field: str) -> None:
    event = body("deleted", external_id="crm-1")
    del event[field]
    assert errors(event) == {field: MISSING}


def test_a_create_needs_a_name_an_update_does_not() -> None:
    assert errors(body("created", external_id="crm-1")) == {"data": {"name": MISSING}}
    assert load_event(body("updated", external_id="crm-1", labels=[]))["data"] == {
        "external_id": "crm-1",
        "labels": [],
    }


def test_an_erasure_needs_its_purchase_ids() -> None:
    assert errors(body("erasure_requested", external_id="crm-1")) == {"data": {"purchase_ids": MISSING}}


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"external_id": "", "name": "n"}, "external_id"),
        ({"external_id": "crm-1", "name": ""}, "name"),
        ({"external_id": "crm-1", "name": "n", "labels": [""]}, "labels"),
    ],
    ids=["external_id", "name", "label"],
)
def test_empty_strings_are_refused(data: dict[str, Any], field: str) -> None:
    assert list(errors(body("created", **data))["data"]) == [field]


@pytest.mark.parametrize(
    "purchase_ids", [[], [0], [-3], ["1"], [1.5]], ids=["none", "zero", "negative", "string", "float"]
)
def test_purchase_ids_are_a_non_empty_list_of_positive_integers(purchase_ids: list[Any]) -> None:
    messages = errors(body("erasure_requested", external_id="crm-1", purchase_ids=purchase_ids))
    assert list(messages["data"]) == ["purchase_ids"]


def test_unknown_fields_are_refused_in_the_envelope_and_in_data() -> None:
    assert errors({**body("deleted", external_id="crm-1"), "extra": 1}) == {"extra": ["Unknown field."]}
    assert errors(body("deleted", external_id="crm-1", name="n")) == {"data": {"name": ["Unknown field."]}}


def test_an_unknown_type_is_refused() -> None:
    assert list(errors(body("renamed", external_id="crm-1"))) == ["type"]


def test_a_time_without_an_offset_is_refused() -> None:
    assert list(errors(body("deleted", "2026-11-22T10:00:00", external_id="crm-1"))) == ["timestamp"]


@pytest.mark.parametrize("payload", [[], "event", None, 3])
def test_a_body_that_is_not_an_object_is_refused(payload: Any) -> None:
    assert errors(payload) == {"_schema": ["The body must be a JSON object."]}


def test_purchase_ids_fit_the_platforms_32_bit_int() -> None:
    assert load_event(body("erasure_requested", external_id="crm-1", purchase_ids=[2**31 - 1]))
    messages = errors(body("erasure_requested", external_id="crm-1", purchase_ids=[2**31]))
    assert messages == {
        "data": {
            "purchase_ids": {0: ["Must be greater than or equal to 1 and less than or equal to 2147483647."]}
        }
    }


@pytest.mark.parametrize("timestamp", ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00"])
def test_a_time_outside_years_1_to_9999_in_utc_is_refused(timestamp: str) -> None:
    assert errors(body("deleted", timestamp, external_id="crm-1")) == {
        "timestamp": ["Not a time between years 1 and 9999 in UTC."]
    }


# quick_load (plain checks compiled from the schemas) must return exactly what marshmallow returns,
# or None. Bodies are generated near the contract: the right keys with values of every JSON type,
# odd times and integers, a key missing or added, so that most examples test a boundary.
_NEAR_STRINGS = st.sampled_from(["", "crm-1", "Mars Missions", " "]) | st.text(max_size=4)
_NEAR_INTS = st.sampled_from([0, 1, -1, 2**31 - 1, 2**31, True, False, 1.0]) | st.integers()
_ANY_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | _NEAR_STRINGS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_NEAR_STRINGS, inner, max_size=3),
    max_leaves=6,
)
_FIELD_VALUES = {
    "external_id": _NEAR_STRINGS,
    "name": _NEAR_STRINGS,
    "description": _NEAR_STRINGS,
    "labels": st.lists(_NEAR_STRINGS, max_size=3),
    "purchase_ids": st.lists(_NEAR_INTS, max_size=3),
    "merged_ids": st.lists(_NEAR_STRINGS, max_size=3),
}
_TIMES = st.sampled_from(
    [
        AT,
        "2026-11-22T10:00:00",
        "2026-11-22T10:00:00.5+02:00",
        "2026-11-22 10:00Z",
        "20261122T100000Z",
        "2026-W47-1T10:00Z",
        "0001-01-01T00:00:00+14:00",
        "9999-12-31T23:59:59-14:00",
        "2026-11-22",
        "2026-11-22T10:00:00+24:00",
        "2026-11-22T10:00:00.1234567Z",
        "",
    ]  # fmt: skip
) | st.datetimes(timezones=st.none() | st.timezones()).map(lambda moment: moment.isoformat())


def rarely(draw: st.DrawFn) -> bool:
    return draw(st.integers(0, 9)) == 0


_CUSTOMER_FIELDS = ["external_id", "name", "description", "labels"]
_TYPE_FIELDS = dict(zip(EVENT_TYPES, [_CUSTOMER_FIELDS, _CUSTOMER_FIELDS, ["external_id"],
                                      ["external_id", "purchase_ids"], ["external_id", "merged_ids"]],
                        strict=True))  # fmt: skip


@st.composite
def near_events(draw: st.DrawFn) -> Any:
    """A body of the contract's shape with values near its limits; now and then something off."""
    event_type = draw(st.sampled_from(EVENT_TYPES))
    fields = _TYPE_FIELDS[event_type] if not rarely(draw) else list(_FIELD_VALUES)
    names = draw(st.sets(st.sampled_from(fields)))
    if not rarely(draw):
        names.add("external_id")
    data: dict[str, Any] = {
        name: draw(_ANY_JSON if rarely(draw) else _FIELD_VALUES[name]) for name in sorted(names)
    }
    if rarely(draw):
        data["merged_into"] = "crm-2"
    timestamp = draw(_TIMES) if rarely(draw) else draw(st.sampled_from([AT, "2026-11-22T12:00:00.5+02:00"]))
    envelope = {"type": event_type if not rarely(draw) else draw(_ANY_JSON), "timestamp": timestamp,
                "data": data if not rarely(draw) else draw(_ANY_JSON)}  # fmt: skip
    if rarely(draw):
        del envelope[draw(st.sampled_from(sorted(envelope)))]
    if rarely(draw):
        envelope["id"] = "msg_1"
    return envelope if not rarely(draw) else draw(st.sampled_from([[envelope], None, "event"]))


@settings(max_examples=1500, deadline=None)
@given(near_events())
@example(body("erasure_requested", external_id="crm-1", purchase_ids=[2**31]))
@example(body("erasure_requested", external_id="crm-1", purchase_ids=[True]))
@example(body("erasure_requested", external_id="crm-1", purchase_ids=[]))
@example(body("updated", 1_700_000_000, external_id="crm-1"))
@example(body("updated", external_id="crm-1", labels=[""]))
def test_quick_load_returns_what_marshmallow_does_or_leaves_it_to_marshmallow(payload: Any) -> None:
    quick = quick_load(payload)
    hypothesis.event("quick" if quick is not None else "left to marshmallow")
    if quick is None:
        return
    full = full_load(payload)
    # As JSON: `True == 1` in Python, not on the wire (the order of keys means nothing).
    assert json.dumps(full, sort_keys=True) == json.dumps(quick, sort_keys=True)


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(EVENT_TYPES),
    st.datetimes(timezones=st.timezones(), min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1)),
    # An id the platform can store (crmsync/core/external_ids.py): no control character, not blank.
    st.text(st.characters(exclude_categories=("Cc", "Cs")), min_size=1, max_size=255).filter(str.strip),
    st.text(min_size=1),
    st.text(),
    st.lists(st.text(min_size=1), max_size=3),
    st.lists(st.integers(min_value=1, max_value=2**31 - 1), min_size=1, max_size=3),
)
def test_quick_load_takes_every_event_the_crms_send(
    event_type: str, moment: datetime, external_id: str, name: str, description: str,
    labels: list[str], purchase_ids: list[int],
) -> None:  # fmt: skip
    """Valid events in the usual shapes (what the sources map to) never pay for marshmallow."""
    data: dict[str, Any] = {"external_id": external_id}
    if event_type in ("customer.created", "customer.updated"):
        data |= {"name": name, "description": description, "labels": labels}
    elif event_type == "customer.erasure_requested":
        data["purchase_ids"] = purchase_ids
    elif event_type == "customer.merged":
        data["merged_ids"] = [external_id]
    payload = {"type": event_type, "timestamp": moment.isoformat(), "data": data}
    assert quick_load(payload) == full_load(payload)


# The quick checks are compiled from whatever the schemas declare: each validator's bounds are kept,
# and a field or validator they cannot mirror exactly stops the import rather than pass unchecked.
class _Bounded(Schema):
    short = fields.String(validate=validate.Length(min=1, max=3))
    count = fields.Integer(strict=True, validate=validate.Range(min=1, max=3))


@pytest.mark.parametrize("data", [{"short": "abc", "count": 3}, {"short": "a", "count": 1}, {}])
def test_the_quick_checks_take_what_each_validator_takes(data: dict[str, Any]) -> None:
    assert quick_schema(_Bounded())(data) == _Bounded().load(data)


@pytest.mark.parametrize("data", [{"short": "abcd"}, {"short": ""}, {"count": 4}, {"count": 0}])
def test_the_quick_checks_refuse_what_each_validator_refuses(data: dict[str, Any]) -> None:
    assert quick_schema(_Bounded())(data) is None


@pytest.mark.parametrize(
    ("field", "message"),
    [
        (fields.Float(), "no quick check for Float: add one or leave it to marshmallow"),
        (fields.Integer(), "no quick check for Integer"),  # not strict: "1" would load as 1
        (fields.String(validate=validate.Length(equal=2)), "no quick check for <Length"),
        (fields.Integer(strict=True, validate=validate.Range(min=1, min_inclusive=False)), "for <Range"),
        (fields.Integer(strict=True, validate=validate.Range(max=1, max_inclusive=False)), "for <Range"),
        (fields.String(data_key="Name"), "no quick check for field: renamed or defaulted"),
        (fields.String(attribute="other"), "no quick check for field: renamed or defaulted"),
        (fields.String(load_default="x"), "no quick check for field: renamed or defaulted"),
    ],
)
def test_a_field_the_quick_checks_cannot_mirror_is_refused(field: fields.Field, message: str) -> None:
    with pytest.raises(TypeError, match=message):
        quick_schema(Schema.from_dict({"field": field})())
