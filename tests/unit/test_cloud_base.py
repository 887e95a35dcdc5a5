"""Pure parts of the cloud providers: specs and records, hosts.json, the registry,
the local cloud's address choices, its image recipe hashes, the registry's files,
and the docker helper's errors.
"""

from __future__ import annotations

import io
import json
import shutil
import stat
import sys
import tarfile
import types
from importlib.metadata import EntryPoint
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

import pytest

import stagecraft.providers.cloud as cloud
from stagecraft.errors import (
    CommandFailed,
    ConfigError,
    EnvironmentMissing,
    ProviderError,
    StateError,
)
from stagecraft.providers.cloud import (
    CloudProvider,
    DownResult,
    FleetSpec,
    HostRecord,
    HostSpec,
    RegistryAccess,
    CloudCapabilities,
    SshAccess,
    StateFiles,
    get_cloud_provider,
    read_hosts_file,
)
from stagecraft.providers.cloud.base import HOSTS_FILE_VERSION, write_hosts_file
from stagecraft.providers.cloud.local import LocalCloud, addressing, dockercli
from stagecraft.providers.cloud.local import host_image as host_image
from stagecraft.providers.cloud.local import service_images as images, registry
from stagecraft.providers.cloud.local.provider import _published_ports
from stagecraft.infra.tls import ensure_ca


def record(name: str = "web-1", **overrides) -> HostRecord:
    values = dict(
        name=name, roles=("edge", "app"), state="running", ssh_host="127.0.0.1",
        ssh_port=22001, ssh_user="root", private_ip="10.200.0.10", provider_id="abc123",
    )
    values.update(overrides)
    return HostRecord(**values)


# --------------------------------------------------------------------- specs, records


def test_fleet_spec_rejects_a_host_name_used_twice():
    with pytest.raises(ConfigError, match="'web-1' appears twice"):
        FleetSpec("shop", "prod", (HostSpec("web-1"), HostSpec("web-1")))


@pytest.mark.parametrize("bad", ["Web-1", "web_1", "-web", "web-", "", "a" * 64])
def test_fleet_spec_rejects_names_that_are_not_hostnames(bad):
    with pytest.raises(ConfigError, match="not a valid hostname"):
        FleetSpec("shop", "prod", (HostSpec(bad),))


def test_fleet_spec_rejects_a_bad_project_name():
    with pytest.raises(ConfigError, match="project name 'Shop'"):
        FleetSpec("Shop", "prod", ())


def test_fleet_spec_finds_hosts_by_name():
    spec = FleetSpec("shop", "prod", (HostSpec("a", ("edge",)), HostSpec("b")))
    assert spec.host("a") == HostSpec("a", ("edge",))
    assert spec.host("c") is None


def test_host_record_round_trips_through_json():
    original = record(size="s-1vcpu-2gb", change="created", in_spec=False, http_port=23001,
                      https_port=24001)
    data = json.loads(json.dumps(original.to_dict()))
    assert data["roles"] == ["edge", "app"]
    assert HostRecord.from_dict(data) == original


def test_host_record_ignores_keys_a_newer_writer_added():
    data = record().to_dict() | {"region": "fra1"}
    assert HostRecord.from_dict(data) == record()


def test_host_record_without_a_required_key_is_a_state_error():
    data = record().to_dict()
    del data["ssh_user"]
    with pytest.raises(StateError, match="incomplete or malformed"):
        HostRecord.from_dict(data)


@pytest.mark.parametrize("port", ["ssh_port", "http_port", "https_port"])
def test_host_record_with_a_text_port_is_a_state_error(port):
    with pytest.raises(StateError, match="bad name or port"):
        HostRecord.from_dict(record().to_dict() | {port: "22"})


def test_host_record_written_before_web_ports_existed_still_reads():
    data = record().to_dict()
    del data["http_port"], data["https_port"]
    loaded = HostRecord.from_dict(data)
    assert loaded.http_port is None and loaded.https_port is None


def test_down_result_is_unchanged_when_nothing_was_removed():
    assert not DownResult(hosts=(record(change="absent", state="missing"),)).changed
    assert DownResult(hosts=(record(change="removed"),)).changed
    assert DownResult(hosts=(), removed=("network x",)).changed


