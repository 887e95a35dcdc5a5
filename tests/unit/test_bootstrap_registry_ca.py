"""bootstrap passes the CA of project.registry (`ca_file`) to the hosts on a cloud
without a registry of its own; a bad file stops bootstrap before any host is touched."""

from __future__ import annotations

from pathlib import Path

import pytest

from stagecraft.cli.main import main
from stagecraft.config.loader import load_config_text
from stagecraft.errors import ConfigError, ExitCode
from stagecraft.hosts.fleet import Fleet
from stagecraft.infra.bootstrap import bootstrap_request, registry_ca_vars
from stagecraft.infra.tls import ensure_ca
from stagecraft.providers.cloud import HostRecord, StateFiles
from stagecraft.providers.cloud.base import write_hosts_file

CONFIG = """
version: 1
project:
  name: acme
  registry: {{ server: "{server}", username: deploy{ca_file} }}
services:
  web: {{ image: nginx, on: [app] }}
environments:
  prod:
    providers:
      cloud: {cloud}
    hosts:
      - {{ name: vps1, roles: [edge, app]{address} }}
"""


def project(tmp_path: Path, *, server: str = "10.0.0.5:5000", ca_file: str | None = "ca.pem",
            cloud: str = "ssh") -> Fleet:
    """A project on cloud ``cloud``; on cloud `ssh` with vps1 recorded, as after `infra up`."""
    key = tmp_path / "id_test"
    key.write_text("private\n")
    key.with_suffix(".pub").write_text("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI test\n")
    ssh = cloud == "ssh"
    text = CONFIG.format(
        server=server, ca_file=f", ca_file: {ca_file}" if ca_file is not None else "",
        cloud=f"{{ kind: ssh, ssh_key: {key} }}" if ssh else f"{{ kind: {cloud} }}",
        address=", address: 192.0.2.10" if ssh else "")
    (tmp_path / "stagecraft.yml").write_text(text)
    env = load_config_text(text).environments["prod"]
    fleet = Fleet.load(env, tmp_path, require=False)
    if not ssh:
        return fleet
    record = HostRecord(name="vps1", roles=("edge", "app"), state="running",
                        ssh_host="192.0.2.10", ssh_port=22, ssh_user="root",
                        private_ip="192.0.2.10", provider_id=None, provider="ssh")
    write_hosts_file(StateFiles(fleet.state_dir), provider="ssh", spec=fleet.spec,
                     records=[record], ssh=fleet.access)
    return Fleet.load(env, tmp_path)


def test_the_ca_file_goes_to_the_hosts_under_the_registry_host_and_port(tmp_path):
    pem = ensure_ca(tmp_path / "ca").cert_pem
    (tmp_path / "ca.pem").write_text(pem)
    fleet = project(tmp_path, server="10.0.0.5:5000/team")
    extravars = bootstrap_request(fleet).extravars
    # Docker's certs.d is per host[:port]: the path of the server is left out.
    assert extravars["bootstrap_registry_server"] == "10.0.0.5:5000"
    assert extravars["bootstrap_registry_ca_pem"] == pem


def test_an_absolute_ca_file_is_read_as_it_is(tmp_path):
    pem = ensure_ca(tmp_path / "ca").cert_pem
    (tmp_path / "elsewhere.pem").write_text(pem)
    (tmp_path / "project").mkdir()
    fleet = project(tmp_path / "project", ca_file=str(tmp_path / "elsewhere.pem"))
    assert registry_ca_vars(fleet)["bootstrap_registry_ca_pem"] == pem


def test_no_ca_file_passes_nothing(tmp_path):
    fleet = project(tmp_path, ca_file=None)
    extravars = bootstrap_request(fleet).extravars
    assert "bootstrap_registry_server" not in extravars
    assert "bootstrap_registry_ca_pem" not in extravars


def test_a_cloud_with_its_own_registry_ignores_the_ca_file(tmp_path):
    # No file at all: the local cloud never reads it (its own registry's CA is used).
    fleet = project(tmp_path, cloud="local", ca_file="missing.pem")
    assert fleet.cloud.capabilities.registry
    assert registry_ca_vars(fleet) == {}


@pytest.mark.parametrize("content, reason", [
    (None, "cannot read"),
    ("not a certificate\n", "holds no PEM certificate"),
    ("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
     "holds no PEM certificate"),
])
def test_a_bad_ca_file_is_a_config_error_naming_it(tmp_path, content, reason):
    if content is not None:
        (tmp_path / "ca.pem").write_text(content)
    fleet = project(tmp_path)
    with pytest.raises(ConfigError) as raised:
        bootstrap_request(fleet)
    assert raised.value.message.startswith("project.registry.ca_file: ")
    assert str(tmp_path / "ca.pem") in raised.value.message and reason in raised.value.message
    assert "ca_file" in raised.value.hint


def test_bootstrap_stops_on_a_missing_ca_file_with_an_error_and_no_traceback(
        tmp_path, monkeypatch, capsys):
    project(tmp_path)
    monkeypatch.chdir(tmp_path)

    def no_run(*args, **kwargs):
        raise AssertionError("bootstrap ran although the CA file is missing")

    monkeypatch.setattr("stagecraft.infra.bootstrap.run_bootstrap", no_run)
    with pytest.raises(SystemExit) as exited:
        main(["bootstrap", "-e", "prod"])
    err = capsys.readouterr().err
    assert exited.value.code == ExitCode.CONFIG
    assert err.startswith(f"error: project.registry.ca_file: cannot read {tmp_path / 'ca.pem'}: "
                          "No such file or directory\nhint: set project.registry.ca_file")
    assert "Traceback" not in err
