"""The ``drizzle`` engine: drizzle-kit's SQL migrations, applied by ``drizzle-kit migrate``
in a one-off container of the release image. See spec/migrations/drizzle.md.

One shell script (fed to ``sh -s`` on stdin) does all the work in the container:

- checks that the image has node, npx and drizzle-kit (installed from the app's
  package.json in its working directory);
- prints a *snapshot* as one JSON line: the migrations folder's journal
  (``meta/_journal.json``, each entry with the sha256 of its SQL file, as drizzle
  computes it) and the rows of drizzle's ``drizzle.__drizzle_migrations`` table
  (``__drizzle_migrations_post`` for the post-deploy phase), read
  with the app's own PostgreSQL driver (``pg``, else ``postgres``);
- for ``apply``: writes a drizzle config of its own in a temporary directory (dialect
  postgresql, ``out`` = the phase's path, the URL from ``$DATABASE_URL``), runs
  ``npx --no-install drizzle-kit migrate --config`` with it, and prints a second
  snapshot. The image's own drizzle.config.* is not used: stagecraft.yml's ``path``
  says where the migrations are, and the URL never sits in a file.

The engine compares the snapshots the way drizzle-kit decides: a journal entry is
applied when its ``when`` is not later than the newest ``created_at`` in the table.
"""

from __future__ import annotations

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

#: drizzle-kit's default migrations folder (``out``), used when the phase has no path.
DEFAULT_PATH = "drizzle"
#: drizzle-kit's defaults for PostgreSQL; the config the engine writes keeps them.
MIGRATIONS_SCHEMA = "drizzle"
MIGRATIONS_TABLE = "__drizzle_migrations"
#: Tables by phase. drizzle-kit decides what is applied from the newest row of its
#: table, so two folders sharing one table would hide each other's migrations: the
#: pre-deploy phase keeps drizzle-kit's default (what `drizzle-kit migrate` on a
#: developer's machine uses too), the post-deploy phase has its own.
TABLES = {"pre": MIGRATIONS_TABLE, "post": f"{MIGRATIONS_TABLE}_post"}

#: Every line the script itself prints starts with this; the rest is drizzle-kit's.
MARK = "@@stagecraft-drizzle "

#: Exit codes of the script: something the image lacks / the snapshot failed.
EXIT_MISSING, EXIT_SNAPSHOT = 127, 3
DOCKER_RUN_FAILED = 125

IMAGE_HINT = ("add drizzle-kit (and drizzle-orm and pg) to the app's package.json "
              "devDependencies and keep them in the image: `npm ci` (not `--omit=dev`) in "
              "the Dockerfile's WORKDIR, with Node.js and npm installed (Debian: apt-get "
              "install nodejs npm)")