def test_ssh_access_keeps_host_key_checking_on():
    access = SshAccess("root", Path("/s/id_ed25519"), Path("/s/known_hosts"))
    options = access.ssh_options()
    assert "StrictHostKeyChecking=yes" in options
    assert "UserKnownHostsFile=/s/known_hosts" in options
    assert "IdentityFile=/s/id_ed25519" in options


# ------------------------------------------------------------------------ hosts.json


def test_hosts_file_round_trips_and_leaves_out_the_per_call_change(tmp_path):
    files = StateFiles(tmp_path / "env")
    spec = FleetSpec("shop", "prod", (HostSpec("web-1", ("edge", "app")),))
    access = SshAccess("root", files.private_key, files.known_hosts)
    write_hosts_file(files, provider="local", spec=spec, records=[record(change="created")],
                     ssh=access, extra={"network": {"name": "n"}})
    raw = json.loads(files.hosts.read_text())
    assert raw["version"] == HOSTS_FILE_VERSION
    assert raw["ssh"] == {"user": "root", "private_key": "id_ed25519", "known_hosts": "known_hosts"}
    assert "change" not in raw["hosts"][0]
    assert raw["network"] == {"name": "n"}
    document = read_hosts_file(files)
    assert document["hosts"] == [record()]
    # No temp files are left next to it.
    assert sorted(p.name for p in files.state_dir.iterdir()) == ["hosts.json"]


def test_missing_hosts_file_reads_as_none(tmp_path):
    assert read_hosts_file(StateFiles(tmp_path)) is None


def test_corrupt_hosts_file_is_a_state_error_with_position(tmp_path):
    files = StateFiles(tmp_path)
    files.hosts.write_text('{"hosts": [')
    with pytest.raises(StateError, match="not valid JSON") as info:
        read_hosts_file(files)
    assert "infra up" in info.value.hint


def test_hosts_file_from_a_newer_stagecraft_is_refused(tmp_path):
    files = StateFiles(tmp_path)
    files.hosts.write_text(json.dumps({"version": HOSTS_FILE_VERSION + 1, "hosts": []}))
    with pytest.raises(StateError, match="version"):
        read_hosts_file(files)


# -------------------------------------------------------------------------- registry


def test_local_is_built_in_even_without_entry_points(monkeypatch):
    monkeypatch.setattr(cloud, "entry_points", lambda group: [])
    provider = get_cloud_provider("local")
    assert isinstance(provider, LocalCloud)
    assert isinstance(provider, CloudProvider)
    assert provider.kind == "local"


class FakeCloud:
    kind = "fake"
    capabilities = CloudCapabilities()

    def __init__(self, region: str = "fra1") -> None:
        self.region = region

    def up(self, spec, state_dir, *, log=None, confirm=None, prune=False):
        return []

    def plan(self, spec, state_dir, *, prune=False, down=False, log=None):
        return CloudPlan(())

    def volume_device(self, spec, host, volume):
        return None

    def bootstrapped(self, spec, state_dir, names, deploy_user):
        pass

    def down(self, spec, state_dir, *, log=None):
        return DownResult(hosts=())

    def status(self, spec, state_dir):
        return []

    def ssh_access(self, spec, state_dir):
        return SshAccess("root", Path("k"), Path("kh"))

    def bootstrap_vars(self, spec, state_dir):
        return {}

    def controller_checks(self):
        return []

    def prepare_controller(self, log):
        return []

    def registry_access(self, spec, state_dir):
        raise ProviderError("the fake cloud runs no registry")

    def publish_traefik_image(self, spec, state_dir, *, log=None):
        raise ProviderError("the fake cloud publishes no Traefik image")

    def ensure_base_image(self, name, log=None):
        raise ProviderError("the fake cloud builds no base image")


