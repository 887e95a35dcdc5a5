"""The stagecraft command: global flags, output modes, the one error handler, and the
foundation commands (validate, config show, schema, version, completion, status).

Most tests drive the click group in-process with CliRunner (catch_exceptions=False,
so a stray exception fails the test with its traceback). The error handler lives in
``stagecraft.cli.main.main()``: it is tested in-process through ``main()`` and, for
what only a real process shows (exit status, stderr, tracebacks), by running
``.venv/bin/stagecraft``.
"""

from __future__ import annotations

import json
import os
import platform
import re
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from stagecraft import __version__
from stagecraft.cli.main import cli, main
from stagecraft.config.jsonschema import config_json_schema
from stagecraft.errors import ExitCode

# The shop reference example (and provider-overrides.yml) use cloud digitalocean and
# network tailscale, which have no provider yet: registered stand-ins make them valid.
pytestmark = pytest.mark.usefixtures("stand_in_providers_module")

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "shop" / "reference" / "stagecraft.yml"
OVERRIDES = ROOT / "tests" / "data" / "configs" / "valid" / "provider-overrides.yml"
STAGECRAFT = Path(sys.executable).with_name("stagecraft")

BAD = "version: 1\nproject:\n  name: shop\n  nmae: x\nservices:\n  web: {image: a, on: [app]}\n" \
      "environments:\n  prod: {hosts: [{name: h1, roles: [app]}]}\n"
BAD_STDERR = (
    "error: stagecraft.yml is invalid:\n"
    "  stagecraft.yml:4:3: project.nmae: unknown setting 'nmae'; did you mean 'name'?\n"
    "hint: fix the file and run `stagecraft validate`\n"
)
SHOP_VALID = ("stagecraft.yml is valid: project shop, 4 service(s), "
              "environment(s): local, staging, production\n")


@pytest.fixture(autouse=True)
def no_stagecraft_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests set the STAGECRAFT_* variables they need; none leak in from outside."""
    for name in list(os.environ):
        if name.startswith("STAGECRAFT_"):
            monkeypatch.delenv(name)


@pytest.fixture
def shop(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The shop example as ./stagecraft.yml of the working directory."""
    path = tmp_path / "stagecraft.yml"
    shutil.copy(EXAMPLE, path)
    monkeypatch.chdir(tmp_path)
    return path


@pytest.fixture
def bad(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "stagecraft.yml"
    path.write_text(BAD)
    monkeypatch.chdir(tmp_path)
    return path


@pytest.fixture
def log_setup(monkeypatch: pytest.MonkeyPatch) -> list[dict]:
    """Every call of log.setup (made once per command with the final flag values)."""
    calls: list[dict] = []
    monkeypatch.setattr("stagecraft.log.setup", lambda **kwargs: calls.append(kwargs))
    return calls


def invoke(*args: str, env: dict | None = None, input: str | None = None):
    return CliRunner().invoke(cli, list(args), env=env, input=input, prog_name="stagecraft",
                              catch_exceptions=False)


def run_main(capsys: pytest.CaptureFixture, *args: str) -> tuple[int, str, str]:
    """The real entry point in-process: (exit code, stdout, stderr)."""
    with pytest.raises(SystemExit) as exited:
        main(list(args))
    out, err = capsys.readouterr()
    return exited.value.code, out, err


def run_process(*args: str, env: dict | None = None, cwd: Path | None = None,
                stdin=subprocess.DEVNULL) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if not k.startswith("STAGECRAFT_")}
    return subprocess.run([str(STAGECRAFT), *args], env={**base, **(env or {})}, cwd=cwd,
                          stdin=stdin, capture_output=True, text=True, timeout=60)


# --- version ---------------------------------------------------------------------------


def test_version_flag() -> None:
    result = invoke("--version")
    assert (result.exit_code, result.stdout) == (0, f"stagecraft {__version__}\n")


