"""stagecraft.execs.run (spec/core/executil.md): output, failures, timeouts that leave no
child behind, secret masking everywhere, and line streaming."""

from __future__ import annotations

import logging
import os
import stat
import time
from pathlib import Path

import pytest

from stagecraft import log
from stagecraft.errors import CommandFailed, EnvironmentMissing, ExitCode
from stagecraft.execs import Completed, run
from stagecraft.redact import MASK


@pytest.fixture(autouse=True)
def fresh_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    """Secrets registered by a test stay in that test."""
    monkeypatch.setattr(log, "_known_secrets", [])
    monkeypatch.setattr(log, "_redactor", log.Redactor())


def process_alive(pid: int) -> bool:
    """True while ``pid`` runs; a zombie (dead, not yet reaped) counts as gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return False
    return fields[0] != "Z"


def wait_gone(pid: int, seconds: float = 5.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not process_alive(pid):
            return True
        time.sleep(0.05)
    return False


def test_success_returns_output_per_stream() -> None:
    result = run(["sh", "-c", "echo one; echo two; echo oops >&2"])
    assert isinstance(result, Completed)
    assert (result.returncode, result.ok) == (0, True)
    assert (result.stdout, result.stderr) == ("one\ntwo", "oops")
    assert result.argv == ("sh", "-c", "echo one; echo two; echo oops >&2")
    assert result.duration > 0


def test_cwd_env_and_input(tmp_path: Path) -> None:
    result = run(["sh", "-c", "pwd; echo \"$GREETING\"; cat"], cwd=tmp_path,
                 env={"PATH": os.environ["PATH"], "GREETING": "hi"}, input="from stdin\n")
    assert result.stdout.splitlines() == [str(tmp_path), "hi", "from stdin"]


def test_env_replaces_the_environment() -> None:
    result = run(["/usr/bin/env"], env={"ONLY": "this"})
    assert result.stdout == "ONLY=this"


def test_arguments_are_not_passed_through_a_shell() -> None:
    assert run(["echo", "$HOME; rm -rf /", "*"]).stdout == "$HOME; rm -rf / *"


def test_non_zero_exit_raises_command_failed() -> None:
    # One stream only: stdout and stderr are read by two threads, so the order of
    # lines across the two streams is not defined.
    with pytest.raises(CommandFailed) as caught:
        run(["sh", "-c", "echo first >&2; echo last >&2; exit 3"])
    error = caught.value
    assert error.message == "`sh -c 'echo first >&2; echo last >&2; exit 3'` exited with code 3: last"
    assert (error.returncode, error.exit_code) == (3, ExitCode.COMMAND)
    assert error.argv == ["sh", "-c", "echo first >&2; echo last >&2; exit 3"]
    assert error.output_tail == "first\nlast"
    assert error.hint is None
    assert error.to_dict()["returncode"] == 3


def test_failure_without_output_and_with_a_hint() -> None:
    with pytest.raises(CommandFailed) as caught:
        run(["false"], hint="is the thing running?")
    assert caught.value.message == "`false` exited with code 1"
    assert caught.value.hint == "is the thing running?"


def test_output_tail_keeps_the_last_20_lines() -> None:
    with pytest.raises(CommandFailed) as caught:
        run(["sh", "-c", "for i in $(seq 1 30); do echo line$i; done; exit 1"])
    assert caught.value.output_tail.splitlines() == [f"line{i}" for i in range(11, 31)]
    assert caught.value.message.endswith("exited with code 1: line30")


def test_check_false_returns_the_failure() -> None:
    result = run(["sh", "-c", "echo no; exit 4"], check=False)
    assert (result.returncode, result.ok, result.stdout) == (4, False, "no")


def _child_pid_and_timeout(argv: list[str], timeout: float) -> tuple[int, CommandFailed, float]:
    lines: list[str] = []
    started = time.monotonic()
    with pytest.raises(CommandFailed) as caught:
        run(argv, timeout=timeout, on_line=lambda stream, line: lines.append(line))
    return int(lines[0]), caught.value, time.monotonic() - started


def test_timeout_kills_the_whole_process_group() -> None:
    # The shell starts `sleep` in the background, prints its pid and waits for it.
    pid, error, took = _child_pid_and_timeout(["sh", "-c", "sleep 60 & echo $!; wait"], 0.5)
    assert error.message == "`sh -c 'sleep 60 & echo $!; wait'` timed out after 0.5s"
    assert error.returncode is None
    assert error.hint == "the command may be stuck; raise the timeout or check the target"
    assert error.output_tail == str(pid)
    assert took < 5
    assert wait_gone(pid), f"child sleep {pid} survived the timeout"


def test_timeout_kills_a_group_that_ignores_sigterm() -> None:
    # SIGTERM is ignored (and inherited by the child): SIGKILL follows after 3 s.
    argv = ["sh", "-c", "trap '' TERM; sleep 60 & echo $!; wait; wait"]
    pid, error, took = _child_pid_and_timeout(argv, 0.3)
    assert "timed out after 0.3s" in error.message
    assert 3 <= took < 8
    assert wait_gone(pid), f"child sleep {pid} survived SIGKILL"


def test_timeout_applies_even_with_check_false() -> None:
    with pytest.raises(CommandFailed, match="timed out after 0.2s"):
        run(["sleep", "30"], timeout=0.2, check=False)


def test_secrets_are_masked_in_output_errors_and_argv() -> None:
    secret = "hunter2-s3cr3t"
    seen: list[tuple[str, str]] = []
    argv = ["sh", "-c", f"echo token={secret}; echo {secret} >&2; exit 5", secret]
    with pytest.raises(CommandFailed) as caught:
        run(argv, secrets=[secret], on_line=lambda s, l: seen.append((s, l)))
    error = caught.value
    dumped = repr(error.to_dict()) + error.message + repr(seen)
    assert secret not in dumped
    assert error.argv == ["sh", "-c", f"echo token={MASK}; echo {MASK} >&2; exit 5", MASK]
    assert error.message.startswith(f"`sh -c 'echo token={MASK}; echo {MASK} >&2; exit 5' {MASK}`")
    # Two streams are read concurrently: their interleaving in the tail is not fixed.
    assert sorted(error.output_tail.splitlines()) == sorted([f"token={MASK}", MASK])
    assert sorted(seen) == sorted([("stdout", f"token={MASK}"), ("stderr", MASK)])


def test_secrets_are_masked_in_the_result() -> None:
    secret = "pa55-word"
    result = run(["echo", secret, f"x{secret}x"], secrets=[secret, ""])
    assert result.stdout == f"{MASK} x{MASK}x"
    # Regression: the result's argv used to keep the secret.
    assert result.argv == ("echo", MASK, f"x{MASK}x")


def test_secrets_registered_with_the_logger_are_masked_too() -> None:
    log.add_secrets("registered-value")
    result = run(["echo", "registered-value"], check=False)
    assert result.stdout == MASK
    with pytest.raises(CommandFailed) as caught:
        run(["sh", "-c", "echo registered-value; exit 1"], secrets=["other"])
    assert "registered-value" not in caught.value.message + caught.value.output_tail


def test_missing_command_is_environment_missing() -> None:
    with pytest.raises(EnvironmentMissing) as caught:
        run(["stagecraft-no-such-tool", "--version"])
    assert caught.value.message == "command not found: stagecraft-no-such-tool"
    assert caught.value.hint == "install stagecraft-no-such-tool or put it on PATH"
    assert caught.value.exit_code == ExitCode.ENVIRONMENT == 10
    with pytest.raises(EnvironmentMissing) as caught:
        run(["/opt/none/docker"], hint="install Docker Engine")
    assert caught.value.hint == "install Docker Engine"


def test_non_executable_program_is_environment_missing(tmp_path: Path) -> None:
    if os.geteuid() == 0:
        pytest.skip("root may execute anything")
    tool = tmp_path / "tool"
    tool.write_text("#!/bin/sh\necho hi\n")
    tool.chmod(stat.S_IRUSR)
    with pytest.raises(EnvironmentMissing, match=f"^cannot execute {tool}: permission denied$"):
        run([str(tool)])


def test_directory_as_program_is_environment_missing(tmp_path: Path) -> None:
    with pytest.raises(EnvironmentMissing, match=f"^cannot execute {tmp_path}: permission denied$"):
        run([str(tmp_path)])


def test_on_line_gets_lines_in_order_per_stream() -> None:
    seen: list[tuple[str, str]] = []
    script = "for i in $(seq 1 200); do echo out$i; echo err$i >&2; done"
    run(["sh", "-c", script], on_line=lambda stream, line: seen.append((stream, line)))
    assert [l for s, l in seen if s == "stdout"] == [f"out{i}" for i in range(1, 201)]
    assert [l for s, l in seen if s == "stderr"] == [f"err{i}" for i in range(1, 201)]


def test_on_line_streams_while_the_command_runs(tmp_path: Path) -> None:
    # The command waits for a file that only the callback creates: if lines were
    # delivered at exit, this would deadlock into the timeout.
    flag = tmp_path / "seen"
    script = f"echo ready; while [ ! -e {flag} ]; do sleep 0.02; done; echo done"

    def on_line(stream: str, line: str) -> None:
        if line == "ready":
            flag.touch()

    result = run(["sh", "-c", script], timeout=10, on_line=on_line)
    assert result.stdout == "ready\ndone"


def test_without_on_line_lines_go_to_the_debug_log() -> None:
    records: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record.getMessage())

    logger = logging.getLogger("stagecraft.exec")
    handler, level = Keep(level=logging.DEBUG), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        run(["sh", "-c", "echo visible; echo hidden-secret >&2"], secrets=["hidden-secret"])
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    assert "stdout: visible" in records
    assert f"stderr: {MASK}" in records
    assert not any("hidden-secret" in r for r in records)
