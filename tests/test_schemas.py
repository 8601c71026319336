"""The webhook body contract on its own (webhooks/schemas.py): what `load_event` accepts, what it
returns, and the message for each way a body can break it. The HTTP answers are in test_receive."""

from __future__ import annotations

from typing import Any

import pytest

from webhooks.schemas import EVENT_TYPES, ValidationError, load_event

MISSING = ["Missing data for required field."]
AT = "2026-11-22T10:00:00Z"


def body(kind: str, timestamp: str = AT, **data: Any) -> dict[str, Any]:
    return {"type": f"customer.{kind}", "timestamp": timestamp, "data": data}


def errors(payload: Any) -> Any:
    with pytest.raises(ValidationError) as raised:
        load_event(payload)
    return raised.value.messages


def test_the_four_event_types() -> None:
    assert EVENT_TYPES == (
        "customer.created",
        "customer.updated",
        "customer.deleted",
        "customer.erasure_requested",
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
    assert list(errors(body("merged", external_id="crm-1"))) == ["type"]


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