@pytest.fixture
def plugin(monkeypatch):
    """A module ``fake_cloud_plugin`` registered under the cloud entry-point group."""
    module = types.ModuleType("fake_cloud_plugin")
    module.FakeCloud = FakeCloud
    module.NotACloud = type("NotACloud", (), {})
    monkeypatch.setitem(sys.modules, "fake_cloud_plugin", module)
    registered = [
        EntryPoint("fake", "fake_cloud_plugin:FakeCloud", cloud.ENTRY_POINT_GROUP),
        EntryPoint("broken", "fake_cloud_plugin:Missing", cloud.ENTRY_POINT_GROUP),
        EntryPoint("odd", "fake_cloud_plugin:NotACloud", cloud.ENTRY_POINT_GROUP),
    ]
    monkeypatch.setattr(cloud, "entry_points", lambda group: registered)


def test_entry_point_provider_is_built_with_the_config_options(plugin):
    provider = get_cloud_provider("fake", {"region": "ams3"})
    assert isinstance(provider, FakeCloud)
    assert provider.region == "ams3"


def test_unknown_kind_names_the_available_ones(plugin):
    with pytest.raises(ProviderError, match="unknown cloud provider 'aws'") as info:
        get_cloud_provider("aws")
    assert "broken, digitalocean, fake, local, odd, ssh" in info.value.hint


def test_plugin_that_cannot_load_is_a_provider_error(plugin):
    with pytest.raises(ProviderError, match="cannot load cloud provider 'broken'"):
        get_cloud_provider("broken")


def test_plugin_given_unknown_options_is_a_provider_error(plugin):
    with pytest.raises(ProviderError, match="does not accept these settings"):
        get_cloud_provider("fake", {"token": "x"})


def test_plugin_that_is_not_a_cloud_provider_is_refused(plugin):
    with pytest.raises(ProviderError, match="does not implement the cloud provider interface"):
        get_cloud_provider("odd")


SPEC = FleetSpec("shop", "local", (HostSpec("web-1", ("edge",)),))


def test_local_cloud_passes_the_inner_dockerd_quirk_to_the_bootstrap_role(tmp_path):
    variables = LocalCloud().bootstrap_vars(SPEC, tmp_path)
    assert variables["bootstrap_docker_environment"] == {
        "DOCKER_ALLOW_IPV6_ON_IPV4_INTERFACE": "1"
    }
    # No registry made yet: nothing about it.
    assert "bootstrap_registry_server" not in variables
    assert "bootstrap_registry_ca_pem" not in variables


def test_local_cloud_tells_hosts_the_registry_and_its_ca_once_up_made_them(tmp_path):
    ca = ensure_ca(tmp_path)
    files = registry.RegistryFiles(tmp_path)
    files.directory.mkdir()
    files.info.write_text(json.dumps({"pull_server": "10.200.3.128:5000",
                                      "push_server": "127.0.0.1:23456"}))
    variables = LocalCloud().bootstrap_vars(SPEC, tmp_path)
    assert variables["bootstrap_registry_server"] == "10.200.3.128:5000"
    assert variables["bootstrap_registry_ca_pem"] == ca.cert_pem


def test_local_cloud_provides_a_registry_and_the_fake_cloud_does_not():
    assert LocalCloud.capabilities.registry and LocalCloud.capabilities.traefik_image
    assert not FakeCloud.capabilities.registry and not FakeCloud.capabilities.traefik_image


def test_registry_access_names_images_for_both_sides_and_hides_the_password():
    access = RegistryAccess("127.0.0.1:23456", "10.200.3.128:5000", "stagecraft", "s3cret",
                            "-----BEGIN CERTIFICATE-----")
    assert access.push_reference("shop/web", "r1") == "127.0.0.1:23456/shop/web:r1"
    assert access.pull_reference("shop/web", "r1") == "10.200.3.128:5000/shop/web:r1"
    assert access.pull_reference("shop/web", "r1", "sha256:ab") == (
        "10.200.3.128:5000/shop/web:r1@sha256:ab")
    assert "s3cret" not in repr(access) and "BEGIN" not in repr(access)


# ------------------------------------------------------------------------ addressing


