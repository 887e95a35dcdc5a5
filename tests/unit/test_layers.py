"""The import rules of docs/architecture.md ("Packages"), checked on the source.

Every ``import`` and ``from ... import`` in stagecraft/**/*.py is read with the ast
module, at module level and inside functions (and under ``if TYPE_CHECKING:``).
Nothing is imported, so a rule holds whether or not a module can be loaded. Each
failure lists the offending imports as ``file:line: module``.
"""

from __future__ import annotations

import ast
import functools
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "stagecraft"


@dataclass(frozen=True)
class Import:
    """One imported module (or name of a module) in one file."""

    file: Path  # relative to ROOT
    line: int
    module: str  # absolute dotted name; for `from M import N`, M.N when N is a module
    name: str | None  # the name taken from `module` (`from M import name`), else None

    def __str__(self) -> str:
        what = self.module if self.name is None else f"{self.module} import {self.name}"
        return f"{self.file}:{self.line}: {what}"


def module_of(path: Path) -> str:
    """The dotted name of a file of the package."""
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def is_module(dotted: str) -> bool:
    """Is ``dotted`` a module or package of stagecraft (a file or a folder)?"""
    path = ROOT.joinpath(*dotted.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def imports_of(path: Path) -> list[Import]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    here = module_of(path)
    package = here if path.name == "__init__.py" else here.rpartition(".")[0]
    rel = path.relative_to(ROOT)
    found: list[Import] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [Import(rel, node.lineno, alias.name, None) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            for alias in node.names:
                submodule = f"{source}.{alias.name}"
                if source.split(".")[0] == "stagecraft" and is_module(submodule):
                    found.append(Import(rel, node.lineno, submodule, None))
                else:
                    found.append(Import(rel, node.lineno, source, alias.name))
    return found


@functools.cache
def all_imports() -> tuple[Import, ...]:
    return tuple(imp for path in sorted(PACKAGE.rglob("*.py")) for imp in imports_of(path))


def within(module: str, prefix: str) -> bool:
    """Is ``module`` the module ``prefix`` or inside it?"""
    return module == prefix or module.startswith(prefix + ".")


def in_folder(imp: Import, folder: str) -> bool:
    """Is the importing file under ``folder`` (a path relative to ROOT)?"""
    return imp.file.is_relative_to(folder)


def area(module: str) -> str:
    """What a stagecraft module belongs to: its subpackage (``stagecraft.deploy``),
    or itself for a module at the package's root (``stagecraft.errors``)."""
    return ".".join(module.split(".")[:2])


def is_root_module(module: str) -> bool:
    """A module at the package's root (errors, log, execs, ...), or the package itself."""
    parts = module.split(".")
    return parts == ["stagecraft"] or (
        len(parts) == 2 and (PACKAGE / f"{parts[1]}.py").is_file())


def offences(files: str | tuple[str, ...], forbidden: tuple[str, ...], *,
             allowed_files: tuple[str, ...] = ()) -> list[str]:
    """Imports of a module in ``forbidden`` by a file under ``files``."""
    folders = (files,) if isinstance(files, str) else files
    return [str(imp) for imp in all_imports()
            if any(in_folder(imp, f) for f in folders)
            and str(imp.file) not in allowed_files
            and any(within(imp.module, prefix) for prefix in forbidden)]


# ---------------------------------------------------------------- the scan itself


def test_the_scan_sees_top_level_and_function_level_imports() -> None:
    seen = {(str(imp.file), imp.module) for imp in all_imports()}
    # Top level, and a command module imported inside a function of the CLI.
    assert ("stagecraft/ansible/runner.py", "ansible_runner") in seen
    assert ("stagecraft/cli/plan.py", "stagecraft.hosts.probe") in seen
    # `from stagecraft.hosts import ssh` is an import of the module stagecraft.hosts.ssh.
    assert ("stagecraft/ops/shell.py", "stagecraft.hosts.ssh") in seen


# ---------------------------------------------------------------- named rules

LOWER_LAYERS_MUST_NOT_REACH = ("stagecraft.deploy", "stagecraft.ansible", "stagecraft.cli",
                               "stagecraft.ops", "stagecraft.ui", "stagecraft.infra",
                               "stagecraft.doctor", "stagecraft.migrations")


def test_render_does_not_import_the_code_that_runs_a_release() -> None:
    bad = offences("stagecraft/render", (*LOWER_LAYERS_MUST_NOT_REACH, "stagecraft.ledger",
                                         "stagecraft.plan"))
    assert bad == [], "render/ must not import these:\n" + "\n".join(bad)


def test_render_reaches_hosts_only_from_the_inventory() -> None:
    # inventory_of reads the environment's state files (hosts/fleet.py) and the
    # inventory's ssh options come from hosts/ssh.py; the rest of render/ reads nothing.
    bad = offences("stagecraft/render", ("stagecraft.hosts",),
                   allowed_files=("stagecraft/render/inventory.py",))
    assert bad == [], "only render/inventory.py may import hosts/:\n" + "\n".join(bad)


def test_plan_imports_only_the_render_state() -> None:
    bad = [str(imp) for imp in all_imports()
           if in_folder(imp, "stagecraft/plan") and within(imp.module, "stagecraft")
           and not within(imp.module, "stagecraft.plan")
           and not within(imp.module, "stagecraft.render.state")]
    assert bad == [], "plan/ may import only render/state.py:\n" + "\n".join(bad)


@pytest.mark.parametrize("folder", ["stagecraft/render", "stagecraft/plan"])
def test_render_and_plan_run_nothing(folder: str) -> None:
    bad = offences(folder, ("subprocess", "os", "shutil", "pathlib", "tempfile",
                            "stagecraft.execs", "stagecraft.fsutil", "ansible_runner"))
    assert bad == [], f"{folder}/ must not run commands or touch files:\n" + "\n".join(bad)


def test_the_ledger_does_not_import_deploy_hosts_cli_or_ansible() -> None:
    bad = offences("stagecraft/ledger", ("stagecraft.deploy", "stagecraft.hosts",
                                         "stagecraft.cli", "stagecraft.ansible",
                                         "stagecraft.ops", "stagecraft.ui"))
    assert bad == [], "ledger/ must not import these:\n" + "\n".join(bad)


def test_only_the_ansible_package_imports_ansible_runner_or_ansible() -> None:
    bad = [str(imp) for imp in all_imports()
           if not in_folder(imp, "stagecraft/ansible")
           and (within(imp.module, "ansible_runner") or within(imp.module, "ansible"))]
    assert bad == [], "only stagecraft/ansible/ may import these:\n" + "\n".join(bad)


def test_the_guard_imports_nothing_of_stagecraft() -> None:
    # It is run by path and must start fast.
    bad = [str(imp) for imp in all_imports()
           if str(imp.file) == "stagecraft/ansible/guard.py" and within(imp.module, "stagecraft")]
    assert bad == [], "ansible/guard.py must import nothing of stagecraft:\n" + "\n".join(bad)


def test_only_the_local_cloud_imports_the_local_cloud() -> None:
    # providers/kinds.py names it in a string ("module:attribute"), which is not an import.
    bad = [str(imp) for imp in all_imports()
           if not in_folder(imp, "stagecraft/providers/cloud/local")
           and within(imp.module, "stagecraft.providers.cloud.local")]
    assert bad == [], "only providers/cloud/local/ may import it:\n" + "\n".join(bad)


def test_cloud_providers_do_not_import_the_config() -> None:
    # A cloud gets a FleetSpec, never stagecraft.yml's models.
    bad = offences("stagecraft/providers/cloud", ("stagecraft.config",))
    assert bad == [], "providers/cloud/ must not import config/:\n" + "\n".join(bad)


def test_nothing_imports_a_private_name_of_another_package() -> None:
    def private(part: str) -> bool:
        return part.startswith("_") and not (part.startswith("__") and part.endswith("__"))

    bad = []
    for imp in all_imports():
        if not within(imp.module, "stagecraft"):
            continue
        if area(imp.module) == area(module_of(ROOT / imp.file)):
            continue
        parts = imp.module.split(".") + ([imp.name] if imp.name else [])
        if any(private(part) for part in parts):
            bad.append(str(imp))
    assert bad == [], "private names imported across packages:\n" + "\n".join(bad)


def test_only_the_cli_and_the_entry_point_import_the_cli() -> None:
    bad = [str(imp) for imp in all_imports()
           if within(imp.module, "stagecraft.cli")
           and not in_folder(imp, "stagecraft/cli")
           and str(imp.file) != "stagecraft/__main__.py"]
    assert bad == [], "only cli/ (and __main__.py) may import stagecraft.cli:\n" + "\n".join(bad)


def test_the_package_never_imports_the_projects_tools() -> None:
    bad = [str(imp) for imp in all_imports() if within(imp.module, "tools")]
    assert bad == [], "tools/ is not in the wheel:\n" + "\n".join(bad)


def test_click_only_in_the_cli_and_rich_only_in_the_cli_and_the_ui() -> None:
    bad = [str(imp) for imp in all_imports()
           if (within(imp.module, "click") and not in_folder(imp, "stagecraft/cli"))
           or (within(imp.module, "rich") and not in_folder(imp, "stagecraft/cli")
               and not in_folder(imp, "stagecraft/ui"))]
    assert bad == [], "click belongs to cli/, rich to cli/ and ui/:\n" + "\n".join(bad)


def test_the_root_modules_import_only_each_other() -> None:
    # stagecraft/__main__.py, `python -m stagecraft`, is the one that imports cli/.
    bad = [str(imp) for imp in all_imports()
           if imp.file.parent == Path("stagecraft") and imp.file.name != "__main__.py"
           and within(imp.module, "stagecraft") and not is_root_module(imp.module)]
    assert bad == [], "root modules may import only root modules:\n" + "\n".join(bad)


SSH_OPTION = re.compile(r"\b(StrictHostKeyChecking|UserKnownHostsFile|GlobalKnownHostsFile|"
                        r"IdentitiesOnly|IdentityFile|ControlPath|ControlMaster|ControlPersist|"
                        r"BatchMode|ConnectTimeout)\b")


def test_only_hosts_ssh_builds_ssh_connection_options() -> None:
    bad = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path == PACKAGE / "hosts" / "ssh.py":
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        docstrings = {id(body[0].value) for node in ast.walk(tree)
                      if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef,
                                           ast.AsyncFunctionDef))
                      and (body := node.body) and isinstance(body[0], ast.Expr)
                      and isinstance(body[0].value, ast.Constant)}
        bad += [f"{path.relative_to(ROOT)}:{node.lineno}: {node.value!r}"
                for node in ast.walk(tree)
                if isinstance(node, ast.Constant) and isinstance(node.value, str)
                and id(node) not in docstrings and SSH_OPTION.search(node.value)]
    assert bad == [], "ssh options outside stagecraft/hosts/ssh.py:\n" + "\n".join(bad)


