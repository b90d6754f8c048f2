"""Where a run's results go, and the README's copy of the latest saved run.

A run writes its JSON (and profiles) to ``bench/results/local/``, which git
ignores, so ``make bench`` changes no tracked file. ``--save`` (full runs
only) keeps the run instead: its JSON goes to ``bench/results/<stamp>.json``
and ``bench/results/latest.json``, and the part of the top-level README
between the two markers below is rewritten from it (machine, tables,
targets). ``python bench/saving.py`` rewrites that part from
``bench/results/latest.json`` alone, e.g. after a merge;
``tests/test_bench_readme.py`` checks that the two agree.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from common import RESULTS_DIR, ROOT, BenchError, log

LOCAL_DIR = RESULTS_DIR / "local"
LATEST = RESULTS_DIR / "latest.json"
README = ROOT / "README.md"
START = "<!-- latest saved bench run: written by bench/saving.py from bench/results/latest.json -->"
END = "<!-- end of the latest saved bench run -->"


def folder(args: argparse.Namespace) -> Path | None:
    """Where this run writes: ``bench/results/`` with ``--save``, nowhere with
    ``--no-save``, else the ignored ``bench/results/local/``."""
    if args.no_save:
        return None
    where = RESULTS_DIR if args.save else LOCAL_DIR
    where.mkdir(parents=True, exist_ok=True)
    return where


def write_run(report: dict[str, Any], args: argparse.Namespace) -> None:
    """Write ``report`` as ``<stamp>.json`` and ``latest.json`` in ``folder``;
    with ``--save``, rewrite the README's latest run from it too."""
    where = folder(args)
    if where is None:
        return
    text = json.dumps(report, indent=2) + "\n"
    path = where / f"{report['stamp']}.json"
    path.write_text(text)
    (where / "latest.json").write_text(text)
    log(f"wrote {path.relative_to(ROOT)} and latest.json beside it")
    if args.save:
        update_readme(report)
        log(f"rewrote the latest run in {README.relative_to(ROOT)}")


def readme_section(report: dict[str, Any]) -> str:
    """What the README shows of a saved run, between ``START`` and ``END``."""
    m, s = report["machine"], report["settings"]
    workers = s["server_workers"]
    when = report["started_at"].replace("T", " ")[:16]
    dirty = " (with uncommitted changes to the service)" if m.get("server_tree_dirty") else ""
    load = ", ".join(f"{x:g}" for x in m["load_average_at_start"])
    databases = f"SQLite with {s['tenants']:,} cold tenants"
    postgres = report.get("postgres")
    if postgres:
        databases += f" and PostgreSQL {postgres['server_version']} with {postgres['tenants']:,}"
    lines = [
        f"Latest saved full run: {when} UTC, commit {m['commit']}{dirty}; {m['nproc']} x "
        f"{m['cpu_model']} cores, {m['memory']}, Python {m['python']}, grpcio {m['grpcio']}; "
        f"load average {load} at the start; {s['rounds']} rounds of {s['window_s']:g} s "
        f"windows; {databases}; {workers} server process{'es' if workers > 1 else ''}, "
        f"{s['client_processes']} client processes (`bench/results/latest.json`).",
        "",
        report["table_markdown"],
        "",
        report["targets_markdown"],
    ]
    if postgres:
        lines += ["", postgres["seed_line"], "", postgres["table_markdown"]]
    return "\n".join(lines)


def replace_section(readme: str, section: str) -> str:
    """``readme`` with what lies between ``START`` and ``END`` replaced by ``section``."""
    head, start, rest = readme.partition(START)
    _old, end, tail = rest.partition(END)
    if not start or not end:
        raise BenchError(f"README.md has no {START!r} ... {END!r} markers")
    return f"{head}{START}\n{section}\n{END}{tail}"


def current_section(readme: str) -> str:
    """What lies between the markers now (``replace_section``'s inverse)."""
    _head, _start, rest = readme.partition(START)
    return rest.partition(END)[0].strip("\n")


def update_readme(report: dict[str, Any], readme: Path = README) -> None:
    """Rewrite ``readme``'s latest run from ``report``."""
    readme.write_text(replace_section(readme.read_text(), readme_section(report)))


if __name__ == "__main__":
    update_readme(json.loads(LATEST.read_text()))
    print(f"README.md now shows {LATEST.relative_to(ROOT)}", file=sys.stderr)