def test_version_command_text() -> None:
    lines = invoke("version").stdout.splitlines()
    assert lines[0] == f"stagecraft {__version__}"
    assert lines[1].split() == ["python", platform.python_version()]
    assert lines[-1].split() == ["click", metadata.version("click")]
    assert [line.split()[0] for line in lines[1:]] == [
        "python", "ansible-core", "ansible", "ansible-runner", "pydantic", "click"]


def test_version_command_json() -> None:
    data = json.loads(invoke("version", "--output", "json").stdout)
    assert data["stagecraft"] == __version__
    assert data["python"] == platform.python_version()
    assert data["pydantic"] == metadata.version("pydantic")
    assert set(data) == {"stagecraft", "python", "ansible-core", "ansible", "ansible-runner",
                         "pydantic", "click"}


# --- validate and global flags ---------------------------------------------------------


def test_validate_finds_the_config_in_the_working_directory(shop: Path) -> None:
    result = invoke("validate")
    assert (result.exit_code, result.stdout, result.stderr) == (0, SHOP_VALID, "")


def test_validate_json(shop: Path) -> None:
    data = json.loads(invoke("--output", "json", "validate").stdout)
    assert data == {"valid": True, "file": "stagecraft.yml", "project": "shop",
                    "environments": ["local", "staging", "production"],
                    "services": ["api", "db", "web", "worker"]}


@pytest.mark.parametrize("args", [
    ("-e", "staging", "validate"),
    ("validate", "-e", "staging"),
    ("--env", "staging", "validate"),
    ("validate", "--env=staging"),
    ("-e", "local", "validate", "-e", "staging"),  # after the command wins
])
def test_env_flag_before_or_after_the_command(shop: Path, args: tuple[str, ...]) -> None:
    assert invoke(*args).stdout == ("stagecraft.yml is valid: project shop, 4 service(s), "
                                    "environment(s): staging\n")


@pytest.mark.parametrize("where", ["before", "after"])
def test_config_flag_before_or_after_the_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                  where: str) -> None:
    monkeypatch.chdir(tmp_path)  # no stagecraft.yml here
    flag = ["-c", str(OVERRIDES)]
    args = [*flag, "validate"] if where == "before" else ["validate", *flag]
    assert invoke(*args).stdout == ("provider-overrides.yml is valid: project overlays, "
                                    "2 service(s), environment(s): staging, local\n")


@pytest.mark.parametrize("args", [
    ("--output", "json", "validate"), ("validate", "--output", "json"),
    ("--output=json", "validate"), ("--output", "text", "validate", "--output", "json"),
])
def test_output_flag_before_or_after_the_command(shop: Path, args: tuple[str, ...]) -> None:
    assert json.loads(invoke(*args).stdout)["valid"] is True


@pytest.mark.parametrize("args", [("-q", "validate"), ("validate", "--quiet")])
def test_quiet_flag_before_or_after_the_command(shop: Path, args: tuple[str, ...],
                                                 log_setup: list[dict]) -> None:
    result = invoke(*args)
    assert (result.exit_code, result.stdout) == (0, "")
    assert log_setup[-1]["quiet"] is True


@pytest.mark.parametrize(("args", "level"), [
    (("validate",), 0), (("-v", "validate"), 1), (("validate", "-vv"), 2),
    (("-v", "validate", "-vvv"), 3),
])
def test_verbose_counts_before_or_after_the_command(shop: Path, log_setup: list[dict],
                                                     args: tuple[str, ...], level: int) -> None:
    invoke(*args)
    assert log_setup[-1] == {"verbosity": level, "quiet": False, "output": "text"}


def test_output_must_be_text_or_json() -> None:
    result = CliRunner().invoke(cli, ["--output", "xml", "version"], prog_name="stagecraft")
    assert result.exit_code == ExitCode.USAGE == 2
    assert result.stderr.endswith(
        "Error: Invalid value for '--output': 'xml' is not one of 'text', 'json'.\n")


# --- STAGECRAFT_* variables ------------------------------------------------------------


