"""The objects one sandbox app is made of, attached to the Flask app in one visible place."""

from __future__ import annotations

from dataclasses import dataclass

from flask import Flask, current_app

from sandbox.config import SandboxConfig
from sandbox.faults import FaultInjector
from sandbox.resolvers import CustomersRoot, PersonalDataRoot
from sandbox.store import SandboxStore
from sandbox.traffic import RequestRates

_EXTENSION_KEY = "sandbox"


@dataclass(frozen=True)
class SandboxState:
    """Configuration, state, fault injector and traffic counts shared by every request of one sandbox app."""

    config: SandboxConfig
    store: SandboxStore
    faults: FaultInjector
    rates: RequestRates
    customers_root: CustomersRoot
    personal_data_root: PersonalDataRoot

    @classmethod
    def build(cls, config: SandboxConfig) -> SandboxState:
        """Assemble a fresh, empty sandbox for `config`."""
        store = SandboxStore()
        faults = FaultInjector(config.faults, latency_ms=config.api_latency_ms)
        return cls(
            config=config,
            store=store,
            faults=faults,
            rates=RequestRates(),
            customers_root=CustomersRoot(store, faults),
            personal_data_root=PersonalDataRoot(store),
        )

    def init_app(self, app: Flask) -> None:
        """Attach this state to `app`, where views find it through current_state()."""
        app.extensions[_EXTENSION_KEY] = self


def current_state() -> SandboxState:
    """Return the state of the app handling the current request."""
    state: SandboxState = current_app.extensions[_EXTENSION_KEY]
    return state


def state_of(app: Flask) -> SandboxState:
    """Return the state attached to `app`, outside a request (servers and tests)."""
    state: SandboxState = app.extensions[_EXTENSION_KEY]
    return state
