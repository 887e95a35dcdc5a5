"""`secrets sync --to github`: the plan (names only) and the sealed writes.

GitHub lists secrets by name and date, never by value, so a referenced name that is
already there is an update whether or not its value changed; names on GitHub that the
config does not reference are left alone.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

Say = Callable[[str], None]


@dataclass
class GitHubSync:
    """The plan of a sync to GitHub: names only."""

    repo: str
    github_environment: str | None  # None: repository secrets
    create: list[str] = field(default_factory=list)
    update: list[str] = field(default_factory=list)
    left_alone: list[str] = field(default_factory=list)  # on GitHub, not referenced
    done: dict[str, str] = field(default_factory=dict)  # name -> created | updated

    @property
    def scope(self) -> str:
        if self.github_environment is None:
            return f"repository secrets of {self.repo}"
        return f"environment '{self.github_environment}' of {self.repo}"

    def to_dict(self) -> dict[str, Any]:
        rows = [{"name": n, "action": "create"} for n in self.create]
        rows += [{"name": n, "action": "update"} for n in self.update]
        rows += [{"name": n, "action": "leave"} for n in self.left_alone]
        for row in rows:
            if row["name"] in self.done:
                row["result"] = self.done[row["name"]]
        return {"to": "github", "repo": self.repo,
                "github_environment": self.github_environment,
                "secrets": sorted(rows, key=lambda r: r["name"])}


def plan_github(client, repo, github_environment: str | None,
                names: Iterable[str]) -> GitHubSync:
    """What a sync would do: GitHub lists names (and updated_at), never values, so a
    referenced name already there is an update whether or not its value changed."""
    existing = {s["name"] for s in client.secrets(repo, github_environment)}
    wanted = {name.upper() for name in names}  # GitHub keeps names upper case
    return GitHubSync(repo=str(repo), github_environment=github_environment,
                      create=sorted(wanted - existing), update=sorted(wanted & existing),
                      left_alone=sorted(existing - wanted))


def apply_github(client, repo, plan: GitHubSync, values: Mapping[str, str],
                 say: Say) -> GitHubSync:
    """Seal and store every created or updated name, with one public key fetch."""
    key = client.public_key(repo, plan.github_environment)
    by_upper = {name.upper(): value for name, value in values.items()}
    for name in sorted(plan.create + plan.update):
        plan.done[name] = client.put_secret(repo, name, by_upper[name], key,
                                            plan.github_environment)
        say(f"{plan.done[name]} {name}")
    return plan
