"""A local stand-in for the customers and personal-data GraphQL APIs, served over real HTTP."""

from __future__ import annotations

from sandbox.app import create_sandbox_app
from sandbox.cli import sandbox_command
from sandbox.config import ConfigError, SandboxConfig
from sandbox.faults import FaultSettings
from sandbox.purchases import ANONYMISED_EMAIL
from sandbox.server import RunningSandbox, serve, start_in_thread
from sandbox.store import SandboxStore

__all__ = [
    "ANONYMISED_EMAIL",
    "ConfigError",
    "FaultSettings",
    "RunningSandbox",
    "SandboxConfig",
    "SandboxStore",
    "create_sandbox_app",
    "sandbox_command",
    "serve",
    "start_in_thread",
]
