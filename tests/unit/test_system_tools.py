"""Every program the project runs is in scripts/system-tools.txt, and setup installs it.

The programs are found in the code itself: in Python (stagecraft/, tests/, bench/),
the first word of an argv list handed to execs.run, subprocess.*, os.exec*,
run_logged or shutil.which, or built in a variable or function named for an argv;
in the shell scripts, every word in command position. A new `execs.run(["x", ...])`
without a line for x in the list fails here.
"""

from __future__ import annotations

import ast
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MANIFEST = ROOT / "scripts" / "system-tools.txt"

LAUNCHERS = {"run", "Popen", "check_output", "check_call", "call", "execvp", "execv",
             "run_logged", "which"}
_ARGV_NAME = re.compile(r"argv|cmd|command|words")
_PROGRAM = re.compile(r"^[a-z][a-z0-9.+_-]*$")

#: First words of argv lists that are not programs, and why.
NOT_PROGRAMS = {
    "run": "a docker subcommand: the local cloud's `docker run` argv is built without `docker`",
    "volume": "a docker subcommand (`docker volume create`), same as above",
    "no-such-tool-x": "tests of what happens when a program is missing",
    "stagecraft-no-such-tool": "tests of what happens when a program is missing",
}

SHELL_KEYWORDS = {"if", "then", "else", "elif", "do", "while", "until", "!", "time", "exec",
                  "nohup", "{", "}"}
SHELL_BUILTINS = set("fi for done case esac in function return exit set local export echo "
                     "printf read cd test [ [[ true false shift trap wait command eval source "
                     ". unset readonly declare break continue".split())


def manifest() -> dict[str, str]:
    """program -> Debian package (``-`` when none gives it)."""
    rows: dict[str, str] = {}
    for line in MANIFEST.read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        program, package, reason = line.split(None, 2)
        assert reason.strip(), f"{program}: say who needs it"
        assert program not in rows, f"{program} is listed twice"
        rows[program] = package
    return rows


def _first_program(node: ast.AST) -> str | None:
    if (isinstance(node, (ast.List, ast.Tuple)) and node.elts
            and isinstance(node.elts[0], ast.Constant) and isinstance(node.elts[0].value, str)
            and _PROGRAM.match(node.elts[0].value)):
        return node.elts[0].value
    return None


def python_programs(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    enclosing: dict[int, str] = {}
    for function in ast.walk(tree):
        if isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for node in ast.walk(function):
                enclosing.setdefault(id(node), function.name)
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and node.args:
            name = getattr(node.func, "attr", getattr(node.func, "id", None))
            first = node.args[0]
            if name == "which" and isinstance(first, ast.Constant):
                found.add(first.value)
            elif name in LAUNCHERS and (program := _first_program(first)):
                found.add(program)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            named = any(_ARGV_NAME.search(getattr(t, "id", getattr(t, "attr", "")) or "")
                        for t in targets)
            if named and node.value is not None and (program := _first_program(node.value)):
                found.add(program)
        elif (isinstance(node, ast.Return) and node.value is not None
              and _ARGV_NAME.search(enclosing.get(id(node), ""))
              and (program := _first_program(node.value))):
            found.add(program)
    return found


def shell_programs(text: str) -> set[str]:
    functions = set(re.findall(r"^\s*([A-Za-z_][\w-]*)\s*\(\)", text, re.M))
    found: set[str] = set()
    for line in re.sub(r"\\\n", " ", text).splitlines():
        if line.lstrip().startswith("#"):
            continue
        lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
        lexer.commenters = "#"
        lexer.wordchars += "$-./:=%{}@+,"
        try:
            tokens = list(lexer)
        except ValueError:  # a quote continued on the next line
            continue
        at_command = True
        for token in tokens:
            if token == "$" or all(c in "();|&" for c in token):
                at_command = True
                continue
            if not at_command or token in SHELL_KEYWORDS or re.match(r"^[A-Za-z_]\w*=", token):
                continue
            at_command = False
            name = token.rsplit("/", 1)[-1]
            if (name in SHELL_BUILTINS or name in functions or "$" in token
                    or not _PROGRAM.match(name)):
                continue
            found.add(name)
    return found


def programs_in_code() -> dict[str, list[str]]:
    """program -> files that run it."""
    where: dict[str, list[str]] = {}
    files = [p for d in ("stagecraft", "tests", "bench", "scripts") for p in (ROOT / d).rglob("*.py")]
    for path in sorted(files):
        for program in python_programs(path):
            where.setdefault(program, []).append(str(path.relative_to(ROOT)))
    for path in sorted((ROOT / "scripts").glob("*.sh")):
        for program in shell_programs(path.read_text()):
            where.setdefault(program, []).append(str(path.relative_to(ROOT)))
    return where


def test_the_scan_finds_programs_it_must_find() -> None:
    # If the scan went blind, the next test would pass for nothing.
    where = programs_in_code()
    for program in ("docker", "debootstrap", "ssh", "ssh-keygen", "git", "losetup", "tar",
                    "curl", "dockerd", "sed"):
        assert program in where, program
    assert shell_programs('x=$(curl -s "$u" | tail -n 1) && FOO=1 sudo_like arg\n'
                          'if ! command -v npm >/dev/null; then git init; fi\n') == {
        "curl", "tail", "sudo_like", "git"}


def test_every_program_the_code_runs_is_in_the_list() -> None:
    listed = manifest()
    unlisted = {program: files for program, files in programs_in_code().items()
                if program not in listed and program not in NOT_PROGRAMS}
    assert not unlisted, ("add these to scripts/system-tools.txt (program, Debian package, "
                          f"who needs it): {unlisted}")


def test_setup_installs_the_package_of_every_listed_program_that_is_missing(
        tmp_path: Path) -> None:
    # A PATH with nothing but python3 and the few programs setup.sh itself needs to
    # read the list: every listed program is then missing, so setup must name every
    # package of the list.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "python3").symlink_to(sys.executable)
    for program in ("sort", "dirname"):
        found = subprocess.run(["sh", "-c", f"command -v {program}"], capture_output=True,
                               text=True, check=True).stdout.strip()
        (bin_dir / program).symlink_to(found)
    env = {"PATH": str(bin_dir), "STAGECRAFT_SBIN_PATH": "", "HOME": str(tmp_path)}
    proc = subprocess.run(["/bin/bash", str(ROOT / "scripts" / "setup.sh"), "--missing-packages"],
                          capture_output=True, text=True, env=env, check=False, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    named = set(proc.stdout.split())
    wanted = {package for program, package in manifest().items()
              if package != "-" and program not in ("sort", "dirname")}
    assert wanted <= named, wanted - named


def test_after_make_setup_nothing_is_missing() -> None:
    # `make test` runs setup first; run pytest alone only after `make setup`.
    proc = subprocess.run(["bash", "scripts/setup.sh", "--missing-packages"], cwd=ROOT,
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    # docker.io is ensure-docker.sh's to install (`make test` runs it before pytest too).
    assert [p for p in proc.stdout.split() if p != "docker.io"] == [], (
        f"run `make setup`: {proc.stdout}")


def test_every_listed_package_exists_in_debian() -> None:
    if subprocess.run(["sh", "-c", "command -v apt-cache"], capture_output=True).returncode:
        pytest.skip("no apt-cache: not a Debian machine")
    packages = sorted({p for p in manifest().values() if p != "-"})
    proc = subprocess.run(["apt-cache", "show", "--no-all-versions", *packages],
                          capture_output=True, text=True, check=False)
    shown = set(re.findall(r"^Package: (\S+)$", proc.stdout, re.M))
    assert set(packages) <= shown, set(packages) - shown
