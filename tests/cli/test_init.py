"""`stagecraft init` (spec/cli/init.md): a complete, valid stagecraft.yml, the
.stagecraft/ workspace and the .gitignore entry, for every choice of every option."""

from __future__ import annotations

import json
import os
from pathlib import Path
from types import SimpleNamespace

import pytest
from click.testing import CliRunner

from stagecraft.cli.main import cli, main
from stagecraft.config import load_config
from stagecraft.config.jsonschema import config_json_schema
from stagecraft.errors import UsageError
from stagecraft.scaffold import CHOICES, InitOptions, init_project

SCHEMA_LINE = "# yaml-language-server: $schema=.stagecraft/schema.json"


@pytest.fixture(autouse=True)
def no_stagecraft_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("STAGECRAFT_"):
            monkeypatch.delenv(name)


def invoke(*args: str, input: str | None = None):
    return CliRunner().invoke(cli, list(args), input=input, prog_name="stagecraft",
                              catch_exceptions=False)


def init(directory: Path, *args: str):
    result = invoke("init", "--yes", "--dir", str(directory), *args)
    assert result.exit_code == 0, result.output
    return result


def validate(directory: Path) -> str:
    """`stagecraft validate` on the written file, through the CLI."""
    result = invoke("validate", "-c", str(directory / "stagecraft.yml"))
    assert result.exit_code == 0
    return result.stdout


def test_defaults(tmp_path: Path) -> None:
    project = tmp_path / "My Shop"
    result = init(project)
    config = project / "stagecraft.yml"
    assert result.stdout == (
        f"wrote {project / '.stagecraft' / 'schema.json'}\n"
        f"wrote {config}\n"
        f"wrote {project / '.gitignore'}\n"
        "next: edit stagecraft.yml, then run `stagecraft validate`\n")
    assert config.read_text().splitlines()[0] == SCHEMA_LINE
    assert validate(project) == ("stagecraft.yml is valid: project my-shop, 1 service(s), "
                                 "environment(s): local, production\n")
    loaded = load_config(config)
    assert loaded.config.project.name == "my-shop"  # the directory's name as a DNS label
    web = loaded.environment("production").services["web"]
    assert web.port == 8080 and web.routes[0].host == "{domain}"
    assert loaded.environment("local").providers.cloud.kind == "local"
    schema = json.loads((project / ".stagecraft" / "schema.json").read_text())
    assert schema == config_json_schema()
    assert (project / ".gitignore").read_text() == ".stagecraft/\n"


OPTION_CHOICES = [(option, choice) for option, choices in CHOICES.items() for choice in choices]


@pytest.mark.parametrize(("option", "choice"), OPTION_CHOICES,
                         ids=[f"{o}={c}" for o, c in OPTION_CHOICES])
def test_every_choice_of_every_option_writes_a_valid_config(tmp_path: Path, option: str,
                                                             choice: str) -> None:
    init(tmp_path, "--name", "app", f"--{option}", choice)
    validate(tmp_path)
    loaded = load_config(tmp_path / "stagecraft.yml")
    providers = loaded.environment("production").providers
    chosen = getattr(providers, option)
    if choice == "none" and option in ("frontend", "ci"):
        assert chosen is None
    else:
        assert chosen.kind == choice
    assert (tmp_path / ".stagecraft" / "schema.json").is_file()


@pytest.mark.parametrize("args", [
    ("--name", "full", "--environments", "local,staging,production", "--services",
     "web:3000,api:8080,admin", "--backend", "encore-ts", "--frontend", "generic",
     "--network", "none", "--cloud", "local", "--secrets", "encore", "--ci", "github"),
    ("--name", "solo", "--environments", "local", "--services", "site"),
])
def test_flag_combinations_write_valid_configs(tmp_path: Path, args: tuple[str, ...]) -> None:
    init(tmp_path, *args)
    validate(tmp_path)
    assert (tmp_path / "stagecraft.yml").read_text().startswith(SCHEMA_LINE + "\n")


