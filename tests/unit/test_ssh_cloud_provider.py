"""Cloud `ssh` (spec/providers/cloud-ssh.md): host key trust, the records it keeps, and
the rest of the cloud interface, without servers (the integration test has them)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from stagecraft.errors import ConfigError, ExitCode, HostKeyChanged, ProviderError, StateError
from stagecraft.providers.cloud import CloudProvider, get_cloud_provider
from stagecraft.providers.cloud.base import (
    ABSENT,
    MISSING,
    REMOVED,
    RUNNING,
    FleetSpec,
    HostRecord,
    HostSpec,
    SshAccess,
    StateFiles,
    read_hosts_file,
    write_hosts_file,
)
from stagecraft.providers.cloud.ssh import SshCloud, hostkeys
from stagecraft.providers.cloud.ssh import keys as ssh_keys
from stagecraft.providers.cloud.ssh.adopt import Adoption
from stagecraft.providers.cloud.ssh.hostkeys import (
    CHANGED,
    NEW,
    PINNED,
    REVOKED,
    VOUCHED,
    HostKey,
    KnownEntry,
    judge,
)
from stagecraft.providers.cloud.ssh.probe import Endpoint


def make_key(path: Path, kind: str = "ed25519") -> HostKey:
    subprocess.run(["ssh-keygen", "-q", "-t", kind, "-N", "", "-C", "", "-f", str(path)],
                   check=True)
    kind_, blob = path.with_suffix(".pub").read_text().split()[:2]
    return HostKey(kind_, blob)


def fingerprint_of(path: Path) -> str:
    return subprocess.run(["ssh-keygen", "-lf", str(path)], capture_output=True, text=True,
                          check=True).stdout.split()[1]


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty $HOME: the user's known_hosts and keys are the test's."""
    directory = tmp_path / "home"
    (directory / ".ssh").mkdir(parents=True)
    monkeypatch.setenv("HOME", str(directory))
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    return directory


# --------------------------------------------------------------- judging keys

A, B = HostKey("ssh-ed25519", "AAAA-a"), HostKey("ssh-ed25519", "AAAA-b")
R = HostKey("ssh-rsa", "AAAA-r")


@pytest.mark.parametrize(("pinned", "vouched", "verdict", "known"), [
    ([], [], NEW, ()),
    ([KnownEntry(A)], [], PINNED, ()),
    ([KnownEntry(B)], [], CHANGED, (B,)),
    # The environment's pin wins over the user's known_hosts, both ways.
    ([KnownEntry(B)], [KnownEntry(A)], CHANGED, (B,)),
    ([KnownEntry(A)], [KnownEntry(B)], PINNED, ()),
    ([], [KnownEntry(A), KnownEntry(R)], VOUCHED, ()),
    ([], [KnownEntry(B)], CHANGED, (B,)),
    ([], [KnownEntry(A, "@revoked")], REVOKED, ()),
    # A CA vouches for certificates, not for this key: nothing is known.
    ([], [KnownEntry(B, "@cert-authority")], NEW, ()),
])
def test_judge(pinned, vouched, verdict, known) -> None:
    judgement = judge(A, pinned, vouched)
    assert (judgement.verdict, judgement.known) == (verdict, known)


def test_a_server_is_asked_for_the_key_types_already_known_for_it() -> None:
    entries = [KnownEntry(R), KnownEntry(A), KnownEntry(B), KnownEntry(A, "@revoked"),
               KnownEntry(HostKey("ecdsa-sha2-nistp256", "x"))]
    assert hostkeys.algorithms_for(entries) == [
        "rsa-sha2-512", "rsa-sha2-256", "ssh-ed25519", "ecdsa-sha2-nistp256"]
    assert hostkeys.algorithms_for([]) == []


def test_known_hosts_lines_with_markers_hashes_and_comments() -> None:
    text = ("# Host [10.0.0.9]:2222 found: line 3\n"
            "|1|salt=|hash= ssh-ed25519 AAAA-a\n"
            "@revoked 10.0.0.9 ssh-ed25519 AAAA-b\n"
            "10.0.0.9\n\n")
    assert hostkeys.parse_entries(text) == [KnownEntry(A), KnownEntry(B, "@revoked")]


def test_lookup_finds_hashed_names_and_ports(tmp_path: Path) -> None:
    key = make_key(tmp_path / "k")
    known = tmp_path / "known_hosts"
    known.write_text(f"[10.0.0.9]:2222 {key.line}\n192.0.2.7 {A.line}\n")
    subprocess.run(["ssh-keygen", "-H", "-f", str(known)], capture_output=True, check=True)
    assert "10.0.0.9" not in known.read_text()
    assert hostkeys.lookup(known, "10.0.0.9", 2222) == [KnownEntry(key)]
    assert hostkeys.lookup(known, "10.0.0.9", 22) == []
    assert hostkeys.lookup(tmp_path / "absent", "10.0.0.9", 22) == []