def test_subnet_choice_is_deterministic_and_inside_the_pool():
    first = addressing.choose_subnet("shop/local", [])
    assert first == addressing.choose_subnet("shop/local", [])
    assert first.prefixlen == 24 and first.subnet_of(addressing.SUBNET_POOL)
    assert addressing.choose_subnet("shop/staging", []) != first


def test_subnet_choice_skips_overlapping_networks_but_not_the_default_route():
    first = addressing.choose_subnet("shop/local", [])
    taken = [IPv4Network("0.0.0.0/0"), first.supernet(new_prefix=20)]
    chosen = addressing.choose_subnet("shop/local", taken)
    assert not chosen.overlaps(first.supernet(new_prefix=20))


def test_subnet_choice_fails_with_a_hint_when_the_pool_is_full():
    pool = IPv4Network("10.1.0.0/23")
    with pytest.raises(ProviderError, match="no free /24") as info:
        addressing.choose_subnet("k", [IPv4Network("10.1.0.0/24"), IPv4Network("10.1.1.0/24")],
                                 pool=pool)
    assert "docker network prune" in info.value.hint


def test_host_ips_follow_the_spec_order_and_skip_taken_addresses():
    subnet = IPv4Network("10.200.5.0/24")
    assert addressing.host_ip(subnet, 0) == IPv4Address("10.200.5.10")
    assert addressing.host_ip(subnet, 3) == IPv4Address("10.200.5.13")
    assert addressing.host_ip(subnet, 0, [IPv4Address("10.200.5.10")]) == IPv4Address("10.200.5.11")


def test_host_ips_never_enter_dockers_dynamic_range():
    subnet = IPv4Network("10.200.5.0/24")
    dynamic = addressing.dynamic_range(subnet)
    assert dynamic == IPv4Network("10.200.5.128/25")
    lower = [a for a in subnet.hosts() if a not in dynamic and int(a) % 256 >= 10]
    assert addressing.host_ip(subnet, 500, lower[:-1]) == lower[-1]
    with pytest.raises(ProviderError, match="no free host address"):
        addressing.host_ip(subnet, 0, lower)


def test_port_choice_is_deterministic_and_skips_taken_ports():
    port = addressing.choose_port("shop/local/web-1", [])
    assert port in addressing.SSH_PORT_RANGE
    assert addressing.choose_port("shop/local/web-1", []) == port
    assert addressing.choose_port("shop/local/web-1", [port]) != port
    with pytest.raises(ProviderError, match="no free port"):
        addressing.choose_port("k", range(100, 102), ports=range(100, 102))


def test_routes_are_read_from_proc_net_route():
    text = (
        "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n"
        "eth0\t00000000\t0102000A\t0003\t0\t0\t0\t00000000\t0\t0\t0\n"
        "docker0\t000011AC\t00000000\t0001\t0\t0\t0\t0000FFFF\t0\t0\t0\n"
    )
    assert addressing.routes_from_proc(text) == [
        IPv4Network("0.0.0.0/0"), IPv4Network("172.17.0.0/16")
    ]


def test_names_carry_project_environment_and_host():
    assert addressing.network_name("shop", "local") == "stagecraft-shop-local"
    assert addressing.container_name("shop", "local", "web-1") == "stagecraft-shop-local-web-1"
    assert addressing.registry_container_name("shop", "local") == "stagecraft-shop-local-registry"
    # "_" is in no block-storage volume's name: the registry's volume cannot clash.
    assert addressing.registry_volume_name("shop", "local") == "stagecraft-shop-local_registry"
    assert "registry" in addressing.RESERVED_HOST_NAMES


def test_registry_sits_at_128_outside_the_hosts_half():
    subnet = IPv4Network("10.200.5.0/24")
    ip = addressing.registry_ip(subnet)
    assert ip == IPv4Address("10.200.5.128")
    assert ip in addressing.dynamic_range(subnet)
    hosts = {addressing.host_ip(subnet, i) for i in range(118)}
    assert ip not in hosts


def test_web_and_registry_ports_come_from_their_own_range():
    port = addressing.choose_port("shop/local/web-1/http", [], addressing.PUBLISHED_PORT_RANGE)
    assert port in addressing.PUBLISHED_PORT_RANGE
    assert not set(addressing.PUBLISHED_PORT_RANGE) & set(addressing.SSH_PORT_RANGE)
    assert addressing.PUBLISHED_PORT_RANGE.stop <= 32768  # below the ephemeral range