def test_config_from_variable_and_flag_beats_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert invoke("validate", env={"STAGECRAFT_CONFIG": str(OVERRIDES)}).stdout.startswith(
        "provider-overrides.yml is valid")
    result = invoke("validate", "-c", str(EXAMPLE),
                    env={"STAGECRAFT_CONFIG": str(tmp_path / "missing.yml")})
    assert result.stdout == SHOP_VALID


def test_env_from_variable_and_flag_beats_it(shop: Path) -> None:
    assert invoke("validate", env={"STAGECRAFT_ENV": "staging"}).stdout.endswith(
        "environment(s): staging\n")
    for args in (("-e", "local", "validate"), ("validate", "-e", "local")):
        assert invoke(*args, env={"STAGECRAFT_ENV": "staging"}).stdout.endswith(
            "environment(s): local\n")


def test_output_from_variable_and_flag_beats_it(shop: Path) -> None:
    assert json.loads(invoke("validate", env={"STAGECRAFT_OUTPUT": "json"}).stdout)["valid"]
    for args in (("--output", "text", "validate"), ("validate", "--output", "text")):
        assert invoke(*args, env={"STAGECRAFT_OUTPUT": "json"}).stdout == SHOP_VALID


@pytest.mark.parametrize(("value", "quiet"), [("1", True), ("true", True), ("0", False)])
def test_quiet_from_variable(shop: Path, value: str, quiet: bool) -> None:
    assert invoke("validate", env={"STAGECRAFT_QUIET": value}).stdout == ("" if quiet else SHOP_VALID)


def test_verbose_from_variable_and_flag_beats_it(shop: Path, log_setup: list[dict]) -> None:
    invoke("validate", env={"STAGECRAFT_VERBOSE": "2"})
    assert log_setup[-1]["verbosity"] == 2
    invoke("-v", "validate", env={"STAGECRAFT_VERBOSE": "3"})
    assert log_setup[-1]["verbosity"] == 1


def test_dry_run_from_variable(tmp_path: Path) -> None:
    result = invoke("init", "--yes", "--dir", str(tmp_path), env={"STAGECRAFT_DRY_RUN": "1"})
    assert result.stdout.startswith("# yaml-language-server: $schema=.stagecraft/schema.json\n")
    assert list(tmp_path.iterdir()) == []


def test_debug_from_variable_shows_the_traceback(bad: Path, capsys, monkeypatch) -> None:
    monkeypatch.setenv("STAGECRAFT_DEBUG", "1")
    code, out, err = run_main(capsys, "validate")
    assert code == 3
    assert "Traceback (most recent call last)" in err
    assert err.endswith(BAD_STDERR)


# --- the error handler (in-process) ----------------------------------------------------


def test_config_error_exact_stderr_and_exit_code(bad: Path, capsys) -> None:
    assert run_main(capsys, "validate") == (3, "", BAD_STDERR)


def test_config_error_with_debug_has_a_traceback(bad: Path, capsys) -> None:
    code, out, err = run_main(capsys, "validate", "--debug")
    assert code == 3
    assert err.startswith("Traceback (most recent call last)")
    assert "stagecraft.errors.ConfigError" in err
    assert err.endswith(BAD_STDERR)


def test_config_error_as_json(bad: Path, capsys) -> None:
    code, out, err = run_main(capsys, "--output", "json", "validate")
    assert (code, err) == (3, BAD_STDERR)
    assert json.loads(out) == {
        "error": "ConfigError",
        "message": BAD_STDERR.splitlines()[0].removeprefix("error: ") + "\n"
                   + BAD_STDERR.splitlines()[1],
        "hint": "fix the file and run `stagecraft validate`",
        "exit_code": 3,
        "issues": [{"file": "stagecraft.yml", "line": 4, "column": 3, "path": "project.nmae",
                    "message": "unknown setting 'nmae'; did you mean 'name'?"}],
    }


