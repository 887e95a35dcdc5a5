"""Load stagecraft.yml: parse, validate, resolve every environment, check.

All problems are collected and raised together in one ConfigError, each with
file:line:column, the dotted path and what was expected. Nothing but
ConfigError leaves this module for bad input.
"""

from __future__ import annotations

import difflib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, get_args, get_origin

from pydantic import BaseModel, ValidationError

from stagecraft.config import checks
from stagecraft.config.overlay import ENVIRONMENT_OWN_KEYS, resolve_raw, source_path
from stagecraft.config.schema import ResolvedEnvironment, StagecraftConfig
from stagecraft.config.positions import (
    Issue,
    Path_,
    Position,
    SourceMap,
    YAMLLoadError,
    dotted,
    load_yaml_file,
    load_yaml_text,
)
from stagecraft.config.values import DNS_LABEL_PATTERN, find_references
from stagecraft.errors import ConfigError
from stagecraft.providers.kinds import all_usable_kinds

CONFIG_NAMES = ("stagecraft.yml", "stagecraft.yaml")


@dataclass(frozen=True)
class LoadedConfig:
    """A valid stagecraft.yml with every environment resolved."""

    path: Path
    config: StagecraftConfig
    raw: dict
    source: SourceMap
    environments: dict[str, ResolvedEnvironment]
    origins: dict[str, dict[Path_, Path_]] = field(repr=False)

    @property
    def project_dir(self) -> Path:
        return self.path.parent

    def environment(self, name: str | None) -> ResolvedEnvironment:
        """The resolved environment ``name``; an error that lists the choices otherwise."""
        names = ", ".join(self.environments)
        if name is None:
            if len(self.environments) == 1:
                return next(iter(self.environments.values()))
            raise ConfigError(
                "no environment chosen",
                hint=f"pass --env NAME (or set STAGECRAFT_ENV); environments: {names}",
            )
        if name not in self.environments:
            close = [n for n in self.environments if n.startswith(name)] or \
                difflib.get_close_matches(name, list(self.environments), n=1)
            suggestion = f"did you mean '{close[0]}'? " if close else ""
            raise ConfigError(
                f"environment '{name}' is not defined in {self.path.name}",
                hint=f"{suggestion}environments: {names}",
            )
        return self.environments[name]

    def position_of(self, env: str, path: Path_) -> Position | None:
        """Where a resolved setting of ``env`` was written, or None for a default."""
        origin = self.origins[env]
        if path not in origin:
            return None
        return self.source.values.get(origin[path])


def find_config(explicit: str | os.PathLike | None = None, start: Path | None = None) -> Path:
    """The config file: ``explicit`` if given, else stagecraft.yml here or in a parent."""
    if explicit is not None:
        path = Path(explicit)
        if not path.is_file():
            raise ConfigError(
                f"config file {path} does not exist",
                hint="pass the path of your stagecraft.yml with --config, or run `stagecraft init`",
            )
        return path
    here = (start or Path.cwd()).resolve()
    for directory in (here, *here.parents):
        for name in CONFIG_NAMES:
            candidate = directory / name
            if candidate.is_file():
                return _relative(candidate)
    raise ConfigError(
        f"no stagecraft.yml in {here} or any parent directory",
        hint="run `stagecraft init` to create one, or pass --config PATH",
    )


def _relative(path: Path) -> Path:
    """Shorter paths in messages: relative to the working directory when inside it."""
    try:
        return path.relative_to(Path.cwd())
    except ValueError:
        return path


def load_config(path: Path) -> LoadedConfig:
    """Load and validate ``path``; raise ConfigError listing every problem."""
    try:
        raw, smap, yaml_issues = load_yaml_file(path)
    except YAMLLoadError as exc:
        raise _config_error(path, exc.issues) from None
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}",
                          hint="check the path and its permissions") from None
    return _validate(path, raw, smap, yaml_issues)


def load_config_text(text: str, file: str = "stagecraft.yml") -> LoadedConfig:
    """Load from a string (tests, stdin)."""
    try:
        raw, smap, yaml_issues = load_yaml_text(text, file)
    except YAMLLoadError as exc:
        raise _config_error(Path(file), exc.issues) from None
    return _validate(Path(file), raw, smap, yaml_issues)


