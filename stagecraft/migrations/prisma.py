"""The ``prisma`` engine: ``prisma migrate deploy`` in a one-off container of the release
image, ``prisma migrate status`` to see what is pending. See spec/migrations/prisma.md.

One shell script (fed to ``sh -s`` on stdin) runs in the container:

- checks that the image has node, npx and the ``prisma`` package (from the app's
  package.json, in the image's working directory);
- ``status``: runs ``npx --no-install prisma migrate status [--schema PATH]``, then
  lists the migrations folder that Prisma named ("N migrations found in DIR");
- ``apply``: runs ``prisma migrate deploy`` and lists the folder it names; only
  when deploy fails does it run ``migrate status`` too, to report what is left
  (each Prisma run costs seconds of CPU: the CLI and its WebAssembly engine load).

Prisma reads its own configuration (prisma.config.ts, package.json#prisma, or
prisma/schema.prisma); ``path`` in stagecraft.yml, when set, is passed as
``--schema`` (a schema file, or a folder of .prisma files); the migrations are in
the ``migrations`` folder beside it. ``migrate status`` exits 1 when migrations are
pending: that is a state, not an error, and the engine reads it from the text.
"""

from __future__ import annotations

import json
import re
from typing import Any, ClassVar

from stagecraft.errors import MigrationFailed
from stagecraft.migrations import scripted
from stagecraft.migrations.scripted import in_image
from stagecraft.migrations.base import (
    Completed,
    ContainerCommand,
    ContainerRunner,
    Migration,
    PhaseSpec,
    Report,
)

#: Every line the script itself prints starts with this; the rest is Prisma's.
MARK = "@@stagecraft-prisma "
EXIT_MISSING = 127
DOCKER_RUN_FAILED = 125

IMAGE_HINT = ("add prisma to the app's package.json devDependencies and keep it in the "
              "image: `npm ci` (not `--omit=dev`) in the Dockerfile's WORKDIR, with Node.js "
              "and npm installed (Debian: apt-get install nodejs npm); where Prisma cannot "
              "download its engine binaries, configure a driver adapter (see "
              "examples/migrations/prisma)")

# Whether the package (argument 1) can be required from the working directory: its
# package.json first (some packages export no main entry), then the package itself.
HAS_PACKAGE = (
    "HAS_PACKAGE='const n = process.argv[1]; "
    "for (const s of [n + \"/package.json\", n]) { try { "
    "require.resolve(s, {paths: [process.cwd()]}); process.exit(0); } catch (e) {} } "
    "process.exit(1);'"
)

SCRIPT = f"""set -u
{HAS_PACKAGE}
mode="$1"
shift
mark() {{ printf '\\n{MARK}%s\\n' "$1"; }}
for tool in node npx; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    mark '{{"missing": "'"$tool"'"}}'
    exit {EXIT_MISSING}
  fi
done
if ! node -e "$HAS_PACKAGE" prisma >/dev/null 2>&1; then
  mark '{{"missing": "prisma"}}'
  exit {EXIT_MISSING}
fi
# The migrations folder Prisma named ("N migrations found in DIR"), one mark each.
list_migrations() {{
  dir=$(printf '%s\\n' "$1" \
    | sed -n 's/^[0-9][0-9]* migrations\\{{0,1\\}} found in \\(.*\\)$/\\1/p' | tail -n 1)
  if [ -n "$dir" ] && [ -d "$dir" ]; then
    for found in "$dir"/*/; do
      if [ -f "${{found}}migration.sql" ]; then
        mark '{{"migration": "'"$(basename "$found")"'"}}'
      fi
    done
  fi
}}
rc=0
if [ "$mode" = apply ]; then
  out=$(npx --no-install prisma migrate deploy "$@" 2>&1)
  rc=$?
  printf '%s\\n' "$out"
  mark '{{"step": "deploy", "exit": '"$rc"'}}'
  if [ "$rc" -eq 0 ]; then
    # deploy applies every pending migration or fails: no status run needed.
    list_migrations "$out"
    exit 0
  fi
fi
out=$(npx --no-install prisma migrate status "$@" 2>&1)
status=$?
printf '%s\\n' "$out"
mark '{{"step": "status", "exit": '"$status"'}}'
list_migrations "$out"
exit $rc
"""

#: Plain variables for the container: no update checks (they would reach the internet)
#: and no colours.
ENV = {"CHECKPOINT_DISABLE": "1", "PRISMA_HIDE_UPDATE_MESSAGE": "1",
       "NPM_CONFIG_UPDATE_NOTIFIER": "false", "NO_COLOR": "1"}

_PENDING = re.compile(r"^Following migrations? have not yet been applied:\s*$")
_FAILED = re.compile(r"^Following migrations? have failed:\s*$")
_TREE = re.compile(r"└─\s*([^/\s]+)/\s*$")  # "  └─ 20240101000000_init/" in deploy's tree
_ERROR = re.compile(r"^Error:\s*(.*)$")
_DRIFT = "migrations table from your database are different"
_NAME = re.compile(r"^[^\s/]+$")


