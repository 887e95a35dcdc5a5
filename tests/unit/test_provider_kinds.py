"""Cloud and network kinds without a provider are refused by the config loader, so by
`stagecraft validate` and every command that loads stagecraft.yml (spec/core/config.md).

Which kinds work is read from the registered providers (stagecraft.providers.kinds):
a provider registered under the entry-point group makes its kind valid.
"""

from __future__ import annotations

import json
import os
from importlib.metadata import EntryPoint
from pathlib import Path

import pytest

from stagecraft.cli.main import main
from stagecraft.config import load_config_text
from stagecraft.errors import ConfigError, ExitCode
from stagecraft.providers import kinds

# Line numbers: 4 cloud / 5 network / 9 local / 10 prod / 12 cloud of prod.
CONFIG = """\
version: 1
project: {{ name: shop }}
providers:
  cloud: {cloud}
  network: {network}
services:
  web: {{ image: "nginx:1", on: [app] }}
environments:
  local: {{ hosts: [{{ name: l1, roles: [app] }}] }}
  prod:
    providers:
      cloud: {prod_cloud}
    hosts: [{{ name: p1, roles: [app] }}]
"""
LOCAL = "{ kind: local }"
NONE = "{ kind: none }"
DIGITALOCEAN = '{ kind: digitalocean, token: "${secret:DO_TOKEN}", region: fra1 }'
TAILSCALE = '{ kind: tailscale, auth_key: "${secret:TS_KEY}" }'


def config(*, cloud: str = LOCAL, network: str = NONE, prod_cloud: str = LOCAL) -> str:
    return CONFIG.format(cloud=cloud, network=network, prod_cloud=prod_cloud)


@pytest.fixture(autouse=True)
def no_stagecraft_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("STAGECRAFT_"):
            monkeypatch.delenv(name)


