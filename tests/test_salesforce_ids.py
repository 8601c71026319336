"""The 18-character form of Salesforce ids (crmsync.core.salesforce_ids), checked against ids from
Salesforce's documentation and as properties over every id."""

from __future__ import annotations

import string

import pytest
from hypothesis import given
from hypothesis import strategies as st

from crmsync.core.salesforce_ids import is_salesforce_id, salesforce_id_18

ids_15 = st.text(alphabet=string.ascii_letters + string.digits, min_size=15, max_size=15)


# The first pair is issue 23's (a real Account seen in both forms); the others worked by hand from the
# algorithm in Salesforce's documentation of CASESAFEID() (bit i of each 5-character block = upper case).
@pytest.mark.parametrize(
    ("id_15", "id_18"),
    [("001d000001XD5XK", "001d000001XD5XKAA1"), ("0015g00000QmNoP", "0015g00000QmNoPAAV"),
     ("00D000000000062", "00D000000000062EAA")],
)  # fmt: skip
def test_the_documented_pairs(id_15: str, id_18: str) -> None:
    assert salesforce_id_18(id_15) == id_18
    assert salesforce_id_18(id_18) == id_18


@given(ids_15)
def test_the_18_character_form_extends_the_15_and_is_idempotent(id_15: str) -> None:
    id_18 = salesforce_id_18(id_15)
    assert len(id_18) == 18 and id_18.startswith(id_15)
    assert salesforce_id_18(id_18) == id_18


@given(ids_15)
def test_either_form_of_one_record_gives_the_same_18_whatever_case_the_18_lost(id_15: str) -> None:
    id_18 = salesforce_id_18(id_15)
    assert salesforce_id_18(id_18.lower()) == id_18
    assert salesforce_id_18(id_18.upper()) == id_18


@given(ids_15, ids_15)
def test_15_character_ids_differing_only_in_case_stay_two_records(first: str, second: str) -> None:
    assert (salesforce_id_18(first) == salesforce_id_18(second)) == (first == second)


@pytest.mark.parametrize(
    "value", ["5150", "hs-5150", "", "001d000001XD5X", "001d000001XD5XKAA19", "001-d000001XD5XK"]
)
def test_values_that_are_not_salesforce_ids_are_left_as_they_are(value: str) -> None:
    assert not is_salesforce_id(value)
    assert salesforce_id_18(value) == value
