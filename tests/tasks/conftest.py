"""Helpers to run the real `luigi` and `luigid` commands of this environment, and to set luigi options in-process."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import luigi
import pytest

BIN = os.path.dirname(sys.executable)
REPO = Path(__file__).resolve().parents[2]


def executable(name: str) -> str:
    """A console script of the running environment (the venv's `luigi`, `luigid`)."""
    path = shutil.which(name, path=BIN) or shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed next to {sys.executable}")
    return path


#: ``set(section, option, value)``: sets one luigi option until the ``luigi_settings`` block ends.
Setter = Callable[[str, str, object], None]


@contextlib.contextmanager
def luigi_settings(values: dict[tuple[str, str], object] | None = None) -> Iterator[Setter]:
    """Set luigi options of this process for a block of a test: ``values`` first, then what the setter gets.

    Every option set is restored (or removed) when the block ends, and luigi's
    task instance cache is cleared each time, so tasks are planned with the
    options in force.
    """
    config = luigi.configuration.get_config()
    saved: dict[tuple[str, str], str | None] = {}

    def set_(section: str, option: str, value: object) -> None:
        saved.setdefault((section, option), config.get(section, option, None))
        config.set(section, option, str(value))
        luigi.task_register.Register.clear_instance_cache()

    try:
        for (section, option), value in (values or {}).items():
            set_(section, option, value)
        yield set_
    finally:
        for (section, option), value in saved.items():
            if value is None:
                config.remove_option(section, option)
            else:
                config.set(section, option, value)
        luigi.task_register.Register.clear_instance_cache()


def write_config(path: Path, sections: dict[str, dict[str, object]]) -> Path:
    """Write a luigi config file from a dict of sections."""
    text = []
    for section, values in sections.items():
        text.append(f"[{section}]")
        text += [f"{k} = {v}" for k, v in values.items()]
        text.append("")
    path.write_text("\n".join(text))
    return path


def luigi_command(*args: str) -> list[str]:
    """argv of a `luigi --module blockfs_tasks.tasks ...` run."""
    return [executable("luigi"), "--module", "blockfs_tasks.tasks", *args]


def luigi_env(config: Path) -> dict[str, str]:
    env = dict(os.environ, LUIGI_CONFIG_PATH=str(config))
    env.pop("PYTHONWARNINGS", None)
    return env


def kill_when(args: list[str], env: dict[str, str], condition: Callable[[], bool], timeout: float = 120) -> None:
    """Start a run and SIGKILL its whole process group as soon as ``condition()`` holds (kill on progress)."""
    proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + timeout
    try:
        while not condition() and proc.poll() is None:
            if time.monotonic() > deadline:
                pytest.fail("kill point never reached")
            time.sleep(0.002)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def luigid(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    """A real central scheduler on 127.0.0.1: yields (port, its config path), stops it after."""
    port = free_port()
    config = write_config(
        tmp_path / "luigid.cfg",
        {
            "scheduler": {
                "state_path": tmp_path / "luigid-state.pickle",
                "stable_done_cooldown_secs": 0,
                "retry_delay": 1,
                "record_task_history": "false",
            },
            "resources": {"blockfs_io": 1},
        },
    )
    log = open(tmp_path / "luigid.log", "w")
    proc = subprocess.Popen(
        [executable("luigid"), "--address", "127.0.0.1", "--port", str(port), "--logdir", str(tmp_path)],
        env=luigi_env(config), stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path,
    )
    deadline = time.monotonic() + 30
    while True:  # wait for the port to accept connections
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"luigid did not start: {(tmp_path / 'luigid.log').read_text()}")
            time.sleep(0.1)
    try:
        yield port, config
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
