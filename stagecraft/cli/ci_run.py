"""`stagecraft ci run [WORKFLOW]`: start a GitHub Actions workflow and follow its run."""

from __future__ import annotations

from pathlib import Path

import click

from stagecraft.cli.context import AppContext
from stagecraft.cli.context import command as subcommand

DEFAULT_WORKFLOW = "stagecraft-deploy.yml"


@subcommand("run", short_help="Start a CI workflow and follow its run.")
@click.argument("workflow", default=DEFAULT_WORKFLOW)
@click.option("--ref", metavar="REF", help="Branch or tag to run on (default: the current branch).")
@click.option("--input", "inputs", metavar="KEY=VALUE", multiple=True,
              help="A workflow_dispatch input (repeatable).")
@click.option("--repo", metavar="OWNER/NAME",
              help="GitHub repository (default: from `git remote get-url origin`).")
@click.option("--no-follow", is_flag=True, help="Start the run, print its URL, and return.")
@click.option("--interval", default="5s", metavar="DURATION", show_default=True,
              help="How often to ask GitHub about the run while it changes (backs off "
                   "up to 6x while nothing does).")
def command(app: AppContext, workflow: str, ref: str | None, inputs: tuple[str, ...],
            repo: str | None, no_follow: bool, interval: str) -> None:
    """Start WORKFLOW (a file in .github/workflows/, default stagecraft-deploy.yml) with
    a workflow_dispatch event, then follow its run: each change of the run or of a job
    is printed (JSON lines with --output json). Exits 0 when the run succeeds, 6 naming
    the failed jobs and steps otherwise. Ctrl-C stops following; the run goes on."""
    from stagecraft.config.values import parse_duration
    from stagecraft.errors import Interrupted, UsageError
    from stagecraft.providers.ci.runs import Follower, check_conclusion, parse_inputs, start_run
    from stagecraft.providers.ci.github_api import GitHubClient, current_branch, repo_of

    try:
        every = parse_duration(interval)
    except ValueError as exc:
        raise UsageError(f"--interval: {exc}", hint="write a duration like 5s") from None
    here = Path.cwd()
    target = repo_of(here, repo)
    ref = ref or current_branch(here)
    wanted = parse_inputs(inputs)
    if app.dry_run:
        app.emit({"event": "dry_run", "workflow": workflow, "ref": ref, "repo": str(target),
                  "inputs": wanted},
                 f"dry run: would start {workflow} on {ref} in {target}"
                 + (f" with inputs {', '.join(sorted(wanted))}" if wanted else ""))
        return
    client = GitHubClient.from_env(on_retry=app.say)
    run = start_run(client, target, workflow, ref, wanted)
    url = run.get("html_url")
    started = {"event": "started", "run_id": run["id"], "workflow": workflow, "ref": ref,
               "repo": str(target), "html_url": url}
    app.emit(started, f"started {workflow} on {ref} in {target}: run {run['id']}\n  {url}")
    if no_follow:
        return

    def show(event: dict) -> None:
        state = event["status"] + (f" ({event['conclusion']})" if event["conclusion"] else "")
        if event["event"] == "run":
            app.emit(event, f"run {event['run_id']}: {state}")
        else:
            app.emit(event, f"  job {event['job']}: {state}")

    follower = Follower(client, target, run["id"], interval=every,
                        max_interval=max(every * 6, every), on_event=show)
    try:
        final = follower.follow()
    except KeyboardInterrupt:
        raise Interrupted(f"stopped following run {run['id']}; the run goes on: {url}",
                          hint="follow or cancel it on GitHub") from None
    check_conclusion(final, follower.jobs, workflow)
    app.emit({"event": "done", "run_id": run["id"], "conclusion": final.get("conclusion"),
              "html_url": url}, f"run {run['id']} succeeded")
