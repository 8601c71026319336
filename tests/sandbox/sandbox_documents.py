"""GraphQL documents the sandbox tests send, written as the sync service's client would."""

from __future__ import annotations

CUSTOMER_FIELDS = "id name description externalId labels"

CREATE_CUSTOMER = f"""
mutation CreateCustomer($input: CreateCustomerInput!) {{
  createCustomer(input: $input) {{
    clientMutationId customer {{ {CUSTOMER_FIELDS} }} errors {{ field messages }}
  }}
}}"""

UPDATE_CUSTOMER = f"""
mutation UpdateCustomer($input: UpdateCustomerInput!) {{
  updateCustomer(input: $input) {{ customer {{ {CUSTOMER_FIELDS} }} errors {{ field messages }} }}
}}"""

DELETE_CUSTOMER = f"""
mutation DeleteCustomer($input: DeleteCustomerInput!) {{
  deleteCustomer(input: $input) {{ customer {{ {CUSTOMER_FIELDS} }} errors {{ field messages }} }}
}}"""

GET_CUSTOMER = f"query GetCustomer($id: ID!) {{ customer(id: $id) {{ {CUSTOMER_FIELDS} }} }}"

LIST_CUSTOMERS = f"""
query ListCustomers(
  $after: String, $first: Int, $externalId: String, $isSystem: Boolean, $name: String,
  $nameIcontains: String, $label: String, $sortBy: [CustomerOrder]
) {{
  customers(
    after: $after, first: $first, externalId: $externalId, isSystem: $isSystem, name: $name,
    name_Icontains: $nameIcontains, labels_Contains: $label, sortBy: $sortBy
  ) {{
    totalCount
    nodes {{ {CUSTOMER_FIELDS} }}
    edges {{ cursor node {{ id }} }}
    pageInfo {{ hasNextPage hasPreviousPage startCursor endCursor }}
  }}
}}"""

CONTACT_FIELDS = """
  id company firstName lastName email addressLine1 addressLine2 postalCode city
  country { id name } state { id name country { id name } }
"""

PURCHASE_FIELDS = f"""
  id customer {{ id }} customerCountry {{ id name }}
  billingContact {{ {CONTACT_FIELDS} }} deliveryContact {{ {CONTACT_FIELDS} }}
  licenseeContact {{ {CONTACT_FIELDS} }}
"""

GET_PURCHASE = f"query FindPurchase($id: Int!) {{ purchase(id: $id) {{ {PURCHASE_FIELDS} }} }}"

DELETE_PERSONAL_DATA = f"""
mutation DeletePersonalData($purchaseId: Int!) {{
  deletePersonalCustomerData(purchaseId: $purchaseId) {{ updatedPurchase {{ {PURCHASE_FIELDS} }} }}
}}"""
