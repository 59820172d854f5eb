"""Shared helpers for the hand-run benchmarks.

What every benchmark needs and should measure the same way:

* :func:`build_volume` — the deterministic synthetic volume, generated into
  memory once (before anything is timed), slab by slab in threads.
* :class:`Stopwatch` — wall time with ``time.perf_counter``; :class:`OtherLoad` —
  how many cores other processes of the shared machine used meanwhile.
* :class:`PeakMemory` — peak *extra* memory of this process and all its
  children while a block runs, sampled by a thread (default every 10 ms).
* :func:`drop_page_cache` — make the next read of some files cold.
* :func:`prefault_memory` — neutralise the VM's free-page-reporting cost
  before a timed phase.
* :func:`store_files` — number and bytes of the files a store wrote.
* :func:`latency_stats`, :func:`markdown_table`, :func:`machine_facts`.

Memory accounting
-----------------
"RSS of the process + all children" double-counts pages shared between them:
a ``fork`` child maps the parent's whole heap (the input volume included) and
its RSS shows those pages although no new memory was used. So the headline
number is the *new physical memory* of the tree::

    extra = (parent RSS - parent RSS before) + sum over children of USS

where a child's USS (``Private_Clean + Private_Dirty`` of
``/proc/<pid>/smaps_rollup``) counts only the pages that child alone holds
(its own allocations and the pages it copied on write). The naive RSS sum is
sampled too and reported beside it, for transparency. Before the baseline is
taken, ``gc.collect()`` and glibc's ``malloc_trim(0)`` return freed memory, so
memory a previous step freed but kept is not silently reused for free.
"""

from __future__ import annotations

import ctypes
import gc
import json
import logging
import os
import platform
import subprocess
import threading
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

MIB = 1 << 20


# ---------------------------------------------------------------- the data
def build_volume(
    shape_zyx: Sequence[int], dtype: str = "uint16", seed: int = 0, n_threads: int | None = None,
    slab_planes: int = 32,
) -> np.ndarray:
    """The synthetic volume ``SyntheticVolume(shape_zyx, dtype, seed)`` as one in-memory array.

    Slabs of ``slab_planes`` planes are generated in ``n_threads`` threads
    (numpy releases the GIL for most of the work) straight into the output,
    so the only memory used is the volume itself plus a working slab per thread.
    """
    from blockfs_tasks.ingest.synthetic import SyntheticVolume

    volume = SyntheticVolume(tuple(int(s) for s in shape_zyx), dtype=dtype, seed=seed)
    nz = volume.shape_zyx[0]
    out = np.empty(volume.shape_zyx, np.dtype(dtype))
    _ = volume.cells  # compute the cell table once, before the threads share it

    def fill(z0: int) -> None:
        z1 = min(z0 + slab_planes, nz)
        out[z0:z1] = volume.slab(z0, z1)

    with ThreadPoolExecutor(n_threads or os.cpu_count() or 1) as pool:
        list(pool.map(fill, range(0, nz, slab_planes)))
    return out


# ---------------------------------------------------------------- timing
class Stopwatch:
    """Context manager measuring wall time in seconds (``.seconds``)."""

    def __init__(self) -> None:
        self.seconds = float("nan")
        self._t0 = 0.0

    def __enter__(self) -> Stopwatch:
        self._t0 = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self._t0


def latency_stats(seconds: Sequence[float]) -> dict[str, float]:
    """Median, p99 and max of latencies, in microseconds."""
    us = np.asarray(seconds, np.float64) * 1e6
    return {
        "median_us": float(np.median(us)),
        "p99_us": float(np.percentile(us, 99)),
        "max_us": float(us.max()),
    }


