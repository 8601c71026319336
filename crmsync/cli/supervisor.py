"""Child processes of `crmsync dev`, stopped in the reverse order of their start, none left behind.

Each child runs in its own session (so its own process group): a Ctrl-C in the terminal reaches
`crmsync dev` alone, which then stops the children one stage at a time — web and worker first, the
sandbox next, Redis last — instead of every process at once, where the worker and the scheduler
would lose Redis in the middle of their shutdown and print tracebacks. A child that does not stop
in time is killed with its whole process group (gunicorn's workers, RQ's scheduler).
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import FrameType

__all__ = ["Child", "Supervisor", "stop_on_signals"]


@dataclass
class Child:
    """A started process; `stop_timeout` is how long it may take to stop before it is killed."""

    name: str
    process: subprocess.Popen[bytes]
    stop_timeout: float

    def running(self) -> bool:
        return self.process.poll() is None


@dataclass
class Supervisor:
    """Starts children and stops them: later stages first, the children of one stage together."""

    stages: list[list[Child]] = field(default_factory=list)

    def start(
        self, name: str, command: Sequence[str], env: Mapping[str, str], stop_timeout: float, stage: int
    ) -> Child:
        """Start `command` in a session of its own, to be stopped with the others of `stage`."""
        process = subprocess.Popen(list(command), env=dict(env), start_new_session=True)
        return self.adopt(name, process, stop_timeout, stage)

    def adopt(self, name: str, process: subprocess.Popen[bytes], stop_timeout: float, stage: int) -> Child:
        """Stop `process` (started elsewhere in a session of its own) with the children of `stage`."""
        child = Child(name, process, stop_timeout)
        while len(self.stages) <= stage:
            self.stages.append([])
        self.stages[stage].append(child)
        return child

    @property
    def children(self) -> dict[str, Child]:
        return {child.name: child for stage in self.stages for child in stage}

    def stop_all(self, report: Callable[[str], None]) -> None:
        """SIGTERM each stage, latest first; wait for it; kill what is left of each process group."""
        for stage in reversed(self.stages):
            for child in stage:
                if child.running():
                    child.process.send_signal(signal.SIGTERM)
            for child in stage:
                try:
                    child.process.wait(timeout=child.stop_timeout)
                    report(f"stopped {child.name}")
                except subprocess.TimeoutExpired:
                    report(f"killed {child.name} (it did not stop within {child.stop_timeout:.0f} s)")
                # A child's own children (gunicorn's workers, RQ's scheduler) never outlive it.
                _kill_group(child.process.pid)
                child.process.wait()


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass  # the group is empty: everything in it has exited


@contextmanager
def stop_on_signals() -> Iterator[None]:
    """Within the block SIGINT, SIGTERM and SIGHUP raise KeyboardInterrupt, which stops everything.

    SIGINT is set too, because a process started in the background by a shell inherits it ignored.
    """

    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt(signal.Signals(signum).name)

    handled = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    previous = {signum: signal.signal(signum, interrupt) for signum in handled}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


@contextmanager
def signals_ignored() -> Iterator[None]:
    """Let a shutdown in progress finish: a second Ctrl-C or SIGTERM does not cut it short."""
    handled = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    previous = {signum: signal.signal(signum, signal.SIG_IGN) for signum in handled}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