def _validate(path: Path, raw: Any, smap: SourceMap, yaml_issues: list[Issue]) -> LoadedConfig:
    if not isinstance(raw, dict):
        what = "empty" if raw is None else f"a {_kind(raw)}"
        raise _config_error(path, [Issue((), f"expected a mapping of settings at the top, "
                                                f"but the file is {what}",
                                          smap.locate(()) or Position(str(path), 1, 1))])
    raw = _strip_extensions(raw)
    issues: list[Issue] = [*yaml_issues, *_reference_issues(raw, (), smap)]

    config: StagecraftConfig | None = None
    try:
        config = StagecraftConfig.model_validate(raw)
    except ValidationError as exc:
        issues.extend(_translate(exc, raw, smap, StagecraftConfig))
        # Model-level rules only run once fields are valid; report this one anyway.
        issues.extend(_service_source_issues(raw, smap))

    issues.extend(_unknown_service_overrides(raw, smap))

    environments: dict[str, ResolvedEnvironment] = {}
    origins: dict[str, dict[Path_, Path_]] = {}
    usable = all_usable_kinds()
    env_names = list(raw.get("environments") or {}) if isinstance(raw.get("environments"), dict) else []
    for name in env_names:
        merged, origin = resolve_raw(raw, name)
        origins[name] = origin
        try:
            env = ResolvedEnvironment.model_validate(merged)
        except ValidationError as exc:
            found = _translate(exc, merged, smap, ResolvedEnvironment, origin)
            # Problems written in the top level were reported above already,
            # unless the top level itself validated (then they come from merging).
            own = [i for i in found if i.path[:2] == ("environments", name)]
            issues.extend(own if (own or config is None) else found)
            # Still run the cross-field checks on what is valid, so one pass
            # reports as much as it can.
            pruned, dropped = _prune_invalid(merged, exc)
            if pruned is not None:
                issues.extend(_cross_issues(pruned, origin, smap, dropped, usable))
            continue
        environments[name] = env
        issues.extend(_cross_issues(env, origin, smap, [], usable))

    issues = _dedupe(issues)
    if issues or config is None:
        raise _config_error(path, issues)
    return LoadedConfig(path, config, raw, smap, environments, origins)


def _cross_issues(env: ResolvedEnvironment, origin: dict[Path_, Path_], smap: SourceMap,
                  dropped: list[Path_], usable: dict[str, list[str]]) -> Iterable[Issue]:
    # An entity (a service, a volume, ...) with a schema error was dropped to
    # let the rest validate; checks that touch it would only echo that error.
    entities = {d[:2] for d in dropped}
    names = {f"'{d[1]}'" for d in dropped if len(d) >= 2}
    for issue in checks.check_environment(env, usable):
        if issue.path[:2] in entities or any(n in issue.message for n in names):
            continue
        src = source_path(origin, issue.path)
        yield Issue(src, issue.message, smap.locate(src))


def _prune_invalid(merged: dict, exc: ValidationError,
                   rounds: int = 8) -> tuple[ResolvedEnvironment | None, list[Path_]]:
    """Drop the settings that failed validation (and optional parents of missing
    ones) until the rest validates. Only mapping keys are dropped, so list
    positions, and with them error positions, stay true."""
    import copy

    data = copy.deepcopy(merged)
    dropped: list[Path_] = []
    for _ in range(rounds):
        for error in exc.errors(include_url=False):
            path, _key = _data_path(error["loc"], data)
            if error["type"] == "missing":
                path = path[:-1]
            while path and not isinstance(path[-1], str):
                path = path[:-1]
            if error["loc"][:1] == ("project",):
                # No cross-field check reads the project: stand in a valid one.
                data["project"] = {"name": "project"}
                continue
            if len(path) < 2 and path[:1] != ("migrations",):
                return None, dropped  # a required top-level section is broken
            parent = _get(data, path[:-1])
            if isinstance(parent, dict) and path[-1] in parent:
                del parent[path[-1]]
                dropped.append(path)
        try:
            return ResolvedEnvironment.model_validate(data), dropped
        except ValidationError as again:
            exc = again
    return None, dropped


def _get(data: Any, path: Path_) -> Any:
    for part in path:
        try:
            data = data[part]
        except (KeyError, IndexError, TypeError):
            return None
    return data


def _config_error(path: Path, issues: list[Issue]) -> ConfigError:
    count = len(issues)
    head = f"{path.name} is invalid" + (f" ({count} problems)" if count > 1 else "")
    body = "\n".join(f"  {issue}" for issue in issues)
    return ConfigError(f"{head}:\n{body}" if issues else head, issues=issues)


def _dedupe(issues: Iterable[Issue]) -> list[Issue]:
    seen: set[tuple] = set()
    out: list[Issue] = []
    for issue in issues:
        key = (issue.position, issue.path, issue.message)
        if key not in seen:
            seen.add(key)
            out.append(issue)
    return sorted(out, key=lambda i: (i.position.line if i.position else 0,
                                      i.position.column if i.position else 0))