# ---------------------------------------------------------------- what each package may import

ROOT_MODULES = "(root modules)"

#: package -> what it may import besides itself, the root modules and third-party code:
#: a subpackage (``stagecraft.hosts``) or one module of it (``stagecraft.hosts.ssh``).
#: cli/ is left out: it may import any package. docs/architecture.md says the same.
MAY_IMPORT: dict[str, tuple[str, ...]] = {
    "stagecraft/config": ("stagecraft.providers.kinds",),
    "stagecraft/render": ("stagecraft.config", "stagecraft.hosts",
                          "stagecraft.providers.cloud.base"),
    "stagecraft/plan": ("stagecraft.render.state",),
    "stagecraft/ledger": ("stagecraft.plan.phases", "stagecraft.render.state"),
    "stagecraft/hosts": ("stagecraft.config", "stagecraft.ledger", "stagecraft.providers.cloud",
                         "stagecraft.providers.secrets"),
    # providers/cloud/base.py for the SshAccess type a request is built from.
    "stagecraft/ansible": ("stagecraft.hosts.ssh", "stagecraft.providers.cloud.base"),
    "stagecraft/infra": ("stagecraft.ansible", "stagecraft.config", "stagecraft.hosts",
                         "stagecraft.providers", "stagecraft.render"),
    "stagecraft/deploy": ("stagecraft.ansible", "stagecraft.config", "stagecraft.hosts",
                          "stagecraft.infra", "stagecraft.ledger", "stagecraft.migrations",
                          "stagecraft.plan", "stagecraft.providers", "stagecraft.render"),
    "stagecraft/migrations": ("stagecraft.providers.registry",),
    "stagecraft/ops": ("stagecraft.hosts", "stagecraft.ui.table"),
    "stagecraft/doctor": ("stagecraft.hosts",),
    "stagecraft/ui": ("stagecraft.ansible.events", "stagecraft.plan"),
    "stagecraft/scaffold": ("stagecraft.config", "stagecraft.providers.kinds"),
    "stagecraft/dev": ("stagecraft.config", "stagecraft.render"),
    "stagecraft/providers": ("stagecraft.config", "stagecraft.doctor.model",
                             "stagecraft.hosts.ssh", "stagecraft.infra.tls"),
}
# Within providers/: the local cloud needs the environment's CA (infra/tls.py) and
# not the config; the other providers need no infra/.
LOCAL_CLOUD_MAY_IMPORT = ("stagecraft.providers.cloud.base", "stagecraft.providers.cloud.keys",
                          "stagecraft.doctor.model", "stagecraft.hosts.ssh",
                          "stagecraft.infra.tls")
