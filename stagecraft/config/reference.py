"""The settings reference (docs/config-reference.md), generated from the models'
descriptions so the docs cannot drift from the code.

Run `python -m stagecraft.config.reference > docs/config-reference.md`.
"""

from __future__ import annotations

import typing
from typing import Any

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from stagecraft.config import schema
from stagecraft.config.values import DURATION_PATTERN, REFERENCE_PATTERN


def _type_name(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Annotated:
        return _special(args[1:]) or _type_name(args[0])
    if origin is typing.Union:
        parts = [a for a in args if a is not type(None)]
        models = [a for a in parts if isinstance(a, type) and issubclass(a, BaseModel)]
        if models and "kind" in models[0].model_fields:
            return "provider: " + " | ".join(
                typing.get_args(m.model_fields["kind"].annotation)[0] for m in models)
        return " or ".join(_type_name(a) for a in parts)
    if origin is typing.Literal:
        return " | ".join(repr(a) if isinstance(a, int) else a for a in args)
    if origin is list:
        return f"list of {_type_name(args[0])}"
    if origin is dict:
        return f"map of {_type_name(args[1])}"
    if isinstance(annotation, type):
        if issubclass(annotation, BaseModel):
            return annotation.__name__
        return {str: "string", int: "integer", bool: "boolean", float: "number"}.get(
            annotation, annotation.__name__)
    return str(annotation)


def _special(metadata: Any) -> str | None:
    """'duration' or 'reference' for the value types that carry a JSON Schema pattern."""
    for item in metadata:
        pattern = (getattr(item, "json_schema", None) or {}).get("pattern")
        if pattern == DURATION_PATTERN:
            return "duration"
        if pattern == REFERENCE_PATTERN:
            return "reference"
    return None


def _default(info: Any) -> str:
    if info.default_factory is not None:
        try:
            value = info.default_factory()
        except TypeError:
            return "(default)"
        if isinstance(value, BaseModel):
            return "(defaults)"
        return f"`{value}`" if value not in ({}, []) else "empty"
    if info.default is PydanticUndefined:
        return "**required**"
    return "—" if info.default is None else f"`{info.default}`"


def _models() -> list[type[BaseModel]]:
    ordered = [schema.StagecraftConfig, schema.Project, schema.Registry, schema.Providers]
    ordered += [schema.BackendGeneric, schema.BackendEncore, schema.FrontendGeneric,
                schema.NetworkTailscale, schema.NetworkHeadscale, schema.NetworkNone,
                schema.CloudDigitalOcean, schema.CloudLocal, schema.CloudSSH,
                schema.SecretsEnvfile, schema.SecretsEncore, schema.CIGithub]
    ordered += [schema.Service, schema.Build, schema.Healthcheck, schema.Route, schema.Volume,
                schema.Migrations, schema.MigrationSet, schema.Firewall, schema.Rollout,
                schema.Environment, schema.Host]
    return ordered


def _provider_kinds() -> list[str]:
    """Which cloud and network kinds work today: the registered providers'."""
    from stagecraft.providers.kinds import FAMILIES, usable_kinds

    out = ["## Provider kinds that work today", "",
           "The models below describe every provider kind of the design, but a cloud or "
           "network kind works only once a provider for it ships with stagecraft or is "
           "registered under the entry-point group `stagecraft.providers.<family>`. "
           "`stagecraft validate`, and every command that loads stagecraft.yml, rejects the "
           "other kinds until their provider lands (exit 3, naming the file:line:column of "
           "the `kind`).", "",
           "| family | works today | rejected until its provider lands |", "|---|---|---|"]
    for family in FAMILIES:
        usable = usable_kinds(family)
        waiting = sorted(set(schema.PROVIDER_KINDS[family]) - set(usable))
        out.append(f"| {family} | {', '.join(usable)} | {', '.join(waiting) or '—'} |")
    out.append("")
    return out


def render() -> str:
    out = ["# stagecraft.yml settings reference", "",
           "Generated from the models in `stagecraft/config/schema.py` by "
           "`python -m stagecraft.config.reference`; do not edit by hand. The guide is "
           "[config.md](config.md).", ""]
    out += _provider_kinds()
    for model in _models():
        out += [f"## {model.__name__}", "", (model.__doc__ or "").strip(), "",
                "| setting | type | default | description |", "|---|---|---|---|"]
        for name, info in model.model_fields.items():
            kind = _special(info.metadata) or _type_name(info.annotation)
            out.append(f"| `{info.alias or name}` | {kind} | "
                       f"{_default(info)} | {info.description or ''} |")
        out.append("")
    return "\n".join(out)


if __name__ == "__main__":
    print(render(), end="")