def _strip_extensions(value: Any) -> Any:
    """Drop `x-` keys at every level: they hold anchors and notes, not settings."""
    if isinstance(value, dict):
        return {k: _strip_extensions(v) for k, v in value.items() if not k.startswith("x-")}
    if isinstance(value, list):
        return [_strip_extensions(v) for v in value]
    return value


def _reference_issues(value: Any, path: Path_, smap: SourceMap) -> Iterable[Issue]:
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _reference_issues(item, path + (key,), smap)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _reference_issues(item, path + (index,), smap)
    elif isinstance(value, str) and "$" in value:
        try:
            list(find_references(value))
        except ValueError as exc:
            yield Issue(path, str(exc), smap.locate(path))


def _service_source_issues(raw: dict, smap: SourceMap) -> Iterable[Issue]:
    services = raw.get("services")
    if not isinstance(services, dict):
        return
    for name, service in services.items():
        if not isinstance(service, dict):
            continue
        given = [k for k in ("build", "image", "from") if service.get(k) is not None]
        if len(given) != 1:
            path = ("services", name)
            yield Issue(path, "a service needs exactly one of build, image or from"
                        + (f" (got {', '.join(given)})" if given else ""), smap.locate(path))


def _unknown_service_overrides(raw: dict, smap: SourceMap) -> Iterable[Issue]:
    services = raw.get("services") if isinstance(raw.get("services"), dict) else {}
    environments = raw.get("environments") if isinstance(raw.get("environments"), dict) else {}
    for env_name, env in environments.items():
        overrides = env.get("services") if isinstance(env, dict) else None
        if not isinstance(overrides, dict):
            continue
        for name in overrides:
            if name not in services:
                path = ("environments", env_name, "services", name)
                known = ", ".join(services) or "none"
                yield Issue(path, f"service '{name}' is not defined at the top level, so there "
                                  f"is nothing to override (services: {known})",
                            smap.locate(path, key=True))


# --- pydantic errors, in users' words ----------------------------------------


def _translate(exc: ValidationError, data: Any, smap: SourceMap, model: type[BaseModel],
               origin: dict[Path_, Path_] | None = None) -> list[Issue]:
    grouped: dict[tuple[Path_, bool], list[dict]] = {}
    for error in exc.errors(include_url=False):
        grouped.setdefault(_data_path(error["loc"], data), []).append(error)
    issues = []
    for (path, key_error), errors in grouped.items():
        message = _describe(errors, path, data, model)
        src = source_path(origin, path) if origin is not None else path
        if origin is not None and len(path) == 1 and path not in origin \
                and path[0] not in ENVIRONMENT_OWN_KEYS:
            src = path  # a top-level section missing from the file, not from the environment
        at_key = key_error or errors[0]["type"] in ("extra_forbidden", "missing")
        position = smap.locate(src if errors[0]["type"] != "missing" else src[:-1], key=at_key)
        issues.append(Issue(src, message, position))
    return issues


def _data_path(loc: tuple, data: Any) -> tuple[Path_, bool]:
    """Map a pydantic location onto the data, dropping union tags and type names."""
    path: list[str | int] = []
    current = data
    for part in loc:
        if part == "[key]" and not (isinstance(current, dict) and part in current):
            return tuple(path), True  # (a key literally named '[key]' is a setting)
        if isinstance(current, dict) and part == current.get("kind"):
            continue  # the tag of a discriminated union (a provider kind)
        if isinstance(current, dict) and part in current:
            path.append(part)
            current = current[part]
        elif isinstance(current, list) and isinstance(part, int) and part < len(current):
            path.append(part)
            current = current[part]
        elif isinstance(current, dict) and isinstance(part, str) and _is_field_name(part):
            # A missing or unknown key: the last element names it.
            path.append(part)
            current = None
        else:
            continue  # a union member tag such as 'tailscale' or 'list[str]'
    return tuple(path), False


def _is_field_name(part: str) -> bool:
    return not any(ch in part for ch in "[]()") and not part.startswith("function-")


_FRIENDLY_PATTERNS = {
    DNS_LABEL_PATTERN: "lowercase letters, digits and '-' (at most 63), not starting or ending with '-'",
    r"^[a-z][a-z0-9_-]{0,62}$": "a role name: a lowercase letter, then letters, digits, '_' or '-'",
    r"^[A-Za-z_][A-Za-z0-9_]*$": "a variable name: letters, digits and '_', not starting with a digit",
}