OTHER_PROVIDERS_MAY_IMPORT = ("stagecraft.config", "stagecraft.doctor.model",
                              "stagecraft.hosts.ssh")


def outside_allowance(folder: str, allowed: tuple[str, ...],
                      skip: str | None = None) -> list[str]:
    own = folder.replace("/", ".")
    return [str(imp) for imp in all_imports()
            if in_folder(imp, folder) and not (skip and in_folder(imp, skip))
            and within(imp.module, "stagecraft") and not within(imp.module, own)
            and not is_root_module(imp.module)
            and not any(within(imp.module, prefix) for prefix in allowed)]


@pytest.mark.parametrize("folder", sorted(MAY_IMPORT))
def test_each_package_imports_only_what_the_doc_allows(folder: str) -> None:
    bad = outside_allowance(folder, MAY_IMPORT[folder])
    assert bad == [], f"{folder}/ may import only {MAY_IMPORT[folder]}:\n" + "\n".join(bad)


def test_the_local_cloud_imports_only_what_the_doc_allows() -> None:
    bad = outside_allowance("stagecraft/providers/cloud/local", LOCAL_CLOUD_MAY_IMPORT)
    assert bad == [], "providers/cloud/local/ imports too much:\n" + "\n".join(bad)


def test_the_other_providers_import_only_what_the_doc_allows() -> None:
    bad = outside_allowance("stagecraft/providers", OTHER_PROVIDERS_MAY_IMPORT,
                            skip="stagecraft/providers/cloud/local")
    assert bad == [], "providers/ (but the local cloud) imports too much:\n" + "\n".join(bad)


def test_every_package_has_a_rule() -> None:
    folders = {f"stagecraft/{p.name}" for p in PACKAGE.iterdir()
               if p.is_dir() and (p / "__init__.py").is_file()}
    assert folders - set(MAY_IMPORT) == {"stagecraft/cli"}


def test_only_the_local_cloud_knows_the_local_cloud() -> None:
    """Callers ask a cloud's capabilities; none branches on the local cloud or leans on
    it in its comments (providers/kinds.py registers it, the schema defines it)."""
    local = PACKAGE / "providers" / "cloud" / "local"
    pattern = re.compile(r"local cloud|kind\s*[!=]=\s*[\"']local[\"']", re.IGNORECASE)
    found = [f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
             for path in sorted(PACKAGE.rglob("*.py")) if local not in path.parents
             for number, line in enumerate(path.read_text().splitlines(), 1)
             if pattern.search(line)]
    assert found == []