def parse_marks(stdout: str) -> list[dict[str, Any]]:
    """The JSON objects the script printed (MARK lines), in order."""
    return scripted.parse_marks(stdout, MARK)


def names_after(text: str, heading: re.Pattern[str]) -> list[str]:
    """The names listed one per line after a ``heading`` line of ``migrate status``, up
    to the first blank line."""
    names: list[str] = []
    lines = text.splitlines()
    for index, line in enumerate(lines):
        if not heading.match(line.strip()):
            continue
        for item in lines[index + 1:]:
            item = item.strip()
            if not item or not _NAME.match(item):
                break
            names.append(item)
    return names


def deployed_names(text: str) -> list[str]:
    """The migrations ``migrate deploy`` says it applied (its tree of folders)."""
    return [m.group(1) for line in text.splitlines() if (m := _TREE.search(line))]


_CODE = re.compile(r"^P\d{4}$")  # a Prisma error code alone on its line
_BACKTRACE = re.compile(r"^\d+:\s")  # "0: sql_schema_connector::..." after an error


def first_error(text: str) -> str | None:
    """Prisma's ``Error: ...`` line with the lines that explain it, up to a blank line
    or the schema engine's backtrace."""
    lines = text.splitlines()
    for index, line in enumerate(lines):
        match = _ERROR.match(line.strip())
        if not match:
            continue
        words = [match.group(1).strip()]
        for item in lines[index + 1:index + 12]:
            item = item.strip()
            if not item and _CODE.match(" ".join(words)):
                continue  # "Error: P3005", a blank line, then what it means
            if not item or _BACKTRACE.match(item) or MARK.strip() in item:
                break
            words.append(item)
        return " ".join(w for w in words if w)
    return None


def failed_migration(text: str) -> str | None:
    """The migration a failed ``migrate deploy`` names: ``Migration name: X`` (native
    schema engine) or ``migration_name="X"`` (its backtrace, WebAssembly engine)."""
    match = (re.search(r"^Migration name:\s*(\S+)", text, re.MULTILINE)
             or re.search(r'migration_name="([^"]+)"', text))
    return match.group(1) if match else None


def database_error(text: str) -> str | None:
    """The database's own message in a failed ``migrate deploy``."""
    match = (re.search(r"^Database error:\s*\n(.+)$", text, re.MULTILINE)
             or re.search(r"(ERROR:\s.+)$", text, re.MULTILINE))
    return match.group(1).strip() if match else None


def output_of(done: Completed) -> str:
    """stdout then stderr without the script's JSON lines and blank lines."""
    stdout = "\n".join(line for line in done.stdout.splitlines() if MARK not in line)
    parts = ["\n".join(line.rstrip() for line in stdout.splitlines() if line.strip()),
             done.stderr.strip()]
    return "\n".join(p for p in parts if p)


def _section(stdout: str, step: str) -> str:
    """The text Prisma printed for ``step`` (``deploy`` or ``status``): what comes
    before that step's mark and after the previous one."""
    current: list[str] = []
    for line in stdout.splitlines():
        at = line.find(MARK)
        if at < 0:
            current.append(line)
            continue
        current.append(line[:at])
        try:
            value = json.loads(line[at + len(MARK):])
        except ValueError:
            continue
        if isinstance(value, dict) and value.get("step") == step:
            return "\n".join(current)
        if isinstance(value, dict) and "step" in value:
            current = []
    return ""