# Reads the journal and the migrations table; prints MARK + one JSON object. Runs in
# the image's working directory, so require() finds the app's node_modules.
SNAPSHOT_JS = r"""
const fs = require("fs"), path = require("path"), crypto = require("crypto");
const [out, stage] = process.argv.slice(2);
const MARK = "@@stagecraft-drizzle ";
const TABLE_NAME = process.env.STAGECRAFT_DRIZZLE_TABLE || "__drizzle_migrations";
const TABLE = `"drizzle"."${TABLE_NAME}"`;
function emit(value) { process.stdout.write(MARK + JSON.stringify(value) + "\n"); }
function fail(kind, message) {
  emit({ error: kind, stage, message: String(message) });
  process.exit(3);
}
function load(name) {
  try { return require(require.resolve(name, { paths: [process.cwd()] })); }
  catch (e) { return null; }
}
// One connection through the app's driver: query(text) -> rows.
async function connect(url) {
  const pg = load("pg");
  if (pg) {
    const client = new pg.Client({ connectionString: url });
    await client.connect();
    return { query: async (text) => (await client.query(text)).rows, end: () => client.end() };
  }
  const postgres = load("postgres");
  if (postgres) {
    const sql = postgres(url, { max: 1, onnotice: () => {} });
    return { query: (text) => sql.unsafe(text), end: () => sql.end() };
  }
  fail("driver-missing", "neither `pg` nor `postgres` can be required from " + process.cwd());
}
(async () => {
  const journalPath = path.join(out, "meta", "_journal.json");
  if (!fs.existsSync(journalPath)) fail("journal-missing", `no ${journalPath} in ${process.cwd()}`);
  let journal;
  try { journal = JSON.parse(fs.readFileSync(journalPath, "utf8")); }
  catch (e) { fail("journal-invalid", `${journalPath}: ${e.message}`); }
  const entries = [], texts = {};
  for (const entry of journal.entries || []) {
    const file = path.join(out, `${entry.tag}.sql`);
    let sql;
    try { sql = fs.readFileSync(file).toString(); }
    catch (e) { fail("file-missing", `${file} (journal entry ${entry.tag}): ${e.message}`); }
    texts[entry.tag] = sql;
    entries.push({ tag: entry.tag, when: Number(entry.when),
                   hash: crypto.createHash("sha256").update(sql).digest("hex") });
  }
  const url = process.env.DATABASE_URL;
  if (!url) fail("database", "DATABASE_URL is not set in the container");
  let db;
  try { db = await connect(url); } catch (e) { fail("database", e.message || e); }
  let rows = [], table = false;
  try {
    const found = await db.query(`SELECT to_regclass('${TABLE}') IS NOT NULL AS present`);
    table = found[0].present;
    if (table) {
      rows = await db.query(
        `SELECT hash, created_at::text AS created_at FROM ${TABLE} ORDER BY created_at, id`);
    }
  } catch (e) { await db.end(); fail("database", e.message || e); }
  const applied = rows.map((r) => ({
    hash: r.hash, created_at: r.created_at === null ? null : Number(r.created_at) }));
  if (stage !== "diagnose") {
    await db.end();
    emit({ stage, entries, table, applied });
    return;
  }
  // drizzle-kit migrate exits 1 without saying why. Replay what it would have applied,
  // statement by statement, in one transaction that is always rolled back (drizzle-kit
  // applies them in one transaction too), and report the first statement that fails.
  const stamps = applied.map((r) => r.created_at).filter((v) => v !== null);
  const newest = stamps.length ? Math.max(...stamps) : null;
  const result = { stage, failed: null };
  try {
    await db.query("BEGIN");
    outer: for (const entry of entries) {
      if (newest !== null && entry.when <= newest) continue;
      for (const statement of texts[entry.tag].split("--> statement-breakpoint")) {
        if (!statement.trim()) continue;
        try { await db.query(statement); }
        catch (e) {
          Object.assign(result, { failed: entry.tag, message: e.message, code: e.code || null,
                                  statement: statement.trim().slice(0, 400) });
          break outer;
        }
      }
    }
  } finally {
    try { await db.query("ROLLBACK"); } catch (e) { /* the connection is gone: nothing kept */ }
    await db.end();
  }
  emit(result);
})().catch((e) => fail("internal", e.stack || e));
"""

CONFIG_JS = f"""export default {{
  dialect: "postgresql",
  out: process.env.STAGECRAFT_DRIZZLE_OUT,
  dbCredentials: {{ url: process.env.DATABASE_URL }},
  migrations: {{
    schema: "{MIGRATIONS_SCHEMA}",
    table: process.env.STAGECRAFT_DRIZZLE_TABLE || "{MIGRATIONS_TABLE}",
  }},
}};
"""

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
STAGECRAFT_DRIZZLE_OUT="$2"
export STAGECRAFT_DRIZZLE_OUT
mark() {{ printf '{MARK}%s\\n' "$1"; }}
for tool in node npx; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    mark '{{"missing": "'"$tool"'"}}'
    exit {EXIT_MISSING}
  fi
done
if ! node -e "$HAS_PACKAGE" drizzle-kit >/dev/null 2>&1; then
  mark '{{"missing": "drizzle-kit"}}'
  exit {EXIT_MISSING}
fi
snapshot() {{
node - "$STAGECRAFT_DRIZZLE_OUT" "$1" <<'STAGECRAFT_JS'
{SNAPSHOT_JS}
STAGECRAFT_JS
}}
snapshot before || exit $?
[ "$mode" = apply ] || exit 0
dir=$(mktemp -d) || exit 1
trap 'rm -rf "$dir"' EXIT
cat > "$dir/drizzle.config.mjs" <<'STAGECRAFT_CONFIG'
{CONFIG_JS}STAGECRAFT_CONFIG
npx --no-install drizzle-kit migrate --config "$dir/drizzle.config.mjs"
rc=$?
echo  # drizzle-kit's last line has no newline
mark '{{"drizzle_kit_exit": '"$rc"'}}'
if [ "$rc" -ne 0 ]; then
  snapshot diagnose