def test_json_error_follows_the_command_line_over_the_variable(bad: Path, capsys, monkeypatch) -> None:
    # Regression: STAGECRAFT_OUTPUT=json used to win over --output text for errors.
    monkeypatch.setenv("STAGECRAFT_OUTPUT", "json")
    assert run_main(capsys, "validate", "--output", "text") == (3, "", BAD_STDERR)
    code, out, _ = run_main(capsys, "validate")
    assert json.loads(out)["exit_code"] == 3


def test_no_config_anywhere(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    code, out, err = run_main(capsys, "validate")
    assert code == 3
    assert err == (f"error: no stagecraft.yml in {tmp_path.resolve()} or any parent directory\n"
                   "hint: run `stagecraft init` to create one, or pass --config PATH\n")


def test_unknown_environment(shop: Path, capsys) -> None:
    assert run_main(capsys, "validate", "-e", "prod") == (3, "", (
        "error: environment 'prod' is not defined in stagecraft.yml\n"
        "hint: did you mean 'production'? environments: local, staging, production\n"))


def test_internal_error_is_reported_as_a_bug(shop: Path, capsys, monkeypatch) -> None:
    def broken(path):
        raise RuntimeError("boom")

    monkeypatch.setattr("stagecraft.config.load_config", broken)
    assert run_main(capsys, "validate") == (1, "", (
        "error: internal error: RuntimeError: boom\n"
        "hint: this is a bug in stagecraft; rerun with --debug and report the traceback\n"))
    code, _, err = run_main(capsys, "validate", "--debug")
    assert code == 1 and "Traceback (most recent call last)" in err and "RuntimeError: boom" in err


def test_ctrl_c_exits_130(shop: Path, capsys, monkeypatch) -> None:
    def interrupted(path):
        raise KeyboardInterrupt

    monkeypatch.setattr("stagecraft.config.load_config", interrupted)
    assert run_main(capsys, "validate") == (130, "", "\nerror: interrupted\n")


def test_click_usage_errors_exit_2(capsys) -> None:
    code, out, err = run_main(capsys, "validate", "--frobnicate")
    assert code == 2
    assert err.endswith("Error: No such option '--frobnicate'.\n")
    code, out, err = run_main(capsys, "frobnicate")
    assert code == 2
    assert err.endswith("Error: No such command 'frobnicate'.\n")


def test_success_exits_0(shop: Path, capsys) -> None:
    assert run_main(capsys, "validate") == (0, SHOP_VALID, "")


# --- the error handler (real processes) ------------------------------------------------


def test_process_config_error(bad: Path) -> None:
    proc = run_process("validate", cwd=bad.parent)
    assert (proc.returncode, proc.stdout, proc.stderr) == (3, "", BAD_STDERR)


@pytest.mark.parametrize("how", ["flag", "variable"])
def test_process_config_error_with_debug(bad: Path, how: str) -> None:
    args, env = (["--debug", "validate"], None) if how == "flag" else (["validate"], {"STAGECRAFT_DEBUG": "1"})
    proc = run_process(*args, env=env, cwd=bad.parent)
    assert proc.returncode == 3
    assert proc.stderr.startswith("Traceback (most recent call last)")
    assert proc.stderr.endswith(BAD_STDERR)


def test_process_config_error_as_json(bad: Path) -> None:
    proc = run_process("validate", "--output", "json", cwd=bad.parent)
    assert (proc.returncode, proc.stderr) == (3, BAD_STDERR)
    data = json.loads(proc.stdout)
    assert (data["error"], data["exit_code"], data["issues"][0]["line"]) == ("ConfigError", 3, 4)


def test_process_usage_errors(tmp_path: Path) -> None:
    proc = run_process("validate", "--frobnicate", cwd=tmp_path)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stderr.endswith("Error: No such option '--frobnicate'.\n")
    # stagecraft's own UsageError goes through the same handler as every error.
    proc = run_process("init", cwd=tmp_path)  # stdin is not a terminal
    assert (proc.returncode, proc.stdout) == (2, "")
    assert proc.stderr == ("error: init needs answers and there is no terminal to ask on\n"
                           "hint: pass --yes (with --name, --services, ... as needed)\n")
    assert list(tmp_path.iterdir()) == []


def test_process_internal_error(shop: Path, tmp_path: Path) -> None:
    # A bug simulated in a real process: sitecustomize breaks the loader at start-up.
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    (hooks / "sitecustomize.py").write_text(
        "import stagecraft.config\n"
        "def _broken(path):\n"
        "    raise ZeroDivisionError('simulated bug')\n"
        "stagecraft.config.load_config = _broken\n")
    env = {"PYTHONPATH": str(hooks)}
    proc = run_process("validate", env=env, cwd=shop.parent)
    assert (proc.returncode, proc.stdout) == (1, "")
    assert proc.stderr == (
        "error: internal error: ZeroDivisionError: simulated bug\n"
        "hint: this is a bug in stagecraft; rerun with --debug and report the traceback\n")
    proc = run_process("validate", "--debug", env=env, cwd=shop.parent)
    assert proc.returncode == 1
    assert "Traceback (most recent call last)" in proc.stderr
    assert proc.stderr.endswith("hint: this is a bug in stagecraft; rerun with --debug and "
                                "report the traceback\n")


def test_process_version_flag() -> None:
    proc = run_process("--version")
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, f"stagecraft {__version__}\n", "")