@pytest.fixture
def digitalocean_unbuilt(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every cloud kind of the design has a provider now; these tests take one away to
    see how a kind without a provider is refused."""
    monkeypatch.setitem(kinds.FAMILIES, "cloud", (kinds.CLOUD_GROUP, ("local", "ssh")))


def validate(capsys: pytest.CaptureFixture, path: Path, *args: str) -> tuple[int, str, str]:
    """`stagecraft validate -c path` through the real entry point: (exit, stdout, stderr)."""
    with pytest.raises(SystemExit) as exited:
        main(["validate", "-c", str(path), *args])
    out, err = capsys.readouterr()
    return exited.value.code, out, err


def problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_config_text(text)
    return [str(issue) for issue in caught.value.issues]


@pytest.mark.usefixtures("digitalocean_unbuilt")
def test_validate_refuses_a_cloud_kind_without_a_provider(tmp_path, capsys) -> None:
    path = tmp_path / "stagecraft.yml"
    path.write_text(config(prod_cloud=DIGITALOCEAN))
    code, out, err = validate(capsys, path)
    assert (code, out) == (ExitCode.CONFIG, "")
    assert err == (
        "error: stagecraft.yml is invalid:\n"
        f"  {path}:12:22: environments.prod.providers.cloud.kind: cloud kind 'digitalocean' "
        "has no provider in this version, so it cannot be used yet; cloud kinds that work "
        "now: local, ssh\n"
        "hint: fix the file and run `stagecraft validate`\n")


@pytest.mark.usefixtures("digitalocean_unbuilt")
def test_the_json_error_names_the_place_of_each_kind(tmp_path, capsys) -> None:
    path = tmp_path / "stagecraft.yml"
    path.write_text(config(cloud="{ kind: ssh }", prod_cloud=DIGITALOCEAN).replace(
        "name: l1, roles: [app]", "name: l1, roles: [app], address: 192.0.2.1"))
    code, out, _err = validate(capsys, path, "--output", "json")
    assert code == ExitCode.CONFIG == 3
    issues = json.loads(out)["issues"]
    # local inherits ssh from the top (line 4), which works; prod says digitalocean (line 12).
    assert [(i["line"], i["column"], i["path"]) for i in issues] == [
        (12, 22, "environments.prod.providers.cloud.kind")]
    assert all(i["message"].endswith("cloud kinds that work now: local, ssh") for i in issues)


def test_validate_accepts_the_local_cloud(tmp_path, capsys) -> None:
    path = tmp_path / "stagecraft.yml"
    path.write_text(config())
    assert validate(capsys, path) == (
        0, "stagecraft.yml is valid: project shop, 1 service(s), environment(s): local, prod\n",
        "")


@pytest.mark.usefixtures("digitalocean_unbuilt")
def test_an_inherited_kind_is_reported_once_where_it_is_written() -> None:
    # Both environments inherit digitalocean from the top level (line 4).
    text = config(cloud=DIGITALOCEAN).replace("    providers:\n      cloud: { kind: local }\n", "")
    assert problems(text) == [
        "stagecraft.yml:4:18: providers.cloud.kind: cloud kind 'digitalocean' has no provider "
        "in this version, so it cannot be used yet; cloud kinds that work now: local, ssh"]


def test_a_kind_no_environment_uses_is_not_an_error() -> None:
    # The top level names digitalocean, every environment overrides it with local.
    text = config(cloud=DIGITALOCEAN).replace(
        "  local: {", "  local: { providers: { cloud: { kind: local } }, ")
    assert list(load_config_text(text).environments) == ["local", "prod"]


@pytest.fixture
def mesh_unbuilt(monkeypatch: pytest.MonkeyPatch) -> None:
    """An install whose network kinds are `none` only (as before the tailnet shipped)."""
    monkeypatch.setitem(kinds.FAMILIES, "network", (kinds.NETWORK_GROUP, ("none",)))


@pytest.mark.usefixtures("mesh_unbuilt")
def test_network_kinds_without_a_provider_are_refused_too() -> None:
    assert problems(config(network=TAILSCALE)) == [
        "stagecraft.yml:5:20: providers.network.kind: network kind 'tailscale' has no provider "
        "in this version, so it cannot be used yet; network kinds that work now: none"]


@pytest.mark.usefixtures("digitalocean_unbuilt", "mesh_unbuilt")
def test_a_registered_provider_makes_its_kind_valid(monkeypatch: pytest.MonkeyPatch) -> None:
    registered = {kinds.CLOUD_GROUP: [EntryPoint("digitalocean", "some_plugin:DoCloud",
                                                 kinds.CLOUD_GROUP)]}
    monkeypatch.setattr(kinds, "entry_points", lambda group: registered.get(group, []))
    assert kinds.usable_kinds("cloud") == ["digitalocean", "local", "ssh"]
    assert load_config_text(config(prod_cloud=DIGITALOCEAN)).environment(
        "prod").providers.cloud.kind == "digitalocean"
    # The message lists what is registered.
    assert problems(config(network=TAILSCALE))[0].endswith("network kinds that work now: none")
    registered[kinds.NETWORK_GROUP] = [EntryPoint("headscale", "x:Y", kinds.NETWORK_GROUP)]
    assert problems(config(network=TAILSCALE))[0].endswith(
        "network kinds that work now: headscale, none")


def test_usable_kinds_without_plugins() -> None:
    assert kinds.all_usable_kinds() == {"cloud": ["digitalocean", "local", "ssh"],
                                        "network": ["headscale", "none", "tailscale"]}


def test_the_mesh_server_clouds_are_those_whose_capabilities_say_so() -> None:
    from importlib import import_module

    from stagecraft.providers.cloud.digitalocean import DigitalOceanCloud

    says = {}
    for kind, target in kinds.CLOUD_BUILTIN.items():
        module, _, name = target.partition(":")
        cls = getattr(import_module(module), name)
        if cls is DigitalOceanCloud:  # its capabilities are made per instance
            says[kind] = DigitalOceanCloud(token=lambda: "t", region="fra1").capabilities.mesh_server
        else:
            says[kind] = cls.capabilities.mesh_server
    assert tuple(kind for kind, yes in says.items() if yes) == kinds.MESH_SERVER_CLOUDS == ("local",)