def test_fingerprints_are_the_ones_the_console_shows(tmp_path: Path) -> None:
    key = make_key(tmp_path / "k")
    fp = hostkeys.fingerprint(key)
    assert (fp.hash, fp.label) == (fingerprint_of(tmp_path / "k.pub"), "ED25519")
    assert str(fp) == f"ED25519 key {fp.hash}"
    with pytest.raises(ProviderError):
        hostkeys.parse_fingerprint("garbage")


def test_a_changed_pinned_key_says_how_to_check_and_repin(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    new, old = hostkeys.Fingerprint("SHA256:new", "ED25519"), hostkeys.Fingerprint(
        "SHA256:old", "ED25519")
    error = hostkeys.changed_error("host web-2", "192.0.2.8", 2222, new, "ssh-ed25519", [old],
                                   tmp_path / ".stagecraft" / "prod" / "known_hosts", pinned=True)
    assert isinstance(error, HostKeyChanged) and error.exit_code == ExitCode.PROVIDER
    assert error.message == (
        "host web-2 (192.0.2.8:2222) offers ED25519 key SHA256:new, but "
        ".stagecraft/prod/known_hosts has SHA256:old for it: the server was reinstalled, or "
        "someone is in the middle; refusing to connect")
    assert error.hint == (
        "check the server's real key on its console: `ssh-keygen -lf "
        "/etc/ssh/ssh_host_ed25519_key.pub`; if it shows SHA256:new, forget the old key with "
        "`ssh-keygen -R '[192.0.2.8]:2222' -f .stagecraft/prod/known_hosts` and run "
        "`stagecraft infra up` again")


def test_a_key_that_differs_from_the_users_known_hosts_points_there(home: Path) -> None:
    new = hostkeys.Fingerprint("SHA256:new", "ECDSA")
    error = hostkeys.changed_error("host web-1", "192.0.2.7", 22, new, "ecdsa-sha2-nistp256",
                                   [hostkeys.Fingerprint("SHA256:old", "ED25519")],
                                   home / ".ssh" / "known_hosts", pinned=False)
    assert "but ~/.ssh/known_hosts has SHA256:old" in error.message
    assert "`ssh-keygen -lf /etc/ssh/ssh_host_ecdsa_key.pub`" in error.hint
    assert "`ssh-keygen -R '192.0.2.7'` and run" in error.hint


# ------------------------------------------------------- pinning, without servers

class Scans:
    """What each server offers, in place of ssh: address -> HostKey."""

    def __init__(self, offers: dict[str, HostKey]) -> None:
        self.offers = offers
        self.asked_algorithms: dict[str, list[str]] = {}

    def __call__(self, endpoint: Endpoint, algorithms: list[str]) -> HostKey:
        # Set on the class, an instance is not bound: no adoption argument.
        self.asked_algorithms[endpoint.address] = algorithms
        return self.offers[endpoint.address]


WEB = Endpoint("host web-1", "192.0.2.7", 22, "root", None, name="web-1")
API = Endpoint("host api-1", "192.0.2.8", 2222, "root", None, name="api-1")


@pytest.fixture
def offers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, home: Path) -> dict[str, HostKey]:
    found = {"192.0.2.7": make_key(tmp_path / "web"), "192.0.2.8": make_key(tmp_path / "api")}
    monkeypatch.setattr(Adoption, "_scan", Scans(found))
    return found


def adoption(tmp_path: Path, confirm=None, pinned: str = "") -> tuple[Adoption, list[str]]:
    state = tmp_path / "state"
    state.mkdir(exist_ok=True)
    if pinned:
        (state / "known_hosts").write_text(pinned)
    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    said: list[str] = []
    return Adoption(state / "known_hosts", work, log=said.append, confirm=confirm), said


def test_new_keys_without_anyone_to_ask_are_refused_with_every_fingerprint(
        tmp_path: Path, offers) -> None:
    pins, _ = adoption(tmp_path)
    with pytest.raises(ProviderError) as caught:
        pins.pin([WEB, API])
    web, api = fingerprint_of(tmp_path / "web.pub"), fingerprint_of(tmp_path / "api.pub")
    assert caught.value.message == (
        "2 host keys that nothing vouches for yet, and no terminal is there to ask about "
        f"them:\n  host web-1 (192.0.2.7:22) offers ED25519 key {web}\n"
        f"  host api-1 (192.0.2.8:2222) offers ED25519 key {api}")
    assert caught.value.hint.endswith("run `stagecraft infra up --accept-new-host-keys`")
    assert pins.known_hosts.read_text() == "" and pins.added == []