class PrismaMigrator:
    """Prisma Migrate's migrations: the ``migrations`` folder beside the schema that
    ``spec.path`` names (inside the image, relative to its working directory), or the
    one Prisma's own configuration finds when the phase has no path."""

    engine: ClassVar[str] = "prisma"
    can_down: ClassVar[bool] = False

    def command(self, spec: PhaseSpec, mode: str) -> ContainerCommand:
        """The container command of ``mode`` (``status`` or ``apply``)."""
        if mode not in ("status", "apply"):
            raise ValueError(f"unknown mode {mode!r}")
        schema = ("--schema", spec.path) if spec.path else ()
        return ContainerCommand(argv=("sh", "-s", "--", mode, *schema), stdin=SCRIPT,
                                env=dict(ENV))

    def pending(self, spec: PhaseSpec, runner: ContainerRunner, *, timeout: float) -> Report:
        done = runner.run(self.command(spec, "status"), timeout=timeout)
        return self.report(spec, done, mode="status", image=getattr(runner, "image", None))

    def apply(self, spec: PhaseSpec, runner: ContainerRunner, *, timeout: float) -> Report:
        done = runner.run(self.command(spec, "apply"), timeout=timeout)
        return self.report(spec, done, mode="apply", image=getattr(runner, "image", None))

    def report(self, spec: PhaseSpec, done: Completed, *, mode: str,
               image: str | None = None) -> Report:
        """The Report of a finished run (``image``: the image it ran in, when the runner
        knows); MigrationFailed when it failed."""
        marks = parse_marks(done.stdout)
        output = output_of(done)
        where = f"{spec.phase}-deploy prisma migrations ({spec.path or 'prisma defaults'})"

        def error(message: str, hint: str) -> MigrationFailed:
            return MigrationFailed(f"{where}: {message}", output=output,
                                   output_tail=output[-4000:], returncode=done.returncode,
                                   hint=hint)

        missing = next((m["missing"] for m in marks if "missing" in m), None)
        if missing is not None:
            needs = "Node.js" if missing == "node" else missing
            raise error(f"engine prisma needs {needs} in {in_image(image)}, and `{missing}` is "
                        f"not there (looked from the image's working directory)", IMAGE_HINT)
        steps = {m["step"]: m.get("exit") for m in marks if "step" in m}
        deployed = mode == "apply" and steps.get("deploy") == 0
        if "status" not in steps and not deployed:
            if done.returncode == DOCKER_RUN_FAILED:
                raise error(f"docker could not start the migration container: "
                            f"{done.stderr.strip()[-500:]}",
                            "check that the image exists where migrations run")
            raise error(f"the engine's script ended ({done.returncode}) before Prisma "
                        f"reported the migrations' status", "read the output for the cause")

        status_text = _section(done.stdout, "status")
        pending = names_after(status_text, _PENDING)
        failed = names_after(status_text, _FAILED)
        applied_now: tuple[str, ...] = ()
        if mode == "apply":
            deploy_text = _section(done.stdout, "deploy")
            applied_now = tuple(deployed_names(deploy_text))
            if steps.get("deploy") != 0:
                raise self.deploy_failure(deploy_text, steps.get("deploy"), pending, failed,
                                          error)
        if failed:
            raise error(f"migration {', '.join(failed)} failed earlier and is recorded as "
                        f"failed in _prisma_migrations; Prisma applies nothing until it is "
                        f"resolved",
                        "repair the database by hand, then run `prisma migrate resolve "
                        "--rolled-back NAME` (or `--applied NAME`) in the image, and deploy "
                        "again")
        if steps.get("status", 0) != 0:
            problem = first_error(status_text)
            if _DRIFT in status_text:
                raise error("the database has migrations that the image's migrations "
                            "folder lacks (Prisma: the local history and the database's "
                            "migrations table differ)",
                            "deploy an image whose migrations folder contains every applied "
                            "migration; never delete or rename an applied migration")
            if problem is not None or not pending:
                raise error(f"prisma migrate status failed (exit {steps['status']}): "
                            f"{problem or 'see the output'}",
                            "check the DATABASE_URL secret, that the database is reachable "
                            "from the migration container, and Prisma's configuration in "
                            "the image (schema, prisma.config.ts)")
        if mode == "apply" and pending:
            raise error(f"prisma migrate deploy succeeded but left {', '.join(pending)} "
                        f"pending", "read the output above")

        listed = [m["migration"] for m in marks if isinstance(m.get("migration"), str)]
        names = sorted(set(listed) | set(pending) | set(applied_now))
        migrations = tuple(Migration(name=name, applied=name not in pending) for name in names)
        return Report(engine=self.engine, phase=spec.phase, migrations=migrations,
                      applied_now=applied_now, output=output)

    @staticmethod
    def deploy_failure(text: str, code: Any, pending: list[str], failed: list[str],
                       error) -> MigrationFailed:
        """The MigrationFailed of a ``migrate deploy`` that exited non-zero; ``pending``
        and ``failed`` are what ``migrate status`` said afterwards."""
        name = failed_migration(text)
        state = "".join([f"; recorded as failed: {', '.join(failed)}" if failed else "",
                         f"; still pending: {', '.join(pending)}" if pending else ""])
        if name is not None:
            cause = database_error(text) or first_error(text) or "see the output"
            return error(f"migration {name} failed: {cause}{state}",
                         "Prisma recorded it as failed: repair the database (statements "
                         "before the failing one may have run), then run `prisma migrate "
                         f"resolve --rolled-back {name}` in the image, fix the migration "
                         "and deploy again")
        problem = first_error(text) or "see the output"
        hint = ("check the DATABASE_URL secret, that the database is reachable from the "
                "migration container, and Prisma's configuration in the image")
        if "P3005" in problem:
            hint = ("the database already has tables but no Prisma history: baseline it "
                    "(`prisma migrate resolve --applied NAME` for each migration it "
                    "already has), then deploy again")
        return error(f"prisma migrate deploy failed (exit {code}): {problem}{state}", hint)