def test_published_ports_are_read_from_docker_inspect():
    item = {"HostConfig": {"PortBindings": {
        "22/tcp": [{"HostIp": "127.0.0.1", "HostPort": "22010"}],
        "80/tcp": [{"HostIp": "127.0.0.1", "HostPort": "23001"}],
        "443/tcp": [{"HostIp": "127.0.0.1", "HostPort": "24001"}],
        "53/udp": [{"HostIp": "127.0.0.1", "HostPort": "5353"}],
        "8080/tcp": [],
    }}}
    assert _published_ports(item) == {22: 22010, 80: 23001, 443: 24001}
    assert _published_ports({}) == {}


# -------------------------------------------------------------------- image recipe


@pytest.fixture
def image_dir(tmp_path, monkeypatch):
    """A copy of the image's build context, so tests can change it."""
    copy = tmp_path / "image"
    shutil.copytree(host_image.IMAGE_DIR, copy,
                    ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    monkeypatch.setattr(host_image, "IMAGE_DIR", copy)
    return copy


MIRRORS = host_image.Mirrors("http://deb.example/debian", "http://deb.example/debian-security")


def test_recipe_hash_changes_with_every_build_input(image_dir):
    before = host_image.recipe_hash(MIRRORS)
    assert len(before) == 12
    assert host_image.recipe_hash(MIRRORS) == before
    (image_dir / "__pycache__").mkdir()
    (image_dir / "__pycache__" / "x.pyc").write_bytes(b"noise")
    assert host_image.recipe_hash(MIRRORS) == before, "python files are not build inputs"
    other_mirror = host_image.Mirrors("http://other/debian", MIRRORS.security)
    assert host_image.recipe_hash(other_mirror) != before
    with open(image_dir / "packages.txt", "a") as handle:
        handle.write("curl\n")
    after_packages = host_image.recipe_hash(MIRRORS)
    assert after_packages != before
    (image_dir / "rootfs" / "etc" / "ssh" / "sshd_config.d" / "stagecraft.conf").chmod(0o600)
    assert host_image.recipe_hash(MIRRORS) != after_packages


def test_packages_come_from_packages_txt_without_comments():
    names = host_image.packages()
    assert "openssh-server" in names and "systemd" in names and "python3" in names
    assert not any(n.startswith("#") for n in names)


def test_mirrors_are_read_from_the_machines_apt_sources(tmp_path, monkeypatch):
    monkeypatch.delenv("STAGECRAFT_DEBIAN_MIRROR", raising=False)
    monkeypatch.delenv("STAGECRAFT_DEBIAN_SECURITY_MIRROR", raising=False)
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list.d" / "nodesource.list").write_text(
        "deb [signed-by=/k.gpg] https://deb.nodesource.com/node_20.x nodistro main\n")
    (tmp_path / "sources.list.d" / "debian.sources").write_text(
        "Types: deb\n# comment\nURIs: http://mirror.local/debian/\n"
        "Suites: bookworm bookworm-updates\n"
        "Components: main\n\n"
        "Types: deb\nURIs: http://mirror.local/debian-security\nSuites: bookworm-security\n"
        "Components: main\n")
    assert host_image.read_mirrors(tmp_path) == host_image.Mirrors(
        "http://mirror.local/debian", "http://mirror.local/debian-security")


def test_mirror_defaults_to_deb_debian_org(tmp_path, monkeypatch):
    monkeypatch.delenv("STAGECRAFT_DEBIAN_MIRROR", raising=False)
    monkeypatch.delenv("STAGECRAFT_DEBIAN_SECURITY_MIRROR", raising=False)
    assert host_image.read_mirrors(tmp_path) == host_image.Mirrors(
        host_image.DEFAULT_MIRROR, host_image.DEFAULT_SECURITY_MIRROR)


# --------------------------------------------------------------------- docker helper