@pytest.mark.parametrize("option", ["--network tailscale", "--network headscale"])
def test_kinds_without_a_provider_are_not_offered(tmp_path: Path, option: str,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    # validate would reject them: init must not write what validate refuses. (An install
    # whose network kinds are `none` only, as before the tailnet shipped.)
    from stagecraft.cli.init import command as init_command

    (network,) = [p for p in init_command.params if p.name == "network"]
    monkeypatch.setattr(network.type, "choices", ("none",))
    result = CliRunner().invoke(cli, ["init", "--yes", "--dir", str(tmp_path), *option.split()],
                                prog_name="stagecraft")
    assert result.exit_code == 2
    name, kind = option.removeprefix("--").split()
    works = {"cloud": "local, ssh", "network": "none"}[name]
    assert (f"Invalid value for '--{name}': {name} '{kind}' has no provider yet; "
            f"what works now: {works}") in result.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.usefixtures("stand_in_providers")
@pytest.mark.parametrize(("cloud", "network"), [("digitalocean", "tailscale"), ("ssh", "headscale")])
def test_the_template_is_ready_for_kinds_whose_provider_has_not_landed(
        tmp_path: Path, cloud: str, network: str) -> None:
    # Once a provider registers the kind, init offers it and what it writes validates.
    written = init_project(tmp_path, InitOptions(name="app", environments=("local", "production"),
                                                 cloud=cloud, network=network))
    assert tmp_path / "stagecraft.yml" in written
    loaded = load_config(tmp_path / "stagecraft.yml")
    production = loaded.environment("production").providers
    assert (production.cloud.kind, production.network.kind) == (cloud, network)
    local = loaded.environment("local").providers
    assert (local.cloud.kind, local.network.kind) == ("local", "none")


def test_services_and_environments_flags(tmp_path: Path) -> None:
    init(tmp_path, "--name", "shop", "--environments", "local,staging",
         "--services", "web:3000, api:9000 ,admin")
    loaded = load_config(tmp_path / "stagecraft.yml")
    assert list(loaded.environments) == ["local", "staging"]
    services = loaded.environment("staging").services
    assert {name: s.port for name, s in services.items()} == {"web": 3000, "api": 9000, "admin": 8080}
    # The first service takes the domain itself, the others a subdomain.
    assert [s.routes[0].host for s in services.values()] == ["{domain}", "api.{domain}", "admin.{domain}"]
    assert loaded.environment("staging").domain == "staging.example.com"
    assert loaded.environment("local").domain == "shop.localhost"


def test_json_output_lists_the_files(tmp_path: Path) -> None:
    result = init(tmp_path, "--output", "json")
    assert json.loads(result.stdout) == {"written": [
        str(tmp_path / ".stagecraft" / "schema.json"), str(tmp_path / "stagecraft.yml"),
        str(tmp_path / ".gitignore")]}


def test_gitignore_entry_is_added_once(tmp_path: Path) -> None:
    (tmp_path / ".gitignore").write_text("node_modules/\n")
    init(tmp_path)
    init(tmp_path, "--force")
    assert (tmp_path / ".gitignore").read_text() == "node_modules/\n.stagecraft/\n"
    second = init(tmp_path, "--force")
    assert ".gitignore" not in second.stdout  # nothing to write the third time


def test_gitignore_entry_without_slash_counts(tmp_path: Path) -> None:
    (tmp_path / ".gitignore").write_text(".stagecraft\n")
    init(tmp_path)
    assert (tmp_path / ".gitignore").read_text() == ".stagecraft\n"


def test_refuses_to_overwrite_without_force(tmp_path: Path, capsys, monkeypatch) -> None:
    config = tmp_path / "stagecraft.yml"
    config.write_text("# mine\n")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exited:
        main(["init", "--yes"])
    out, err = capsys.readouterr()
    assert (exited.value.code, out) == (2, "")
    assert err == ("error: stagecraft.yml already exists\n"
                   "hint: pass --force to overwrite it (the old file is replaced)\n")
    assert config.read_text() == "# mine\n"
    assert not (tmp_path / ".stagecraft").exists() and not (tmp_path / ".gitignore").exists()
    init(tmp_path, "--force")
    assert config.read_text().startswith(SCHEMA_LINE)


def test_refuses_without_a_terminal_and_without_yes(tmp_path: Path) -> None:
    with pytest.raises(UsageError) as caught:
        invoke("init", "--dir", str(tmp_path), "--name", "app")
    assert caught.value.message == "init needs answers and there is no terminal to ask on"
    assert caught.value.hint == "pass --yes (with --name, --services, ... as needed)"
    assert caught.value.exit_code == 2
    assert list(tmp_path.iterdir()) == []


def test_prompts_on_a_terminal(tmp_path: Path, monkeypatch) -> None:
    # CliRunner swaps sys.stdin for the answers; init's terminal check must see a TTY.
    terminal = SimpleNamespace(stdin=SimpleNamespace(isatty=lambda: True))
    monkeypatch.setattr("stagecraft.cli.init.sys", terminal)
    # Prompts: name, environments, services, backend, frontend, network, cloud, secrets, ci.
    answers = "\n".join(["asked", "", "api:9000", "encore-ts", "", "headscale", "", "",
                         "github"]) + "\n"
    result = CliRunner().invoke(cli, ["init", "--dir", str(tmp_path)], input=answers,
                                prog_name="stagecraft", catch_exceptions=False)
    assert result.exit_code == 0, result.output
    loaded = load_config(tmp_path / "stagecraft.yml")
    production = loaded.environment("production")
    assert loaded.config.project.name == "asked"
    assert (production.providers.backend.kind, production.providers.cloud.kind) == ("encore-ts", "local")
    assert production.providers.ci.kind == "github"
    assert production.providers.network.kind == "headscale"
    assert list(production.services) == ["api"]


@pytest.mark.parametrize(("args", "message"), [
    (("--name", "My App"), "project name 'My App' must be lowercase letters, digits and '-'"),
    (("--name", "-app"), "project name '-app' must be lowercase letters, digits and '-'"),
    (("--environments", "prod,Prod"), "environment name 'Prod' must be lowercase letters, digits and '-'"),
    (("--environments", "a,a"), "environment names must be unique: a,a"),
    (("--environments", " , "), "give at least one environment name"),
    (("--services", "web:http"), "service 'web:http': the port must be a number"),
    (("--services", "web:0"), "service 'web:0': the port must be 1-65535"),
    (("--services", "web:70000"), "service 'web:70000': the port must be 1-65535"),
    (("--services", "Web:80"), "service name 'Web' must be lowercase letters, digits and '-'"),
    (("--services", "web,web:81"), "service names must be unique: web,web:81"),
    (("--services", ","), "give at least one service, like web:8080"),
])
def test_bad_names_and_ports_are_usage_errors(tmp_path: Path, capsys, args, message) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["init", "--yes", "--dir", str(tmp_path), *args])
    out, err = capsys.readouterr()
    assert exited.value.code == 2
    assert err == f"error: {message}\n"
    assert list(tmp_path.iterdir()) == []


def test_bad_choice_is_a_usage_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["init", "--yes", "--dir", str(tmp_path), "--backend", "aws"],
                                prog_name="stagecraft")
    assert result.exit_code == 2
    assert "Invalid value for '--backend': 'aws' is not one of 'generic', 'encore-ts'." in result.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("where", ["before", "after"])
def test_dry_run_prints_the_file_and_writes_nothing(tmp_path: Path, where: str) -> None:
    target = tmp_path / "project"
    args = ["init", "--yes", "--dir", str(target), "--name", "dry"]
    result = invoke(*(["--dry-run", *args] if where == "before" else [*args, "--dry-run"]))
    assert result.exit_code == 0
    assert result.stdout.startswith(SCHEMA_LINE + "\n")
    assert "  name: dry\n" in result.stdout
    assert not target.exists()


def test_dry_run_json(tmp_path: Path) -> None:
    result = invoke("init", "--yes", "--dir", str(tmp_path), "--dry-run", "--output", "json")
    data = json.loads(result.stdout)
    assert data["written"] == []
    assert data["config"].startswith(SCHEMA_LINE)
    assert list(tmp_path.iterdir()) == []