# --- config show -----------------------------------------------------------------------


def test_config_show_needs_an_environment_when_there_are_several(shop: Path) -> None:
    from stagecraft.errors import ConfigError

    with pytest.raises(ConfigError, match="^no environment chosen$"):
        invoke("config", "show")


def test_config_show_text_is_the_resolved_environment(shop: Path) -> None:
    text = invoke("config", "show", "-e", "local").stdout
    header, body = text.split("\n", 1)
    assert header == "# stagecraft.yml, environment local, overrides applied"
    data = yaml.safe_load(body)
    assert data == json.loads(invoke("config", "show", "-e", "local", "--output", "json").stdout)


def test_config_show_json_applies_overrides_and_never_resolves_secrets(shop: Path) -> None:
    local = json.loads(invoke("-e", "local", "--output", "json", "config", "show").stdout)
    prod = json.loads(invoke("config", "show", "-e", "production", "--output", "json").stdout)
    assert local["name"] == "local" and prod["name"] == "production"
    assert (local["services"]["api"]["replicas"], prod["services"]["api"]["replicas"]) == (1, 2)
    assert local["providers"]["cloud"] == {"kind": "local", "image": "debian-13"}
    assert prod["providers"]["cloud"]["token"] == "${secret:DO_TOKEN}"
    assert local["project"]["registry"]["password"] == "${secret:REGISTRY_PASSWORD}"
    assert local["services"]["web"]["routes"] == [{"host": "{domain}", "path": "/"}]
    assert prod["services"]["worker"]["from"] == "api"  # by alias, as users write it


def _sources(*args: str) -> dict[str, str]:
    data = json.loads(invoke("config", "show", "--sources", "--output", "json",
                             "-c", str(OVERRIDES), *args).stdout)
    return {row["path"]: row["source"] for row in data["settings"]}