def test_failed_command_names_the_command_the_exit_code_and_stderr():
    with pytest.raises(CommandFailed) as info:
        dockercli.run(["sh", "-c", "echo first >&2; echo 'disk full' >&2; exit 3"],
                      what="create host web-1")
    error = info.value
    assert error.message.startswith("cannot create host web-1: `sh -c ")
    assert "exited 3: disk full" in error.message
    assert error.returncode == 3
    assert error.output_tail == "first\ndisk full"
    assert error.hint


def test_missing_program_is_an_environment_error():
    with pytest.raises(EnvironmentMissing, match="`no-such-tool-x` is not installed"):
        dockercli.run(["no-such-tool-x"], what="do a thing")


def test_command_that_hangs_is_stopped_and_reported():
    with pytest.raises(CommandFailed, match="did not finish within 0.2 s") as info:
        dockercli.run(["sleep", "5"], what="wait", timeout=0.2)
    assert info.value.returncode is None


def test_no_engine_is_reported_as_missing_environment():
    error = dockercli.failure(
        "list hosts", ["docker", "ps"], 1,
        "Cannot connect to the Docker daemon at unix:///var/run/docker.sock.", None)
    assert isinstance(error, EnvironmentMissing)
    assert "ensure-docker.sh" in error.hint


def test_long_output_keeps_its_end():
    assert dockercli.tail("x" * 5000 + "END", 10) == "…xxxxxxxEND"


# ------------------------------------------------------- runtime, registry, traefik


def test_dpkg_slim_rules_keep_copyright_files_only():
    rules = images.dpkg_path_rules(images.SLIM_RULES.read_text())
    assert images.dpkg_excludes(rules, "/usr/share/doc/curl/changelog.gz")
    assert not images.dpkg_excludes(rules, "/usr/share/doc/curl/copyright")
    assert images.dpkg_excludes(rules, "/usr/share/man/man1/curl.1.gz")
    assert images.dpkg_excludes(rules, "/usr/share/locale/de/LC_MESSAGES/apt.mo")
    assert not images.dpkg_excludes(rules, "/usr/share/locale/locale.alias")
    assert not images.dpkg_excludes(rules, "/usr/bin/curl")


def test_trimming_a_root_filesystem_removes_what_dpkg_would_skip(tmp_path):
    keep = ["usr/share/doc/curl/copyright", "usr/bin/python3",
            "usr/share/locale/locale.alias", "var/lib/dpkg/status"]
    drop = ["usr/share/doc/curl/changelog.gz", "usr/share/man/man1/curl.1.gz",
            "usr/share/locale/de/LC_MESSAGES/apt.mo",
            "var/lib/apt/lists/deb.debian.org_debian_dists_trixie_main_binary-amd64_Packages",
            "var/cache/apt/pkgcache.bin", "var/log/dpkg.log", "var/lib/dpkg/status-old"]
    for rel in keep + drop:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("x")
    images.trim_rootfs(tmp_path)
    for rel in keep:
        assert (tmp_path / rel).exists(), rel
    for rel in drop:
        assert not (tmp_path / rel).exists(), rel
    assert not (tmp_path / "usr/share/man/man1").exists(), "emptied folders go too"
    assert (tmp_path / "etc/dpkg/dpkg.cfg.d/stagecraft-slim").read_text() == (
        images.SLIM_RULES.read_text())


def test_context_hash_changes_with_files_modes_and_build_args(tmp_path):
    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    before = images.context_hash(tmp_path, {"A": "1"})
    assert len(before) == 12 and images.context_hash(tmp_path, {"A": "1"}) == before
    assert images.context_hash(tmp_path, {"A": "2"}) != before
    (tmp_path / "__pycache__").mkdir()
    (tmp_path / "__pycache__" / "x.pyc").write_bytes(b"noise")
    assert images.context_hash(tmp_path, {"A": "1"}) == before
    (tmp_path / "Dockerfile").chmod(0o600)
    after_mode = images.context_hash(tmp_path, {"A": "1"})
    assert after_mode != before
    (tmp_path / "Dockerfile").write_text("FROM scratch\nCMD []\n")
    assert images.context_hash(tmp_path, {"A": "1"}) != after_mode


