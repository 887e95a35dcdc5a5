"""bench/report.py writes docs/benchmarks.md, which is committed: no path of the
machine that ran the benchmarks may end up in it."""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from bench.report import REPO, relative_paths  # noqa: E402

# Roots of a made-up machine, so the test does not depend on where it runs.
MACHINE = {"repo": "/srv/build/stagecraft", "venv": "/srv/build/stagecraft/.venv",
           "stdlib": "/opt/python/lib/python3.11", "tmp": "/var/tmp"}

PROFILE = """\
Sat Nov 21 12:07:56 2026    /var/tmp/tmpsy42982z/noop.prof
   ncalls  tottime  percall  cumtime  percall filename:lineno(function)
        1    0.000    0.000    2.707    2.707 /srv/build/stagecraft/stagecraft/cli/deploy.py:77(command)
   398/11    0.006    0.000    1.687    0.153 <frozen importlib._bootstrap>:1165(_find_and_load)
        2    0.000    0.000    0.800    0.400 /opt/python/lib/python3.11/subprocess.py:1165(communicate)
        1    0.000    0.000    0.700    0.700 /srv/build/stagecraft/.venv/lib/python3.11/site-packages/yaml/__init__.py:74(load)
"""


def test_profile_paths_are_relative_to_the_repository() -> None:
    out = relative_paths(PROFILE, **MACHINE)
    assert "Sat Nov 21 12:07:56 2026    noop.prof\n" in out
    assert " stagecraft/cli/deploy.py:77(command)" in out
    assert " <python>/subprocess.py:1165(communicate)" in out
    assert " <venv>/lib/python3.11/site-packages/yaml/__init__.py:74(load)" in out
    assert "<frozen importlib._bootstrap>:1165(_find_and_load)" in out
    for root in MACHINE.values():
        assert root not in out
    assert not re.search(r"(^|\s)/(srv|opt|var)/", out, re.M), out


def test_the_roots_themselves_and_markdown_around_paths() -> None:
    text = "ran in `/srv/build/stagecraft` with (/srv/build/stagecraft/.venv/bin/python)"
    assert relative_paths(text, **MACHINE) == "ran in `.` with (<venv>/bin/python)"


def test_other_text_is_left_alone() -> None:
    text = ("500/50 <= 12x; 50 req/s; p99 during/before; `GET /version`; "
            "/opt/stagecraft/shop/local/releases on a host; <venv>/lib; "
            "/var/tmp/stagecraft.lock; /srv/build/stagecraft2/x.py")
    # /var/tmp/stagecraft.lock is not a file inside a temporary directory, and
    # stagecraft2 is another folder than the repository.
    assert relative_paths(text, **MACHINE) == text


def test_it_is_idempotent() -> None:
    once = relative_paths(PROFILE, **MACHINE)
    assert relative_paths(once, **MACHINE) == once


def test_defaults_are_this_machine() -> None:
    text = f"{REPO}/stagecraft/cli/deploy.py:77 {sys.prefix}/bin/python {sys.executable}"
    out = relative_paths(text)
    assert str(REPO) not in out and sys.prefix not in out
    assert out.startswith("stagecraft/cli/deploy.py:77 <venv>/bin/python ")


def test_the_committed_results_hold_no_absolute_paths_of_this_machine() -> None:
    results = (ROOT / "docs" / "benchmarks.md").read_text(encoding="utf-8")
    assert relative_paths(results) == results
    assert str(ROOT) not in results


def test_write_section_writes_relative_paths(tmp_path, monkeypatch) -> None:
    import bench.report as report

    results = tmp_path / "benchmarks.md"
    monkeypatch.setattr(report, "RESULTS", results)
    body = f"## Profile\n\n```\n{REPO}/stagecraft/plan/planner.py:12(build_plan)\n```"
    report.write_section("demo", body)
    text = results.read_text(encoding="utf-8")
    assert "\nstagecraft/plan/planner.py:12(build_plan)\n" in text
    assert str(REPO) not in text
