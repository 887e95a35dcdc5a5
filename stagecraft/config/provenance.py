"""Where each resolved setting of an environment came from (`config show --sources`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from stagecraft.config.loader import LoadedConfig
from stagecraft.config.positions import Path_, dotted


@dataclass(frozen=True)
class SettingSource:
    path: str
    value: Any
    source: str  # "file:line:column", "file:line:column (environments.E)" or "default"


def resolved_data(loaded: LoadedConfig, env_name: str) -> dict:
    """The resolved environment as plain data, field names as users write them."""
    env = loaded.environments[env_name]
    return env.model_dump(mode="json", by_alias=True, exclude_none=True)


def setting_sources(loaded: LoadedConfig, env_name: str) -> list[SettingSource]:
    """Every leaf setting of the resolved environment and where it was set."""
    rows: list[SettingSource] = []
    origin = loaded.origins[env_name]
    for path, value in _leaves(resolved_data(loaded, env_name), ()):
        if path == ("name",):
            continue
        src = origin.get(path)
        if src is None:
            rows.append(SettingSource(dotted(path), value, "default"))
            continue
        position = loaded.source.values.get(src)
        where = str(position) if position else loaded.path.name
        if src[:1] == ("environments",):
            where += f" ({dotted(src[:2])})"
        rows.append(SettingSource(dotted(path), value, where))
    return rows


def _leaves(value: Any, path: Path_):
    if isinstance(value, dict) and value:
        for key, item in value.items():
            yield from _leaves(item, path + (key,))
    elif isinstance(value, list) and value and any(isinstance(v, (dict, list)) for v in value):
        for index, item in enumerate(value):
            yield from _leaves(item, path + (index,))
    else:
        yield path, value