def test_each_new_key_is_asked_about_and_a_no_refuses(tmp_path: Path, offers) -> None:
    questions: list[str] = []

    def confirm(question: str) -> bool:
        questions.append(question)
        return "web-1" in question

    pins, said = adoption(tmp_path, confirm)
    with pytest.raises(ProviderError) as caught:
        pins.pin([WEB, API])
    web, api = fingerprint_of(tmp_path / "web.pub"), fingerprint_of(tmp_path / "api.pub")
    assert questions == [f"host web-1 (192.0.2.7:22) offers ED25519 key {web}; trust it?",
                         f"host api-1 (192.0.2.8:2222) offers ED25519 key {api}; trust it?"]
    assert caught.value.message == (f"host api-1 (192.0.2.8:2222) offers ED25519 key {api}; "
                                    "nothing vouches for it yet, and it was not accepted")
    assert said == [f"host web-1: trusting ED25519 key {web} from now on"]


def test_accepted_keys_are_pinned_under_the_name_ssh_looks_up(tmp_path: Path, offers) -> None:
    pins, _ = adoption(tmp_path, lambda _q: True)
    pins.pin([WEB, API])
    assert pins.known_hosts.read_text() == (f"192.0.2.7 {offers['192.0.2.7'].line}\n"
                                            f"[192.0.2.8]:2222 {offers['192.0.2.8'].line}\n")
    assert not (tmp_path / "state" / "known_hosts").exists()  # the provider writes it


def test_a_pinned_key_passes_silently_and_a_changed_one_is_refused_even_if_accepted(
        tmp_path: Path, offers, monkeypatch: pytest.MonkeyPatch) -> None:
    old = make_key(tmp_path / "old")
    pins, said = adoption(tmp_path, lambda _q: True,
                          pinned=f"192.0.2.7 {offers['192.0.2.7'].line}\n"
                                 f"[192.0.2.8]:2222 {old.line}\n")
    pins.pin([WEB])
    assert said == [] and pins.added == []
    monkeypatch.chdir(tmp_path)
    with pytest.raises(HostKeyChanged) as caught:
        pins.pin([WEB, API])
    assert (f"offers ED25519 key {fingerprint_of(tmp_path / 'api.pub')}, but "
            f"state/known_hosts has {fingerprint_of(tmp_path / 'old.pub')}") in caught.value.message
    assert "`ssh-keygen -R '[192.0.2.8]:2222' -f state/known_hosts`" in caught.value.hint