def _busy_cpu_seconds() -> float:
    """CPU seconds the whole machine has spent busy since boot (``/proc/stat``)."""
    with open("/proc/stat") as f:
        fields = f.readline().split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def _own_cpu_seconds() -> float:
    """CPU seconds of this process and of its children that have been waited for."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


class OtherLoad:
    """Context manager: cores kept busy by *other* processes while the block ran (``.cores``).

    The machine is shared: busy CPU time of the whole machine minus this
    process tree's own CPU time, over the wall time. Children must have been
    reaped by the end of the block (``Pool`` does) to be counted as our own.
    """

    def __init__(self) -> None:
        self.cores = float("nan")
        self.own_cores = float("nan")

    def __enter__(self) -> OtherLoad:
        self._t0, self._busy0, self._own0 = time.perf_counter(), _busy_cpu_seconds(), _own_cpu_seconds()
        return self

    def __exit__(self, *exc: object) -> None:
        wall = time.perf_counter() - self._t0
        own = _own_cpu_seconds() - self._own0
        if wall > 0:
            self.own_cores = own / wall
            self.cores = max(0.0, (_busy_cpu_seconds() - self._busy0 - own) / wall)


def wait_for_quiet(max_cores: float = 0.25, window: float = 5.0, timeout: float = 600.0) -> float:
    """Wait until other processes use at most ``max_cores`` over ``window`` s; return their last load.

    Gives up after ``timeout`` s (then the benchmark runs anyway and reports
    the load it saw). Each window is a plain ``sleep``: no busy-waiting.
    """
    deadline = time.monotonic() + timeout
    while True:
        with OtherLoad() as load:
            time.sleep(window)
        if load.cores <= max_cores or time.monotonic() >= deadline:
            return load.cores
        logger.info("other processes use %.2f cores; waiting for a quieter machine", load.cores)


def prefault_memory(nbytes: int) -> float:
    """Touch then free ``nbytes`` of memory, so the next allocations get host-backed pages; return seconds.

    This machine is a Firecracker VM with free page reporting: memory the
    guest freed a few seconds ago has been handed back to the host, and
    touching it again costs ~10 µs per 4 KiB page (a fresh 1 GiB array took
    2-4 s to fill instead of 0.2 s). Whichever store happens to run after an
    idle gap or a cache drop would pay that, so every timed phase starts right
    after this, when the kernel's free lists hold pages the host still backs.
    """
    t0 = time.perf_counter()
    buffer = np.ones(nbytes, np.uint8)  # writes every page
    del buffer
    return time.perf_counter() - t0


# ---------------------------------------------------------------- memory
def release_free_memory() -> None:
    """Collect garbage and hand freed heap back to the OS (glibc ``malloc_trim``)."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: nothing to trim
        pass


def _rss_bytes(pid: int) -> int:
    """Resident set size of ``pid`` from ``/proc/<pid>/statm`` (cheap)."""
    with open(f"/proc/{pid}/statm", "rb") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _rss_uss_bytes(pid: int) -> tuple[int, int]:
    """(RSS, USS) of ``pid`` from ``/proc/<pid>/smaps_rollup``."""
    rss = uss = 0
    with open(f"/proc/{pid}/smaps_rollup", "rb") as f:
        for line in f:
            if line.startswith(b"Rss:"):
                rss = int(line.split()[1]) * 1024
            elif line.startswith((b"Private_Clean:", b"Private_Dirty:")):
                uss += int(line.split()[1]) * 1024
    return rss, uss


def _children(pid: int) -> list[int]:
    """Pids of every descendant of ``pid``, from ``/proc/<pid>/task/*/children`` (cheap).

    Falls back to psutil (which scans all of ``/proc``) where the kernel lacks
    that file.
    """
    try:
        found = []
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                found += [int(c) for c in f.read().split()]
    except FileNotFoundError:
        if not os.path.exists(f"/proc/{pid}"):
            return []
        import psutil

        try:
            return [c.pid for c in psutil.Process(pid).children(recursive=True)]
        except psutil.Error:
            return []
    return found + [g for c in found for g in _children(c)]


#: Public names for the helpers other benchmarks sample process trees with.
child_pids = _children
rss_uss_bytes = _rss_uss_bytes


@dataclass
class MemoryReport:
    """Peak extra memory of a process tree while a block ran (bytes)."""

    peak_extra: int = 0
    peak_rss_sum_extra: int = 0
    max_children: int = 0
    samples: int = 0
    baseline_rss: int = 0

    @property
    def peak_extra_mib(self) -> float:
        return self.peak_extra / MIB

    @property
    def peak_rss_sum_extra_mib(self) -> float:
        return self.peak_rss_sum_extra / MIB


