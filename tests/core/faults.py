"""Fault injection for the core tests: run a script under ``strace`` that fails or kills one syscall.

``strace -e inject=SYSCALL:error=ENOSPC:when=N`` makes the Nth call fail as
the kernel would; ``signal=SIGKILL`` kills the process exactly there. ``-P
PATH`` limits tracing (and so injection) to calls on that file, so a test
can fail "the third write to the journal" and nothing else.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from .helpers import SCRIPT_TIMEOUT

STRACE = shutil.which("strace") or "/usr/bin/strace"


def need_strace() -> str:
    """The strace binary, or skip the test saying why."""
    if not os.access(STRACE, os.X_OK):
        pytest.skip("strace is not installed (apt-get install strace): fault injection needs it")
    probe = subprocess.run([STRACE, "-qq", "-o", "/dev/null", "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"strace cannot trace here (no ptrace permission?): {probe.stderr.decode().strip()}")
    return STRACE


def run_traced(
    source: str, *args: str, cwd: Path, inject: list[str], paths: list[str] | None = None,
    timeout: float = SCRIPT_TIMEOUT,
) -> subprocess.CompletedProcess[str]:
    """Run ``source`` as a script under strace with the given ``-e inject=`` specs (and ``-P`` paths)."""
    strace = need_strace()
    script = cwd / "faulty.py"
    script.write_text(textwrap.dedent(source))
    command = [strace, "-f", "-qq", "-o", "/dev/null"]
    for path in paths or []:
        command += ["-P", path]
    for spec in inject:
        command += ["-e", f"inject={spec}"]
    command += [sys.executable, "-B", str(script), *args]
    try:
        return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=timeout,
                              env={**os.environ, "PYTHONUNBUFFERED": "1"})
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"traced script timed out after {timeout} s\nstdout:\n{e.stdout}\nstderr:\n{e.stderr}")


def json_lines(stdout: str) -> list[dict]:
    """The JSON objects a script printed, one per line (a line cut by a kill is left out)."""
    out = []
    for line in stdout.splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            pass
    return out
