"""Per-purchase faults: fail exactly the next N erasures of one purchase, deterministically."""

from __future__ import annotations

from tests.sandbox.sandbox_testkit import HAN_SOLO_PURCHASE, ApiClient

# The fault matches the `purchaseId` variable, as crmsync's own document names it.
ERASE = """mutation ($purchaseId: Int!) {
  deletePersonalCustomerData(purchaseId: $purchaseId) { updatedPurchase { id } }
}"""
PURCHASE_ID = HAN_SOLO_PURCHASE["id"]
OTHER_PURCHASE = {**HAN_SOLO_PURCHASE, "id": PURCHASE_ID + 1}


def fail_next(admin_api: ApiClient, purchase_id: int, times: int) -> None:
    response = admin_api.request("PUT", f"/faults/purchases/{purchase_id}", json={"fail_next": times})
    assert response.status_code == 200, response.text


def erase(personal_data_api: ApiClient, purchase_id: int) -> int:
    body = {"query": ERASE, "variables": {"purchaseId": purchase_id}}
    return personal_data_api.request("POST", json=body).status_code


def test_a_failing_purchase_answers_503_the_given_number_of_times_then_is_erased(
    admin_api: ApiClient, personal_data_api: ApiClient
) -> None:
    admin_api.request("POST", "/purchases", json=[HAN_SOLO_PURCHASE]).raise_for_status()
    fail_next(admin_api, PURCHASE_ID, 2)

    statuses = [erase(personal_data_api, PURCHASE_ID) for _ in range(3)]

    assert statuses == [503, 503, 200]
    stats = admin_api.request("GET", "/stats").json()
    assert stats["deletePersonalCustomerData"] == {str(PURCHASE_ID): 1}
    assert stats["faults"]["unavailable"] == 2


def test_a_purchase_fault_leaves_other_purchases_alone(
    admin_api: ApiClient, personal_data_api: ApiClient
) -> None:
    admin_api.request("POST", "/purchases", json=[HAN_SOLO_PURCHASE, OTHER_PURCHASE]).raise_for_status()
    fail_next(admin_api, PURCHASE_ID, 1)

    assert erase(personal_data_api, OTHER_PURCHASE["id"]) == 200


def test_replacing_the_fault_settings_forgets_purchase_faults(
    admin_api: ApiClient, personal_data_api: ApiClient
) -> None:
    admin_api.request("POST", "/purchases", json=[HAN_SOLO_PURCHASE]).raise_for_status()
    fail_next(admin_api, PURCHASE_ID, 5)

    assert admin_api.request("PUT", "/faults", json={}).status_code == 200

    assert erase(personal_data_api, PURCHASE_ID) == 200


def test_a_malformed_purchase_fault_is_refused(admin_api: ApiClient) -> None:
    response = admin_api.request("PUT", f"/faults/purchases/{PURCHASE_ID}", json={"fail_next": "two"})
    assert response.status_code == 400