def test_the_users_known_hosts_vouches_and_names_the_types_to_ask_for(
        tmp_path: Path, offers, home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rsa = make_key(tmp_path / "rsa", "rsa")
    (home / ".ssh" / "known_hosts").write_text(
        f"192.0.2.7 {offers['192.0.2.7'].line}\n192.0.2.7 {rsa.line}\n")
    pins, said = adoption(tmp_path)  # nobody to ask: nothing needs asking
    pins.pin([WEB])
    assert said == [f"host web-1: host key {fingerprint_of(tmp_path / 'web.pub')} is in "
                    "~/.ssh/known_hosts; pinned"]
    assert Adoption._scan.asked_algorithms["192.0.2.7"] == [
        "ssh-ed25519", "rsa-sha2-512", "rsa-sha2-256"]
    assert pins.known_hosts.read_text() == f"192.0.2.7 {offers['192.0.2.7'].line}\n"


def test_a_key_revoked_in_the_users_known_hosts_is_refused(tmp_path: Path, offers,
                                                           home: Path) -> None:
    (home / ".ssh" / "known_hosts").write_text(f"@revoked * {offers['192.0.2.7'].line}\n")
    pins, _ = adoption(tmp_path, lambda _q: True)
    with pytest.raises(HostKeyChanged, match="marks as revoked"):
        pins.pin([WEB])


# ----------------------------------------------------------- the provider

SPEC = FleetSpec("shop", "prod", (
    HostSpec("web-1", ("edge",), address="192.0.2.7"),
    HostSpec("db-1", ("db",), address="10.0.0.9", proxy_jump="web-1"),
))


def record(name: str, **changes) -> HostRecord:
    values = dict(name=name, roles=("app",), state=RUNNING, ssh_host="192.0.2.7", ssh_port=22,
                  ssh_user="root", private_ip="192.0.2.7", provider_id=None, provider="ssh",
                  os="debian 13", arch="x86_64")
    values.update(changes)
    return HostRecord(**values)


def write_state(state: Path, records: list[HostRecord], provider: str = "ssh",
                extra: dict | None = None) -> StateFiles:
    files = StateFiles(state)
    state.mkdir(parents=True, exist_ok=True)
    write_hosts_file(files, provider=provider, spec=SPEC, records=records,
                     ssh=SshAccess("root", None, files.known_hosts), extra=extra)
    files.known_hosts.write_text("192.0.2.7 ssh-ed25519 AAAA\n")
    return files


def test_it_is_a_built_in_cloud_with_nothing_but_hosts() -> None:
    cloud = get_cloud_provider("ssh", {"user": "admin", "docker_source": "distro"})
    assert isinstance(cloud, SshCloud) and isinstance(cloud, CloudProvider)
    assert (cloud.kind, cloud.user, cloud.ssh_key) == ("ssh", "admin", None)
    assert not cloud.capabilities.registry and not cloud.capabilities.disposable_hosts
    assert cloud.capabilities.base_images == () and not cloud.capabilities.traefik_image
    assert cloud.prepare_controller(print) == []
    for call in (lambda: cloud.registry_access(SPEC, Path("/x")),
                 lambda: cloud.publish_traefik_image(SPEC, Path("/x")),
                 lambda: cloud.ensure_base_image("stagecraft/runtime")):
        with pytest.raises(ProviderError):
            call()


def test_the_controller_needs_ssh_and_ssh_keygen(monkeypatch: pytest.MonkeyPatch) -> None:
    checks = SshCloud().controller_checks()
    assert [(c.name, c.status) for c in checks] == [("ssh cloud: ssh", "ok"),
                                                     ("ssh cloud: ssh-keygen", "ok")]
    monkeypatch.setattr("shutil.which", lambda tool: None if tool == "ssh-keygen" else "/x")
    assert [c.failing for c in SshCloud().controller_checks()] == [False, True]


def test_ssh_access_is_the_clouds_user_and_key_and_the_pinned_known_hosts(home: Path) -> None:
    access = SshCloud(user="admin", ssh_key="~/.ssh/id_ops").ssh_access(SPEC, Path("/p/state"))
    assert access == SshAccess("admin", home / ".ssh" / "id_ops", Path("/p/state/known_hosts"))


def test_bootstrapped_hosts_are_reached_as_the_deploy_user_and_so_are_bastions(
        tmp_path: Path) -> None:
    files = write_state(tmp_path, [
        record("web-1"),
        record("db-1", ssh_host="10.0.0.9", ssh_proxy="root@192.0.2.7:22"),
        record("old", ssh_host="10.0.0.10", in_spec=False),
    ])
    SshCloud().bootstrapped(SPEC, tmp_path, ["web-1"], "deploy")
    document = read_hosts_file(files)
    hosts = {r.name: r for r in document["hosts"]}
    assert (hosts["web-1"].ssh_user, hosts["web-1"].ssh_proxy) == ("deploy", None)
    assert (hosts["db-1"].ssh_user, hosts["db-1"].ssh_proxy) == ("root", "deploy@192.0.2.7:22")
    assert hosts["old"].in_spec is False
    assert document["deploy_users"] == {"web-1": "deploy"}
    SshCloud().bootstrapped(SPEC, tmp_path, ["db-1"], "deploy")
    hosts = {r.name: r for r in read_hosts_file(files)["hosts"]}
    assert hosts["db-1"].ssh_user == "deploy"
    assert read_hosts_file(files)["deploy_users"] == {"web-1": "deploy", "db-1": "deploy"}


def test_bootstrapped_without_a_host_list_does_nothing(tmp_path: Path) -> None:
    SshCloud().bootstrapped(SPEC, tmp_path, ["web-1"], "deploy")
    assert not StateFiles(tmp_path).hosts.exists()


def test_down_forgets_the_hosts_never_touching_a_server_and_is_idempotent(
        tmp_path: Path) -> None:
    state = tmp_path / "state"
    files = write_state(state, [record("web-1"), record("gone", in_spec=False)])
    said: list[str] = []
    result = SshCloud().down(SPEC, state, log=said.append)
    assert [(h.name, h.state, h.change, h.in_spec) for h in result.hosts] == [
        ("web-1", MISSING, REMOVED, True), ("gone", MISSING, REMOVED, False),
        ("db-1", MISSING, ABSENT, True)]
    assert result.removed == (f"file {files.hosts}", f"file {files.known_hosts}")
    assert said[0] == "forgot host web-1 (192.0.2.7); the server itself is left as it is"
    again = SshCloud().down(SPEC, state)
    assert not again.changed and [h.change for h in again.hosts] == [ABSENT, ABSENT]
    assert not SshCloud().down(SPEC, tmp_path / "never").changed


def test_hosts_another_cloud_made_are_not_taken_over(tmp_path: Path) -> None:
    write_state(tmp_path, [record("web-1", provider="local")], provider="local")
    for call in (lambda: SshCloud().up(SPEC, tmp_path), lambda: SshCloud().down(SPEC, tmp_path),
                 lambda: SshCloud().status(SPEC, tmp_path)):
        with pytest.raises(StateError, match="was written by cloud 'local', not `ssh`"):
            call()
    assert read_hosts_file(StateFiles(tmp_path))["provider"] == "local"


def test_status_without_records_says_missing_and_connects_nowhere(tmp_path: Path) -> None:
    rows = SshCloud().status(SPEC, tmp_path)
    assert [(r.name, r.state, r.ssh_host, r.ssh_port, r.ssh_user) for r in rows] == [
        ("web-1", MISSING, "192.0.2.7", 22, "root"), ("db-1", MISSING, "10.0.0.9", 22, "root")]
    assert not tmp_path.joinpath("hosts.json").exists()


def test_a_refused_up_leaves_no_state_directory(tmp_path: Path) -> None:
    state = tmp_path / ".stagecraft" / "prod"
    bad = FleetSpec("shop", "prod", (HostSpec("web-1"),))
    with pytest.raises(ConfigError, match="has no address"):
        SshCloud().up(bad, state)
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------- the deploy user's keys

def test_bootstrap_vars_carry_the_docker_source_and_each_hosts_public_key(
        tmp_path: Path, home: Path) -> None:
    make_key(tmp_path / "id_web")
    make_key(tmp_path / "id_db")
    (tmp_path / "id_db.pub").unlink()  # derived with ssh-keygen -y
    spec = FleetSpec("shop", "prod", (
        HostSpec("web-1", address="192.0.2.7", ssh_key=str(tmp_path / "id_web")),
        HostSpec("db-1", address="10.0.0.9"),
    ))
    variables = SshCloud(ssh_key=str(tmp_path / "id_db"), docker_source="distro").bootstrap_vars(
        spec, tmp_path)
    web = " ".join((tmp_path / "id_web.pub").read_text().split()[:2])
    db = subprocess.run(["ssh-keygen", "-y", "-f", str(tmp_path / "id_db")], capture_output=True,
                        text=True, check=True).stdout.strip()
    assert variables == {"bootstrap_docker_source": "distro",
                         "bootstrap_deploy_authorized_keys": [web, db]}


def test_without_any_key_the_home_keys_count_and_none_at_all_is_a_config_error(
        tmp_path: Path, home: Path) -> None:
    spec = FleetSpec("shop", "prod", (HostSpec("web-1", address="192.0.2.7"),))
    with pytest.raises(ConfigError) as caught:
        SshCloud().bootstrap_vars(spec, tmp_path)
    assert "set providers.cloud.ssh_key" in caught.value.hint
    make_key(home / ".ssh" / "id_ed25519")
    keys = SshCloud().bootstrap_vars(spec, tmp_path)["bootstrap_deploy_authorized_keys"]
    assert keys == [" ".join((home / ".ssh" / "id_ed25519.pub").read_text().split()[:2])]


def test_a_key_with_a_passphrase_and_no_public_half_says_what_to_do(tmp_path: Path) -> None:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "secret", "-f",
                    str(tmp_path / "locked")], check=True)
    (tmp_path / "locked.pub").unlink()
    with pytest.raises(ConfigError) as caught:
        ssh_keys.public_key_of(tmp_path / "locked")
    assert caught.value.message.startswith(f"cannot get the public half of {tmp_path}/locked")
    assert f"put it beside the key as {tmp_path}/locked.pub" in caught.value.hint



def test_two_hosts_on_one_server_are_asked_about_once(tmp_path: Path, offers) -> None:
    questions: list[str] = []
    pins, _ = adoption(tmp_path, lambda q: questions.append(q) or True)
    pins.pin([WEB, Endpoint("host www-1", "192.0.2.7", 22, "admin", None, name="www-1")])
    assert len(questions) == 1
    assert pins.known_hosts.read_text() == f"192.0.2.7 {offers['192.0.2.7'].line}\n"