def test_config_show_sources_json() -> None:
    staging = _sources("-e", "staging")
    f = str(OVERRIDES)
    assert staging["project.name"] == f"{f}:5:9"
    assert staging["providers.cloud.kind"] == f"{f}:7:18"  # same kind: merged, kind kept
    assert staging["providers.cloud.region"] == f"{f}:30:24 (environments.staging)"
    assert staging["providers.cloud.token"] == f"{f}:7:39"
    assert staging["providers.network.kind"] == f"{f}:31:24 (environments.staging)"
    assert staging["services.api.replicas"] == f"{f}:33:24 (environments.staging)"
    assert staging["services.api.env.LOG_LEVEL"] == f"{f}:33:45 (environments.staging)"
    assert staging["services.api.env.REGION"] == f"{f}:15:37"
    assert staging["hosts[0].name"] == f"{f}:38:17 (environments.staging)"
    assert staging["services.api.stop_grace"] == "default"
    assert staging["rollout.health_timeout"] == "default"
    assert staging["providers.backend.kind"] == "default"
    local = _sources("-e", "local")
    assert local["services.api.replicas"] == f"{f}:14:15"
    assert local["providers.cloud.kind"] == f"{f}:41:33 (environments.local)"
    assert "providers.cloud.region" not in local  # a new kind replaced the provider
    pattern = re.compile(rf"^(default|{re.escape(f)}:\d+:\d+( \(environments\.(staging|local)\))?)$")
    assert all(pattern.match(source) for source in [*staging.values(), *local.values()])


def test_config_show_sources_text(tmp_path: Path, monkeypatch) -> None:
    shutil.copy(OVERRIDES, tmp_path / "stagecraft.yml")
    monkeypatch.chdir(tmp_path)
    lines = invoke("config", "show", "--sources", "-e", "staging").stdout.splitlines()
    rows = {line.split()[0]: line for line in lines}
    assert re.fullmatch(r"project\.name +overlays  \[stagecraft\.yml:5:9\]", rows["project.name"])
    assert re.fullmatch(r"services\.api\.replicas +1  \[stagecraft\.yml:33:24 \(environments\.staging\)\]",
                        rows["services.api.replicas"])
    assert re.fullmatch(r"services\.api\.on +\[\"app\"\]  \[stagecraft\.yml:16:9\]", rows["services.api.on"])
    assert re.fullmatch(r"rollout\.batch +1  \[default\]", rows["rollout.batch"])


# --- schema ----------------------------------------------------------------------------


def test_schema_prints_the_json_schema() -> None:
    assert json.loads(invoke("schema").stdout) == config_json_schema()


def test_schema_write(tmp_path: Path) -> None:
    target = tmp_path / "out" / "schema.json"
    result = invoke("schema", "--write", str(target))
    assert (result.exit_code, result.stdout, result.stderr) == (0, "", f"wrote {target}\n")
    assert target.read_text() == json.dumps(config_json_schema(), indent=2) + "\n"
    quiet = invoke("schema", "--write", str(target), "-q")
    assert (quiet.stdout, quiet.stderr) == ("", "")


# --- completion ------------------------------------------------------------------------


@pytest.mark.parametrize(("shell", "marker"), [
    ("bash", "complete -o nosort -F _stagecraft_completion stagecraft"),
    ("zsh", "#compdef stagecraft"),
    ("fish", "complete --no-files --command stagecraft"),
])
def test_completion_scripts(shell: str, marker: str) -> None:
    script = invoke("completion", shell).stdout
    assert "_STAGECRAFT_COMPLETE" in script
    assert marker in script


def test_completion_rejects_other_shells() -> None:
    result = CliRunner().invoke(cli, ["completion", "tcsh"], prog_name="stagecraft")
    assert result.exit_code == 2


@pytest.mark.parametrize(("words", "cword", "expected"), [
    ("stagecraft val", "1", "plain,validate\n"),
    ("stagecraft status ", "2", "\n"),  # a plain command: no subcommands to offer
    ("stagecraft status --ou", "2", "plain,--output\n"),
])
def test_completion_protocol_completes_lazy_commands(words: str, cword: str, expected: str) -> None:
    result = invoke(env={"_STAGECRAFT_COMPLETE": "bash_complete", "COMP_WORDS": words,
                         "COMP_CWORD": cword})
    assert result.stdout == expected


# --- help ------------------------------------------------------------------------------


def test_help_lists_every_command() -> None:
    text = invoke("--help").stdout
    for name in ("completion", "config", "init", "schema", "status", "validate", "version"):
        assert re.search(rf"^  {name} ", text, re.MULTILINE), name
