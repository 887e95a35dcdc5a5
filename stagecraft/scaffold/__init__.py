"""`stagecraft init`: a complete, valid stagecraft.yml and the .stagecraft/ workspace."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import jinja2

from stagecraft.config.values import DNS_LABEL
from stagecraft.errors import ConfigError, UsageError
from stagecraft.fsutil import write_atomic
from stagecraft.providers.kinds import FAMILIES, usable_kinds

WORKSPACE = ".stagecraft"
#: Every choice the template can write, per option.
TEMPLATE_CHOICES = {
    "backend": ("generic", "encore-ts"),
    "frontend": ("none", "generic"),
    "network": ("none", "tailscale", "headscale"),
    "cloud": ("local", "digitalocean", "ssh"),
    "secrets": ("envfile", "encore"),
    "ci": ("none", "github"),
}


def _offered(option: str, choices: tuple[str, ...]) -> tuple[str, ...]:
    """The choices init offers: for cloud and network only the kinds that have a
    provider now (validate rejects the others, stagecraft.providers.kinds)."""
    if option not in FAMILIES:
        return choices
    usable = usable_kinds(option)
    return tuple(choice for choice in choices if choice in usable)


#: What init offers, per option.
CHOICES = {option: _offered(option, choices) for option, choices in TEMPLATE_CHOICES.items()}


@dataclass(frozen=True)
class ServiceChoice:
    name: str
    port: int


@dataclass(frozen=True)
class InitOptions:
    """Answers to init's prompts."""

    name: str
    environments: tuple[str, ...] = ("local", "production")
    services: tuple[ServiceChoice, ...] = (ServiceChoice("web", 8080),)
    backend: str = "generic"
    frontend: str = "none"
    network: str = "none"
    cloud: str = "local"
    secrets: str = "envfile"
    ci: str = "none"


def default_project_name(directory: Path) -> str:
    """A DNS-label project name from a directory name ("My App" -> "my-app")."""
    name = re.sub(r"[^a-z0-9-]+", "-", directory.resolve().name.lower()).strip("-")[:63].strip("-")
    return name or "app"


def parse_names(text: str, what: str) -> tuple[str, ...]:
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    if not names:
        raise UsageError(f"give at least one {what}")
    for name in names:
        if not DNS_LABEL.match(name):
            raise UsageError(f"{what} '{name}' must be lowercase letters, digits and '-'")
    if len(set(names)) != len(names):
        raise UsageError(f"{what}s must be unique: {text}")
    return names


def parse_services(text: str) -> tuple[ServiceChoice, ...]:
    """'api:8080,web:3000' -> services; a missing port means 8080."""
    services = []
    for item in (i.strip() for i in text.split(",") if i.strip()):
        name, _, port = item.partition(":")
        parse_names(name, "service name")
        try:
            number = int(port) if port else 8080
        except ValueError:
            raise UsageError(f"service '{item}': the port must be a number") from None
        if not 1 <= number <= 65535:
            raise UsageError(f"service '{item}': the port must be 1-65535")
        services.append(ServiceChoice(name, number))
    if not services:
        raise UsageError("give at least one service, like web:8080")
    if len({s.name for s in services}) != len(services):
        raise UsageError(f"service names must be unique: {text}")
    return tuple(services)


def render_config(options: InitOptions) -> str:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(Path(__file__).parent),
        undefined=jinja2.StrictUndefined, keep_trailing_newline=True,
    )
    remote = any(e != "local" for e in options.environments) and options.cloud == "digitalocean"
    return env.get_template("stagecraft.yml.j2").render(o=options, cloud_remote=remote)


def init_project(directory: Path, options: InitOptions, *, force: bool = False) -> list[Path]:
    """Write stagecraft.yml, .stagecraft/ (with the JSON Schema) and the
    .gitignore entry. Validates the rendered file before writing anything."""
    from stagecraft.config import load_config_text
    from stagecraft.config.jsonschema import config_json_schema

    config_path = directory / "stagecraft.yml"
    if config_path.exists() and not force:
        raise UsageError(f"{config_path} already exists",
                         hint="pass --force to overwrite it (the old file is replaced)")
    text = render_config(options)
    try:
        load_config_text(text, str(config_path))
    except ConfigError as exc:  # a bug in the template, never the user's fault
        raise RuntimeError(f"init rendered an invalid stagecraft.yml:\n{exc.message}") from exc

    written = []
    workspace = directory / WORKSPACE
    workspace.mkdir(parents=True, exist_ok=True)
    schema_path = workspace / "schema.json"
    write_atomic(schema_path, json.dumps(config_json_schema(), indent=2) + "\n")
    written.append(schema_path)
    write_atomic(config_path, text)
    written.append(config_path)
    gitignore = directory / ".gitignore"
    if _add_ignore(gitignore, f"{WORKSPACE}/"):
        written.append(gitignore)
    return written


def _add_ignore(gitignore: Path, entry: str) -> bool:
    lines = gitignore.read_text(encoding="utf-8").splitlines() if gitignore.exists() else []
    if entry in lines or entry.rstrip("/") in lines:
        return False
    lines.append(entry)
    write_atomic(gitignore, "\n".join(lines) + "\n")
    return True