def test_runtime_base_tag_follows_its_recipe():
    tag = images.runtime_base_tag(MIRRORS)
    assert tag.startswith("stagecraft/runtime-base:") and len(tag.split(":")[1]) == 12
    other = host_image.Mirrors("http://other/debian", MIRRORS.security)
    assert images.runtime_base_tag(other) != tag


def test_traefik_binary_is_the_one_of_the_installed_package():
    binary = images.traefik_binary()
    assert binary.name == "traefik" and binary.is_file()
    assert binary.resolve() == (Path(sys.executable).parent / "traefik").resolve()
    assert images.traefik_version(binary).split(".")[0] == "3"
    # The recorded hash is the file's real sha256.
    import hashlib
    assert images._file_sha256(binary) == hashlib.sha256(binary.read_bytes()).hexdigest()


def test_registry_password_is_made_once_and_private(tmp_path):
    files = registry.RegistryFiles(tmp_path)
    files.directory.mkdir()
    files.htpasswd.write_text("stale\n")
    password = registry._ensure_password(files)
    assert len(password) >= 40
    assert stat.S_IMODE(files.password.stat().st_mode) == 0o600
    assert not files.htpasswd.exists(), "a new password makes the old htpasswd wrong"
    assert registry._ensure_password(files) == password


def test_registry_certificate_is_reused_until_its_names_change(tmp_path):
    ca = ensure_ca(tmp_path)
    files = registry.RegistryFiles(tmp_path)
    first = registry._ensure_certificate(files, ca, "stagecraft-shop-local-registry",
                                         "10.200.3.128")
    assert stat.S_IMODE(files.key.stat().st_mode) == 0o600
    again = registry._ensure_certificate(files, ca, "stagecraft-shop-local-registry",
                                         "10.200.3.128")
    assert again == first
    moved = registry._ensure_certificate(files, ca, "stagecraft-shop-local-registry",
                                         "10.200.9.128")
    assert moved != first


def test_registry_files_go_into_the_container_owned_by_its_user(tmp_path):
    ca = ensure_ca(tmp_path)
    files = registry.RegistryFiles(tmp_path)
    registry._ensure_certificate(files, ca, "r", "10.0.0.128")
    files.htpasswd.write_text("stagecraft:$2y$05$abc\n")
    with tarfile.open(fileobj=io.BytesIO(registry._config_tar(files))) as archive:
        members = {m.name: m for m in archive.getmembers()}
        assert set(members) == {"tls", "htpasswd", "tls/registry.crt", "tls/registry.key"}
        assert {(m.uid, m.gid) for m in members.values()} == {(images.REGISTRY_UID,) * 2}
        assert members["tls/registry.key"].mode == 0o600
        assert members["htpasswd"].mode == 0o600
        assert archive.extractfile("tls/registry.crt").read() == files.cert.read_bytes()


def test_registry_access_without_a_registry_says_to_bring_the_fleet_up(tmp_path):
    # No registry.json: refused before any container is looked at (no Docker needed).
    spec = FleetSpec("nosuchproject", "local", (HostSpec("web-1"),))
    with pytest.raises(ProviderError, match="has no registry") as info:
        registry.registry_access(spec, tmp_path)
    assert "stagecraft infra up --env local" in info.value.hint


def test_local_cloud_refuses_a_host_named_like_its_registry(tmp_path):
    spec = FleetSpec("shop", "local", (HostSpec("registry"),))
    with pytest.raises(ProviderError, match="keeps the host name 'registry'"):
        LocalCloud(image_tag="unused").up(spec, tmp_path)


def test_public_network_sorts_after_the_private_one_and_clashes_with_no_environment():
    # Docker picks a container's gateway endpoint by network name among equals: the
    # private network must win, or SSH published on 127.0.0.1 would land on the public side.
    private = addressing.network_name("shop", "local")
    public = addressing.public_network_name("shop", "local")
    assert sorted([public, private]) == [private, public]
    # `_` is not in any DNS label, so no environment's own network has this name.
    assert public == private + "_public"
    assert addressing.network_name("shop", "local-public") != public