@dataclass
class PeakMemory:
    """Sample this process and its children; see the module doc.

    Use as a context manager; the result is in ``.report`` after the block.
    This process's RSS (``/proc/self/statm``, ~20 µs) is sampled every
    ``interval`` s. A child's USS needs ``smaps_rollup``, which walks the
    child's page tables: ~0.7 ms for a fork child that maps a 1 GiB parent.
    Sampling two such children every 10 ms would take ~14% of a core away
    from them, so children are listed and read every ``children_interval`` s
    (their buffers live far longer than that); the last USS read of each
    child is added to every parent sample.
    """

    interval: float = 0.01
    children_interval: float = 0.05
    report: MemoryReport = field(default_factory=MemoryReport)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._pid = os.getpid()

    def _children_memory(self) -> tuple[int, int]:
        """(Σ USS, Σ RSS) of the current children."""
        children = _children(self._pid)
        self.report.max_children = max(self.report.max_children, len(children))
        uss_sum = rss_sum = 0
        for pid in children:
            try:
                rss, uss = _rss_uss_bytes(pid)
            except (FileNotFoundError, ProcessLookupError, PermissionError):
                continue  # the child ended between listing and reading
            uss_sum += uss
            rss_sum += rss
        return uss_sum, rss_sum

    def _record(self, children: tuple[int, int]) -> None:
        own = _rss_bytes(self._pid) - self.report.baseline_rss
        report = self.report
        report.peak_extra = max(report.peak_extra, own + children[0])
        report.peak_rss_sum_extra = max(report.peak_rss_sum_extra, own + children[1])
        report.samples += 1

    def _run(self) -> None:
        every = max(1, round(self.children_interval / self.interval))
        children, n = (0, 0), 0
        while True:
            if n % every == 0:
                children = self._children_memory()
            self._record(children)
            n += 1
            if self._stop.wait(self.interval):
                return

    def __enter__(self) -> PeakMemory:
        release_free_memory()
        self.report = MemoryReport(baseline_rss=_rss_bytes(self._pid))
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="peak-memory", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._record(self._children_memory())  # in case the block was shorter than one interval


# ---------------------------------------------------------------- files
def store_files(root: str) -> tuple[int, int]:
    """(number of regular files, total bytes) under ``root`` (a folder or one file's prefix folder)."""
    n = size = 0
    for folder, _, files in os.walk(root):
        for name in files:
            n += 1
            size += os.path.getsize(os.path.join(folder, name))
    return n, size


def list_files(root: str) -> list[str]:
    """Every regular file under ``root``."""
    return [os.path.join(folder, f) for folder, _, files in os.walk(root) for f in files]


def drop_page_cache(paths: Iterable[str]) -> str:
    """Evict files from the page cache so the next read is cold; return the method used.

    ``sync`` first, then ``echo 3 > /proc/sys/vm/drop_caches`` (root only);
    where that is refused, ``posix_fadvise(POSIX_FADV_DONTNEED)`` on each file
    (after fsyncing it: only clean pages can be dropped).
    """
    os.sync()
    try:
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
        return "drop_caches"
    except OSError as e:
        logger.info("drop_caches refused (%s); using posix_fadvise(DONTNEED)", e)
    for path in paths:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)
    return "fadvise"


def cached_fraction(paths: Iterable[str]) -> float:
    """Fraction of the bytes of ``paths`` resident in the page cache (``fincore``), or NaN."""
    paths = list(paths)
    if not paths:
        return float("nan")
    try:
        out = subprocess.run(
            ["fincore", "--bytes", "--noheadings", "--raw", "--output", "RES,SIZE", *paths],
            check=True, capture_output=True, text=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return float("nan")
    res = size = 0
    for line in out.splitlines():
        r, s = line.split()
        res, size = res + int(r), size + int(s)
    return res / size if size else float("nan")


# ---------------------------------------------------------------- reporting
def write_results(results: str, name: str, result: dict[str, Any], md: Sequence[str]) -> None:
    """Write ``<results>/<name>.json`` and ``<name>.md`` (lines), and print the JSON."""
    os.makedirs(results, exist_ok=True)
    with open(os.path.join(results, f"{name}.json"), "w") as f:
        json.dump(result, f, indent=1)
    with open(os.path.join(results, f"{name}.md"), "w") as f:
        f.write("\n".join(md))
    print(json.dumps(result, indent=1))


def markdown_table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A GitHub markdown table."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _version(dist: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return "not installed"


def machine_facts(out_dir: str, packages: Sequence[str] = ()) -> dict[str, str]:
    """Cores, CPU, memory, kernel, filesystem of ``out_dir``, load, and package versions."""
    import psutil

    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    fs = "unknown"
    try:
        fs = subprocess.run(
            ["df", "--output=fstype,source", out_dir], check=True, capture_output=True, text=True
        ).stdout.split("\n")[1].strip()
    except (OSError, subprocess.CalledProcessError, IndexError):
        pass
    facts = {
        "cores (os.cpu_count)": str(os.cpu_count()),
        "usable cores (sched_getaffinity)": str(len(os.sched_getaffinity(0))),
        "cpu": cpu,
        "memory": f"{psutil.virtual_memory().total / 2**30:.1f} GiB",
        "kernel": platform.release(),
        "python": platform.python_version(),
        "filesystem of the stores": fs,
        "load average at start (1/5/15 min)": " / ".join(f"{x:.2f}" for x in os.getloadavg()),
    }
    for dist in packages:
        facts[dist] = _version(dist)
    return facts
