"""Headscale's configuration as the local cloud renders it
(stagecraft/providers/cloud/local/headscale.py). That Headscale itself accepts it is
proven by tests/integration/test_mesh_binaries.py, which serves with it."""

from __future__ import annotations

import pytest
import yaml

from stagecraft.providers.cloud.local import headscale
from stagecraft.providers.cloud.local.headscale import HeadscaleSettings, server_url


def test_the_server_url_is_an_address_and_https_by_default() -> None:
    assert server_url("10.200.3.129") == "https://10.200.3.129:8080"
    assert server_url("10.200.3.129", tls=False) == "http://10.200.3.129:8080"
    assert server_url("fd00::5") == "https://[fd00::5]:8080"


def test_the_rendered_config_keeps_everything_inside_the_fleet() -> None:
    text = headscale.render_config(HeadscaleSettings(
        server_url="https://10.200.3.129:8080", derp_ipv4="10.200.3.129"))
    assert text.startswith("# Headscale configuration")
    config = yaml.safe_load(text)
    assert config["server_url"] == "https://10.200.3.129:8080"
    assert config["listen_addr"] == "0.0.0.0:8080"
    assert config["tls_cert_path"] == headscale.TLS_CERT_PATH
    assert config["tls_key_path"] == headscale.TLS_KEY_PATH
    assert config["prefixes"] == {"v4": "100.64.0.0/10", "v6": "fd7a:115c:a1e0::/48",
                                  "allocation": "sequential"}
    server = config["derp"]["server"]
    assert server["enabled"] is True and server["stun_listen_addr"] == "0.0.0.0:3478"
    assert server["region_id"] == 999 and server["ipv4"] == "10.200.3.129"
    # Only the embedded relay; nothing fetched, checked or uploaded outside.
    assert config["derp"]["urls"] == [] and config["derp"]["auto_update_enabled"] is False
    assert config["disable_check_updates"] is True
    assert config["logtail"] == {"enabled": False}
    assert config["database"]["type"] == "sqlite"
    assert config["database"]["sqlite"]["path"] == "/var/lib/headscale/db.sqlite"
    assert config["noise"]["private_key_path"].startswith("/var/lib/headscale/")
    assert config["dns"]["magic_dns"] is True and config["dns"]["base_domain"] == "mesh.internal"
    # Headscale refuses override_local_dns without global nameservers; we use neither.
    assert config["dns"]["override_local_dns"] is False
    assert config["dns"]["nameservers"]["global"] == []
    # Keys v0.29 removed must not come back: it refuses to start with them.
    assert "randomize_client_port" not in config and "dns_config" not in config


def test_plain_http_has_no_tls_files() -> None:
    config = headscale.config_data(HeadscaleSettings(server_url="http://10.0.0.9:8080",
                                                     tls=False))
    assert "tls_cert_path" not in config and "ipv4" not in config["derp"]["server"]


@pytest.mark.parametrize("settings, error", [
    (dict(server_url="http://10.0.0.9:8080"), "must be a https:// URL"),
    (dict(server_url="https://10.0.0.9:8080", tls=False), "must be a http:// URL"),
    (dict(server_url="https://10.0.0.9:8080/api"), "no path"),
    (dict(server_url="https://10.0.0.9:8080", base_domain="mesh.internal."), "trailing dot"),
    (dict(server_url="https://hs.mesh.internal:8080"), "must not contain the server"),
    (dict(server_url="https://10.0.0.9:8080", derp_ipv4="not-an-ip"), "IPv4"),
])
def test_settings_headscale_would_refuse_are_refused_here(settings: dict, error: str) -> None:
    with pytest.raises(ValueError, match=error):
        HeadscaleSettings(**settings)
