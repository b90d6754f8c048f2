"""Process statistics: CPU time and memory of a process from ``/proc``,
py-spy profiles of the server, and what the machine is (cores, CPU, memory,
library versions, load, commit).

CPU is user + system time of every thread (dead ones too), so a reading before
and after a window gives what a process spent in it, whatever else the machine
was doing.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
import platform
import shutil
import subprocess
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common import BIN, ROOT, log

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all its threads, dead ones too)."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    fields = raw.rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def memory_kb(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak RSS) of a process, in kB."""
    out = {"VmRSS": 0, "VmHWM": 0}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            name, _, value = line.partition(":")
            if name in out:
                out[name] = int(value.split()[0])
    except (FileNotFoundError, ProcessLookupError):
        pass
    return out


def children_of(pid: int) -> list[int]:
    """The pids of a process's children (the workers of ``serve --workers``)."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError):
            found += [int(p) for p in (task / "children").read_text().split()]
    return found


@dataclass
class Snapshot:
    """CPU seconds used so far by the server, the fake and the clients, at ``at``."""

    at: float
    server: float
    fake: float
    clients: float


def summarise_profile(collapsed: Path, top: int = 25) -> str:
    """Top functions by own and by total samples, and own samples per package."""
    own: Counter[str] = Counter()
    total: Counter[str] = Counter()
    package: Counter[str] = Counter()
    samples = 0
    for line in collapsed.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        samples += n
        frames = [_frame_name(f) for f in stack.split(";") if f]
        if not frames:
            continue
        own[frames[-1]] += n
        package[_package_of(frames[-1])] += n
        for name in set(frames):
            total[name] += n
    if not samples:
        return "no samples (was the server busy?)\n"
    out = [f"{samples} samples of the server's Python threads holding the GIL", ""]
    out.append("own time by package:")
    out += [f"  {n / samples:6.1%}  {name}" for name, n in package.most_common(15)]
    out += ["", f"top {top} functions by own time:"]
    out += [f"  {n / samples:6.1%}  {name}" for name, n in own.most_common(top)]
    out += ["", f"top {top} functions by total time (own + callees):"]
    out += [f"  {n / samples:6.1%}  {name}" for name, n in total.most_common(top)]
    ours = [(name, n) for name, n in total.most_common() if "(liya_engine/" in name]
    out += ["", "liya_engine functions by total time:"]
    out += [f"  {n / samples:6.1%}  {name}" for name, n in ours[:top]]
    return "\n".join(out) + "\n"


def _frame_name(frame: str) -> str:
    # py-spy raw frames look like "function (path/to/file.py:123)".
    name, _, where = frame.partition(" (")
    path = where.rstrip(")").rsplit(":", 1)[0]
    for marker in ("site-packages/", "/lib/python3.11/", "/server/", "/clients/"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    return f"{name} ({path})" if path else name


def _package_of(frame_name: str) -> str:
    path = frame_name.rpartition(" (")[2].rstrip(")")
    if not path:
        return "?"
    head = path.split("/", 1)[0]
    return head.removesuffix(".py") if "/" in path or head.endswith(".py") else head


def profile_server(
    pid: int,
    *,
    folder: Path,
    stamp: str,
    scenario: str,
    seconds: float,
    subprocesses: bool,
    native: bool,
    during: Callable[[], float],
) -> dict[str, Any]:
    """Sample the server ``pid`` with py-spy while ``during()`` runs a block of
    ``scenario`` at concurrency 16 and returns its throughput in req/s.

    Writes the collapsed stacks and their summary under ``folder``; returns
    what the JSON report says of the profile (with the summary's text).
    """
    py_spy = shutil.which("py-spy", path=str(BIN)) or shutil.which("py-spy")
    if not py_spy:
        log("--profile: py-spy not found (pip install py-spy); no profile taken")
        return {"tool": None}
    folder.mkdir(parents=True, exist_ok=True)
    out = folder / f"profile-{stamp}-{scenario}.collapsed.txt"
    cmd = [
        py_spy,
        "record",
        "--pid",
        str(pid),
        "--rate",
        "200",
        "--duration",
        str(max(1, round(seconds))),
        # Only samples that hold the GIL: the single-process server is bound by it
        # (about one core busy), so that is where its time goes. Threads waiting on
        # a queue (aiosqlite, executors) would otherwise look busy.
        "--gil",
        "--format",
        "raw",
        "--output",
        str(out),
    ]
    if subprocesses:
        cmd.append("--subprocesses")
    if native:
        cmd.append("--native")  # C and Cython frames too (gRPC core, protobuf)
    log(f"profiling the server with py-spy for {seconds:.0f}s during {scenario} at c=16")
    spy = subprocess.Popen(  # noqa: S603 - a tool found on PATH, fixed arguments
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    time.sleep(1.0)  # py-spy attaches
    throughput = during()
    output, _ = spy.communicate(timeout=60)
    if spy.returncode != 0 or not out.exists():
        log(f"py-spy failed: {output.decode(errors='replace')[-500:]}")
        return {"tool": "py-spy", "error": output.decode(errors="replace")[-500:]}
    summary = summarise_profile(out)
    top_file = folder / f"profile-{stamp}-{scenario}.top.txt"
    top_file.write_text(summary)
    return {
        "tool": "py-spy",
        "scenario": scenario,
        "concurrency": 16,
        "seconds": seconds,
        "throughput_rps_while_profiled": round(throughput, 1),
        "collapsed_stacks": out.name,
        "summary": top_file.name,
        "summary_text": summary,
    }


def machine_info() -> dict[str, Any]:
    """The machine and the software the figures were taken on."""

    def version(dist: str) -> str | None:
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            return None

    cpu_model, mem_total = "", ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem_total = f"{int(line.split()[1]) // 1024} MB"

    def git(*args: str) -> str:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            return subprocess.run(  # noqa: S603 - fixed read-only queries
                ["git", "--no-optional-locks", *args],  # noqa: S607
                cwd=ROOT,
                capture_output=True,
                text=True,
                timeout=10,
                check=False,
            ).stdout.strip()
        return ""

    commit = git("rev-parse", "--short", "HEAD")
    # Uncommitted changes to the service mean the figures are not of that commit.
    dirty = bool(git("status", "--porcelain", "--untracked-files=no", "--", "server"))
    return {
        "nproc": len(os.sched_getaffinity(0)),
        "cpu_count": os.cpu_count(),
        "cpu_model": cpu_model,
        "memory": mem_total,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "grpcio": version("grpcio"),
        "protobuf": version("protobuf"),
        "openai": version("openai"),
        "httpx2": version("httpx2"),
        "sqlalchemy": version("SQLAlchemy"),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "commit": commit,
        "server_tree_dirty": dirty,
    }
