"""Where a deploy's time goes: its Ansible run's plays and slowest tasks, from
ansible-runner's job_events under .stagecraft/runs/<id>/artifacts/*/job_events."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from pathlib import Path

from stagecraft.ansible.runner import recorded_events


def newest_run(project: Path, kind: str = "deploy") -> Path | None:
    """The newest run dir of ``kind`` (its name holds ``-<kind>-``), or None."""
    runs = sorted((project / ".stagecraft" / "runs").glob(f"*-{kind}-*"))
    return runs[-1] if runs else None


def _events(run_dir: Path) -> list[dict]:
    # The run's process is gone: its events are the ones it left on disk.
    events: list[dict] = []
    for artifacts in sorted(run_dir.glob("artifacts/*")):
        events.extend(recorded_events(artifacts))
    return events


def _time(stamp: str) -> float:
    return datetime.fromisoformat(stamp).timestamp()


def breakdown(run_dir: Path | None, top: int = 10, *, started: float | None = None,
              ended: float | None = None) -> str:
    """Markdown: the run's span, each play's wall time, the slowest tasks (the
    longest host's duration; hosts of one batch run a task at the same time).
    ``started``/``ended``: wall-clock start and end of the CLI process, to split
    its own time before and after the Ansible run."""
    if run_dir is None:
        return "(no Ansible run: the deploy did not start a playbook)"
    events = _events(run_dir)
    if not events:
        return f"(no job events in {run_dir.name})"
    stamps = [_time(e["created"]) for e in events if e.get("created")]
    first, last = min(stamps), max(stamps)
    split = ""
    if started is not None and ended is not None:
        split = (f"The deploy command took {ended - started:.1f} s: {first - started:.1f} s in the "
                 f"CLI before Ansible's first event (config, probe, plan, lock, ledger, "
                 f"ansible-playbook's start), {last - first:.1f} s of Ansible run, "
                 f"{ended - last:.1f} s after its last event (ledger, unlock, exit).")
    plays: list[tuple[str, float]] = []
    for e in events:
        if e.get("event") == "playbook_on_play_start":
            plays.append((e["event_data"].get("play", "?"), _time(e["created"])))
    tasks: dict[tuple[str, str], list[float]] = defaultdict(list)
    for e in events:
        data = e.get("event_data", {})
        if e.get("event") in ("runner_on_ok", "runner_on_failed", "runner_on_skipped",
                              "runner_on_unreachable") and data.get("duration") is not None:
            tasks[(data.get("play", "?"), data.get("task", "?"))].append(float(data["duration"]))
    lines = ([split, ""] if split else []) + [
        f"Ansible run `{run_dir.name}`: {last - first:.1f} s from its first to its last event.", "",
        "| play | wall |", "|---|---|"]
    for i, (name, start) in enumerate(plays):
        end = plays[i + 1][1] if i + 1 < len(plays) else last
        lines.append(f"| {name} | {end - start:.1f} s |")
    rolled = []
    for e in events:
        data = e.get("event_data", {})
        services = (data.get("res") or {}).get("services") if e.get("event") == "runner_on_ok" else None
        if isinstance(services, dict):
            for name, info in services.items():
                if isinstance(info, dict) and info.get("seconds") is not None:
                    rolled.append(f"{data.get('host')}: {name} {info.get('action')} in {info['seconds']} s")
    if rolled:
        lines += ["", "Per host, as the rollout module reports it: " + "; ".join(rolled) + "."]
    steps = []
    for e in events:
        data = e.get("event_data", {})
        res = data.get("res") or {}
        if e.get("event") == "runner_on_ok" and isinstance(res.get("steps"), dict):
            inside = {k: float(v.get("seconds") or 0) for k, v in res["steps"].items()
                      if isinstance(v, dict)}
            outside = float(data.get("duration") or 0) - sum(inside.values())
            text = (f"{data.get('host')}: " + ", ".join(f"{k} {v:.1f} s" for k, v in inside.items())
                    + f", and {outside:.1f} s of the task outside the steps")
            timing = res.get("timing")
            if isinstance(timing, dict) and data.get("start") and data.get("end") and \
                    all(isinstance(timing.get(k), (int, float)) for k in ("loaded", "ready", "ended")):
                # The host's clock against the controller's: the same kernel on the local cloud.
                text += (f" ({timing['loaded'] - _time(data['start']):.1f} s from the task's start "
                         "to the module's first line: templating, connection, transfer, Python start; "
                         f"{timing['ready'] - timing['loaded']:.1f} s of imports and argument checks; "
                         f"{_time(data['end']) - timing['ended']:.1f} s from its return to the task's end)")
            steps.append(text)
    if steps:
        lines += ["", "Per host, the release module's steps: " + "; ".join(steps) + "."]
    slowest = sorted(tasks.items(), key=lambda kv: -max(kv[1]))[:top]
    lines += ["", "| slowest tasks (play / task) | hosts | longest | sum over hosts |", "|---|---|---|---|"]
    for (play, task), durations in slowest:
        lines.append(f"| {play.split(':')[0]} / {task} | {len(durations)} | {max(durations):.1f} s "
                     f"| {sum(durations):.1f} s |")
    return "\n".join(lines)


def ledger_phases(releases: list[dict], release_id: str) -> str:
    """One line: the ledger's phase records of ``release_id`` (second resolution)."""
    for release in releases:
        if release.get("id") == release_id:
            parts = []
            for phase in release.get("phases", []):
                if phase.get("started") and phase.get("finished"):
                    seconds = _time(phase["finished"].replace("Z", "+00:00")) - \
                        _time(phase["started"].replace("Z", "+00:00"))
                    parts.append(f"{phase['name']} {seconds:.0f}s")
                else:
                    parts.append(f"{phase['name']} {phase.get('status')}")
            created, finished = release.get("created"), release.get("finished")
            total = ""
            if created and finished:
                total = (f" (recorded from {created} to {finished}: "
                         f"{_time(finished.replace('Z', '+00:00')) - _time(created.replace('Z', '+00:00')):.0f} s)")
            if all(part.endswith(" 0s") for part in parts):  # stamped together at the end
                return f"Ledger record of {release_id}{total or ''}; its phase stamps (whole " \
                       "seconds) are all written as the run ends, so the Ansible run below shows the split."
            return f"Ledger phases of {release_id}: {', '.join(parts)}{total}."
    return f"(release {release_id} not in the ledger)"
