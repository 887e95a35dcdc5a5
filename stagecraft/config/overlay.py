"""Environment overlays: the top level, with one environment's overrides applied.

Works on plain data so that every resolved value keeps track of where it was
written (the top level or the environment), for error positions and for
``config show --sources``.

Rules: mappings merge key by key, lists and scalars replace. A provider whose
``kind`` changes is replaced whole (a new kind shares no settings with the old).
"""

from __future__ import annotations

from typing import Any

from stagecraft.config.positions import Path_

# Keys of an environment that are not overrides of a top-level section.
ENVIRONMENT_OWN_KEYS = ("hosts", "domain", "tls")
OVERRIDABLE = ("providers", "services", "firewall", "rollout", "migrations")
TOP_LEVEL_SHARED = ("project", "volumes")


def resolve_raw(top: dict, env_name: str) -> tuple[dict, dict[Path_, Path_]]:
    """Merged raw data of one environment and, for each resolved path, the path
    in the file it came from."""
    env = top.get("environments", {}).get(env_name)
    if not isinstance(env, dict):  # reported by validation; resolve as if empty
        env = {}
    origin: dict[Path_, Path_] = {(): ("environments", env_name)}
    merged: dict[str, Any] = {"name": env_name}
    origin[("name",)] = ("environments", env_name)
    for key in TOP_LEVEL_SHARED:
        if key in top:
            merged[key] = _copy(top[key], (key,), (key,), origin)
    for key in ENVIRONMENT_OWN_KEYS:
        if key in env:
            merged[key] = _copy(env[key], (key,), ("environments", env_name, key), origin)
    for key in OVERRIDABLE:
        base = top.get(key)
        over = env.get(key)
        base_path: Path_ = (key,)
        over_path: Path_ = ("environments", env_name, key)
        if over is None:
            if base is not None:
                merged[key] = _copy(base, (key,), base_path, origin)
            continue
        if key == "providers" and isinstance(over, dict):
            merged[key] = _merge_providers(base, over, base_path, over_path, origin)
        elif key == "services" and isinstance(over, dict) and isinstance(base, dict):
            # Only services defined at the top level can be overridden.
            merged[key] = _merge(base, {k: v for k, v in over.items() if k in base},
                                 (key,), base_path, over_path, origin)
        else:
            merged[key] = _merge(base, over, (key,), base_path, over_path, origin)
    return merged, origin


def _merge_providers(base: Any, over: dict, base_path: Path_, over_path: Path_,
                     origin: dict[Path_, Path_]) -> dict:
    out: dict[str, Any] = {}
    origin[("providers",)] = over_path
    base = base if isinstance(base, dict) else {}
    for name in dict.fromkeys([*base.keys(), *over.keys()]):
        path = ("providers", name)
        b, o = base.get(name), over.get(name)
        if o is None:
            out[name] = _copy(b, path, base_path + (name,), origin)
        elif (isinstance(b, dict) and isinstance(o, dict)
              and o.get("kind", b.get("kind")) == b.get("kind")):
            out[name] = _merge(b, o, path, base_path + (name,), over_path + (name,), origin)
        else:
            out[name] = _copy(o, path, over_path + (name,), origin)
    return out


def _merge(base: Any, over: Any, out_path: Path_, base_path: Path_, over_path: Path_,
           origin: dict[Path_, Path_]) -> Any:
    if isinstance(base, dict) and isinstance(over, dict):
        origin[out_path] = over_path
        out: dict[str, Any] = {}
        for key in dict.fromkeys([*base.keys(), *over.keys()]):
            if key in over:
                if key in base:
                    out[key] = _merge(base[key], over[key], out_path + (key,),
                                      base_path + (key,), over_path + (key,), origin)
                else:
                    out[key] = _copy(over[key], out_path + (key,), over_path + (key,), origin)
            else:
                out[key] = _copy(base[key], out_path + (key,), base_path + (key,), origin)
        return out
    if over is None:
        return _copy(base, out_path, base_path, origin)
    return _copy(over, out_path, over_path, origin)


def _copy(value: Any, out_path: Path_, src_path: Path_, origin: dict[Path_, Path_]) -> Any:
    origin[out_path] = src_path
    if isinstance(value, dict):
        return {k: _copy(v, out_path + (k,), src_path + (k,), origin) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v, out_path + (i,), src_path + (i,), origin) for i, v in enumerate(value)]
    return value


def source_path(origin: dict[Path_, Path_], path: Path_) -> Path_:
    """The file path a resolved path came from (nearest recorded ancestor)."""
    probe = tuple(path)
    tail: tuple = ()
    while probe not in origin and probe:
        tail = (probe[-1],) + tail
        probe = probe[:-1]
    return origin.get(probe, ()) + tail