def _describe(errors: list[dict], path: Path_, data: Any, model: type[BaseModel]) -> str:
    first = errors[0]
    kind = first["type"]
    given = first.get("input")
    if kind == "missing":
        return f"missing required setting '{path[-1]}'" if path else "missing required setting"
    if kind == "extra_forbidden":
        # An empty key ('': ...) comes with an empty location.
        name = str(path[-1]) if path else ""
        allowed = _allowed_keys(model, path[:-1], data)
        close = difflib.get_close_matches(name, allowed, n=1)
        hint = f"; did you mean '{close[0]}'?" if close else (
            f"; expected one of: {', '.join(allowed)}" if allowed else "")
        return f"unknown setting '{name}'{hint}"
    if kind in ("union_tag_invalid",):
        ctx = first.get("ctx", {})
        return f"unknown kind {ctx.get('tag')!r}: expected one of {ctx.get('expected_tags')}"
    if kind == "union_tag_not_found":
        return "missing 'kind' (which provider to use)"
    if kind == "literal_error":
        return f"expected {first['ctx']['expected']}, got {given!r}"
    if kind == "string_pattern_mismatch":
        pattern = first["ctx"]["pattern"]
        want = _FRIENDLY_PATTERNS.get(pattern, f"text matching {pattern}")
        return f"expected {want}, got {given!r}"
    if kind in ("too_short", "too_long"):
        ctx = first.get("ctx", {})
        if kind == "too_short":
            return f"expected at least {ctx.get('min_length')} entry, got none"
        return f"expected at most {ctx.get('max_length')} entries"
    if kind in ("greater_than_equal", "greater_than", "less_than_equal", "less_than"):
        ctx = first.get("ctx", {})
        bound = next(iter(ctx.values()))
        word = {"greater_than_equal": ">=", "greater_than": ">",
                "less_than_equal": "<=", "less_than": "<"}[kind]
        return f"expected a number {word} {bound}, got {given!r}"
    if kind == "value_error":
        return first["msg"].removeprefix("Value error, ")
    types = sorted({_type_word(e["type"]) for e in errors} - {None})
    if types:
        return f"expected {' or '.join(types)}, got {_kind(given)} {given!r}"
    return first["msg"]


def _type_word(kind: str) -> str | None:
    return {
        "string_type": "a string",
        "int_type": "an integer", "int_parsing": "an integer", "int_from_float": "an integer",
        "float_type": "a number", "float_parsing": "a number",
        "bool_type": "true or false", "bool_parsing": "true or false",
        "dict_type": "a mapping (key: value)", "model_type": "a mapping (key: value)",
        "model_attributes_type": "a mapping (key: value)",
        "list_type": "a list",
    }.get(kind)


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    return {dict: "mapping", list: "list", str: "string", bool: "boolean",
            int: "integer", float: "number"}.get(type(value), type(value).__name__)


def _allowed_keys(model: type[BaseModel], path: Path_, data: Any) -> list[str]:
    """The keys a mapping at ``path`` accepts, for 'did you mean' hints."""
    current: Any = model
    node = data
    for part in path:
        node = node.get(part) if isinstance(node, dict) else (
            node[part] if isinstance(node, list) and isinstance(part, int) and part < len(node) else None)
        current = _descend(current, part, node)
        if current is None:
            return []
    current = _pick_model(current, node)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return [info.alias or name for name, info in current.model_fields.items()]
    return []


def _descend(annotation: Any, part: str | int, node: Any) -> Any:
    annotation = _pick_model(annotation, node)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        for name, info in annotation.model_fields.items():
            if part in (name, info.alias):
                return info.annotation
        return None
    origin = get_origin(annotation)
    args = get_args(annotation)
    if origin in (list, dict) and args:
        return args[-1]
    return None


def _pick_model(annotation: Any, node: Any) -> Any:
    """Unwrap Optional/Annotated/Union down to the model that fits ``node``."""
    for _ in range(6):
        origin = get_origin(annotation)
        args = get_args(annotation)
        if origin is None or not args:
            return annotation
        if origin in (list, dict):
            return annotation
        candidates = [a for a in args if a is not type(None)]
        models = [a for a in candidates if isinstance(a, type) and issubclass(a, BaseModel)]
        if models and isinstance(node, dict) and "kind" in models[0].model_fields:
            kind = node.get("kind")
            for candidate in models:
                if kind in get_args(candidate.model_fields["kind"].annotation):
                    return candidate
            return models[0]
        annotation = models[0] if models else candidates[0]
    return annotation


def describe_issues(issues: list[Issue]) -> str:
    return "\n".join(str(i) for i in issues)


__all__ = ["LoadedConfig", "find_config", "load_config", "load_config_text", "dotted",
           "describe_issues"]