fi
snapshot after || exit $?
exit $rc
"""

#: Plain variables for the container: no update checks or colours from npm.
ENV = {"NPM_CONFIG_UPDATE_NOTIFIER": "false", "NO_COLOR": "1", "FORCE_COLOR": "0"}


def parse_marks(stdout: str) -> list[dict[str, Any]]:
    """The JSON objects the script printed (MARK lines), in order."""
    return scripted.parse_marks(stdout, MARK)


def migrations_of(snapshot: dict[str, Any]) -> tuple[tuple[Migration, ...], list[str]]:
    """Every journal entry with drizzle-kit's view of whether it is applied, and the
    tags that look applied (older than the newest row) but whose hash is not in the
    table: edited after they were applied, or added out of order."""
    rows = snapshot.get("applied") or []
    hashes = {row.get("hash") for row in rows}
    stamps = [row["created_at"] for row in rows if row.get("created_at") is not None]
    newest = max(stamps) if stamps else None
    migrations, suspicious = [], []
    for entry in snapshot.get("entries") or []:
        applied = newest is not None and entry["when"] <= newest
        if applied and entry["hash"] not in hashes:
            suspicious.append(entry["tag"])
        migrations.append(Migration(name=entry["tag"], applied=applied, checksum=entry["hash"]))
    return tuple(migrations), suspicious


# drizzle-kit's spinner redraws its line: "erase line, column 1", then the new text.
_REDRAW = re.compile(r"\x1b\[2K\x1b\[1G")
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def plain(text: str) -> str:
    """``text`` as a terminal would end up showing it: each redrawn line only in its
    last state, no colour codes, no blank lines."""
    lines = (_ANSI.sub("", _REDRAW.split(line)[-1]).rstrip() for line in text.splitlines())
    return "\n".join(line for line in lines if line)


def diagnosis(marks: list[dict[str, Any]]) -> str:
    """What the replay after a failed ``drizzle-kit migrate`` found, as a clause."""
    found = next((m for m in marks if m.get("stage") == "diagnose"), None)
    if found is None:
        return ""
    if "error" in found:
        return f" (the engine could not replay it: {found.get('message', '')})"
    if not found.get("failed"):
        return " (replayed in a rolled-back transaction, every pending statement ran: " \
               "the failure lies elsewhere, see the output)"
    code = f" [SQLSTATE {found['code']}]" if found.get("code") else ""
    statement = " ".join(str(found.get("statement", "")).split()).rstrip(";")
    return (f": {found['failed']} fails with: {found.get('message', '')}{code}; "
            f"statement: {statement[:200]}")


def output_of(done: Completed) -> str:
    """stdout then stderr, as plain text, without the script's own JSON lines (they
    hold the journal, not news for a person)."""
    stdout = "\n".join(line.split(MARK, 1)[0] for line in done.stdout.splitlines())
    parts = [plain(stdout), plain(done.stderr)]
    return "\n".join(p for p in parts if p)


class DrizzleMigrator:
    """drizzle-kit migrations in ``spec.path`` (the ``out`` folder, inside the image,
    relative to its working directory; default ``drizzle``)."""

    engine: ClassVar[str] = "drizzle"
    can_down: ClassVar[bool] = False

    def path(self, spec: PhaseSpec) -> str:
        return spec.path or DEFAULT_PATH

    def command(self, spec: PhaseSpec, mode: str) -> ContainerCommand:
        """The container command of ``mode`` (``status`` or ``apply``)."""
        if mode not in ("status", "apply"):
            raise ValueError(f"unknown mode {mode!r}")
        return ContainerCommand(argv=("sh", "-s", "--", mode, self.path(spec)), stdin=SCRIPT,
                                env={**ENV, "STAGECRAFT_DRIZZLE_TABLE": TABLES[spec.phase]})

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
        where = f"{spec.phase}-deploy drizzle migrations ({self.path(spec)})"

        def error(message: str, hint: str) -> MigrationFailed:
            return MigrationFailed(f"{where}: {message}", output=output,
                                   output_tail=output[-4000:], returncode=done.returncode,
                                   hint=hint)

        missing = next((m["missing"] for m in marks if "missing" in m), None)
        if missing is not None:
            needs = "Node.js" if missing == "node" else missing
            raise error(f"engine drizzle needs {needs} in {in_image(image)}, and `{missing}` is "
                        f"not there (looked from the image's working directory)", IMAGE_HINT)
        problem = next((m for m in marks if "error" in m and m.get("stage") != "diagnose"),
                       None)
        if problem is not None:
            raise self.snapshot_error(problem, error, spec)
        snapshots = {m["stage"]: m for m in marks if "entries" in m and "stage" in m}
        before = snapshots.get("before")
        if before is None:
            if done.returncode == DOCKER_RUN_FAILED:
                raise error(f"docker could not start the migration container: "
                            f"{done.stderr.strip()[-500:]}",
                            "check that the image exists where migrations run")
            raise error(f"the engine's script ended ({done.returncode}) before reading the "
                        f"migrations", "read the output above; the image needs a POSIX sh")
        migrations, suspicious = migrations_of(before)
        if suspicious:
            raise error(
                f"{', '.join(suspicious)}: older than the newest applied migration, but "
                f"its hash is not in {MIGRATIONS_SCHEMA}.{TABLES[spec.phase]}: the file was "
                f"edited after it was applied, or it was added out of order (drizzle-kit "
                f"migrate never applies it)",
                "never edit an applied migration: restore it and generate a new one; an "
                "out-of-order migration needs a newer timestamp (generate it again)")
        if mode == "status":
            if done.returncode != 0:
                raise error(f"the status check exited with {done.returncode}",
                            "read the output for the cause")
            return Report(engine=self.engine, phase=spec.phase, migrations=migrations,
                          output=output)
        exit_mark = next((m["drizzle_kit_exit"] for m in marks if "drizzle_kit_exit" in m), None)
        after = snapshots.get("after")
        after_migrations = migrations_of(after)[0] if after is not None else migrations
        was = {m.name for m in migrations if m.applied}
        applied_now = tuple(m.name for m in after_migrations if m.applied and m.name not in was)
        if exit_mark != 0 or done.returncode != 0:
            done_now = f"; applied by this run: {', '.join(applied_now)}" if applied_now else ""
            left = [m.name for m in after_migrations if not m.applied]
            raise error(f"drizzle-kit migrate failed (exit {exit_mark}){diagnosis(marks)}"
                        f"{done_now}; still pending: {', '.join(left) or 'none'}",
                        "fix the failing migration (drizzle-kit applies the pending ones in "
                        "one transaction, so none of them was kept) and deploy again")
        left = [m.name for m in after_migrations if not m.applied]
        if left:
            raise error(f"drizzle-kit migrate succeeded but left {', '.join(left)} pending",
                        "check the journal's `when` stamps: drizzle-kit skips entries older "
                        "than the newest applied migration")
        return Report(engine=self.engine, phase=spec.phase, migrations=after_migrations,
                      applied_now=applied_now, output=output)

    @staticmethod
    def snapshot_error(problem: dict[str, Any], error, spec: PhaseSpec) -> MigrationFailed:
        kind, message = problem.get("error"), problem.get("message", "")
        if kind in ("journal-missing", "journal-invalid", "file-missing"):
            return error(message, f"check migrations.{spec.phase}_deploy.path: it names "
                         "drizzle-kit's `out` folder, relative to the image's WORKDIR, "
                         "and the image must contain it (COPY it, with meta/_journal.json)")
        if kind == "driver-missing":
            return error(f"engine drizzle needs a PostgreSQL driver in the image: {message}",
                         IMAGE_HINT)
        if kind == "database":
            return error(f"cannot read {MIGRATIONS_SCHEMA}.{TABLES[spec.phase]}: {message}",
                         "check the DATABASE_URL secret and that the database is reachable "
                         "from the migration container")
        return error(f"the engine's snapshot failed: {message}", "read the output for the cause")
