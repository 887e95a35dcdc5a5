"""`stagecraft dev`'s pure parts: the plan, Traefik's dev files, the infra compose file,
the /etc/hosts block and the port check."""

from __future__ import annotations

import itertools
import textwrap
from pathlib import Path

import pytest

from stagecraft.config import load_config
from stagecraft.dev import hosts
from stagecraft.dev.compose import infra_compose
from stagecraft.dev.plan import command_argv, dev_role, plan_dev
from stagecraft.dev.session import check_ports
from stagecraft.dev.traefik import routes_config, static_config
from stagecraft.errors import EnvironmentMissing, PlanError

CONFIG = """\
version: 1
project: { name: devapp }
providers:
  backend: { kind: generic, dev: "python -m devapi.dev", workdir: backend }
  frontend: { kind: generic, dev: "npm run dev", workdir: frontend }
  secrets: { kind: envfile, path: ".env.{env}" }
services:
  api:
    build: { context: backend }
    port: 8000
    healthcheck: { path: /up }
    env: { LOG_LEVEL: debug }
    secrets: [DATABASE_URL]
    on: [app]
    routes: [{ host: "app.{domain}", path: /api }]
  web:
    build: { context: ./frontend/ }
    port: 5173
    healthcheck: { path: / }
    on: [app]
    routes: [{ host: "app.{domain}" }]
  worker:
    from: api
    command: ["python", "-m", "devapi.worker"]
    on: [app]
  cache:
    image: redis:7
    port: 6379
    on: [app]
  db:
    build: { context: db }
    port: 5432
    stateful: true
    env: { POSTGRES_USER: devapp }
    secrets: [POSTGRES_PASSWORD]
    volumes: ["pgdata:/var/lib/postgresql/data"]
    healthcheck: { command: ["pg_isready", "-q"] }
    on: [app]
volumes:
  pgdata: { size_gb: 1 }
environments:
  dev:
    domain: localhost
    hosts: [{ name: dev, roles: [edge, app] }]
"""
SECRETS = {"DATABASE_URL": "postgres://devapp:s3cret-pw@127.0.0.1:5432/devapp",
           "POSTGRES_PASSWORD": "s3cret-pw"}


def environment(tmp_path: Path, text: str = CONFIG):
    (tmp_path / "stagecraft.yml").write_text(text)
    return load_config(tmp_path / "stagecraft.yml").environment("dev")


def ports(start: int = 41000):
    counter = itertools.count(start)
    return lambda: next(counter)


def test_services_get_their_default_dev_roles(tmp_path: Path) -> None:
    env = environment(tmp_path)
    assert {name: dev_role(env, name) for name in env.services} == {
        "api": "backend", "web": "frontend", "worker": "skip", "cache": "infra", "db": "infra"}


def test_a_dev_field_overrides_the_default(tmp_path: Path) -> None:
    env = environment(tmp_path, CONFIG.replace("    command: [\"python\", \"-m\", \"devapi.worker\"]",
                                               "    command: [\"python\", \"-m\", \"devapi.worker\"]\n"
                                               "    dev: infra"))
    assert dev_role(env, "worker") == "infra"


def test_the_plan_gives_each_process_its_port_env_and_secrets(tmp_path: Path) -> None:
    env = environment(tmp_path)
    plan = plan_dev(env, tmp_path, SECRETS, ports(), https_port=8443)
    assert plan.https_port == 8443 and plan.http_port == 41000 and plan.api_port == 41001
    backend, frontend = plan.processes
    assert (backend.name, backend.services, backend.port) == ("backend", ("api",), 41002)
    assert backend.cwd == (tmp_path / "backend").resolve()
    assert backend.command == "python -m devapi.dev"
    assert backend.env == {"LOG_LEVEL": "debug", "DATABASE_URL": SECRETS["DATABASE_URL"],
                           "PORT": "41002", "HOST": "127.0.0.1",
                           "STAGECRAFT_DEV_URL": "https://app.localhost:8443"}
    assert "s3cret" not in repr(backend)  # the environment is left out of its repr
    assert (frontend.name, frontend.services, frontend.port) == ("frontend", ("web",), 41003)
    assert frontend.env["STAGECRAFT_DEV_URL"] == "https://app.localhost:8443"
    assert [(i.service, i.port) for i in plan.infra] == [("cache", 6379), ("db", 5432)]
    assert [(r.service, r.host, r.path, r.target) for r in plan.routes] == [
        ("api", "app.localhost", "/api", "http://127.0.0.1:41002"),
        ("web", "app.localhost", "/", "http://127.0.0.1:41003")]
    assert plan.route_hosts == ("app.localhost",)
    assert plan.url("app.localhost") == "https://app.localhost:8443"


def test_encore_runs_encore_run_on_its_port(tmp_path: Path) -> None:
    text = CONFIG.replace('backend: { kind: generic, dev: "python -m devapi.dev", workdir: backend }',
                          "backend: { kind: encore-ts, workdir: backend }")
    plan = plan_dev(environment(tmp_path, text), tmp_path, SECRETS, ports())
    assert plan.processes[0].command == f"encore run --port {plan.processes[0].port}"


def test_a_role_without_a_dev_command_is_refused_with_the_field_to_set(tmp_path: Path) -> None:
    text = CONFIG.replace('frontend: { kind: generic, dev: "npm run dev", workdir: frontend }',
                          "frontend: { kind: generic, workdir: frontend }")
    with pytest.raises(PlanError, match=r"service\(s\) web in the frontend dev process, but "
                       r"providers.frontend has no dev command") as caught:
        plan_dev(environment(tmp_path, text), tmp_path, SECRETS, ports())
    assert "dev: skip" in caught.value.hint


def test_a_missing_secret_names_the_service_and_the_environment(tmp_path: Path) -> None:
    with pytest.raises(PlanError, match="service 'api' needs secret DATABASE_URL"):
        plan_dev(environment(tmp_path), tmp_path, {"POSTGRES_PASSWORD": "x"}, ports())


def test_two_services_of_one_process_with_clashing_values_are_refused(tmp_path: Path) -> None:
    text = CONFIG.replace("    command: [\"python\", \"-m\", \"devapi.worker\"]",
                          "    command: [\"python\", \"-m\", \"devapi.worker\"]\n    dev: backend\n"
                          "    env: { LOG_LEVEL: info }")
    with pytest.raises(PlanError, match="set LOG_LEVEL to different values"):
        plan_dev(environment(tmp_path, text), tmp_path, SECRETS, ports())


def test_traefik_routes_use_the_production_rules_and_the_certificate(tmp_path: Path) -> None:
    plan = plan_dev(environment(tmp_path), tmp_path, SECRETS, ports(), https_port=8443)
    static = static_config(plan, tmp_path / "traefik")
    assert static["entryPoints"]["websecure"]["address"] == "127.0.0.1:8443"
    assert static["entryPoints"]["web"]["http"]["redirections"]["entryPoint"]["to"] == "websecure"
    assert static["providers"]["file"]["directory"] == str(tmp_path / "traefik" / "dynamic")
    dynamic = routes_config(plan, tmp_path / "dev.crt", tmp_path / "dev.key")
    routers = dynamic["http"]["routers"]
    assert routers["api-0"]["rule"] == "Host(`app.localhost`) && PathPrefix(`/api`)"
    assert routers["web-0"]["rule"] == "Host(`app.localhost`)"
    assert all(r["tls"] == {} and r["entryPoints"] == ["websecure"] for r in routers.values())
    assert dynamic["http"]["services"]["api-dev"]["loadBalancer"]["servers"] == [
        {"url": "http://127.0.0.1:41002"}]
    default = dynamic["tls"]["stores"]["default"]["defaultCertificate"]
    assert default == {"certFile": str(tmp_path / "dev.crt"), "keyFile": str(tmp_path / "dev.key")}


def test_infra_runs_as_a_deploy_would_with_ports_on_loopback(tmp_path: Path) -> None:
    env = environment(tmp_path)
    plan = plan_dev(env, tmp_path, SECRETS, ports())
    document, env_files = infra_compose(env, plan, tmp_path, tmp_path / "env", SECRETS)
    assert document["name"] == "devapp-dev"
    db = document["services"]["db"]
    assert db["build"] == {"context": str((tmp_path / "db").resolve())}
    assert db["image"] == "devapp-dev-db:dev"
    assert db["ports"] == ["127.0.0.1:5432:5432"]
    assert db["environment"] == {"POSTGRES_USER": "devapp"}
    assert db["volumes"] == ["pgdata:/var/lib/postgresql/data"]
    assert db["healthcheck"]["test"] == ["CMD-SHELL", "pg_isready -q"]
    assert document["volumes"] == {"pgdata": {"name": "devapp-dev-pgdata"}}
    assert db["env_file"] == [str(tmp_path / "env" / "db.env")]
    assert "POSTGRES_PASSWORD='s3cret-pw'" in env_files[str(tmp_path / "env" / "db.env")]
    assert "s3cret" not in repr(document)
    assert document["services"]["cache"]["image"] == "redis:7"
    assert set(document["services"]) == {"cache", "db"}


def test_a_taken_port_is_refused_before_anything_starts(tmp_path: Path) -> None:
    plan = plan_dev(environment(tmp_path), tmp_path, SECRETS, ports(), https_port=8443)
    with pytest.raises(EnvironmentMissing, match=r"port 5432 on 127.0.0.1 is taken by another "
                       r"program; service db \(infra"):
        check_ports(plan, taken=lambda port: port == 5432)
    with pytest.raises(EnvironmentMissing, match="Traefik's HTTPS entrypoint") as caught:
        check_ports(plan, taken=lambda port: port == 8443)
    assert "--https-port" in caught.value.hint
    check_ports(plan, taken=lambda port: False)


@pytest.mark.parametrize(("command", "argv"), [
    ("npm run dev", ["/bin/sh", "-c", "exec npm run dev"]),
    ("A=1 make dev", ["/bin/sh", "-c", "A=1 make dev"]),
    ("cd web && vite", ["/bin/sh", "-c", "cd web && vite"]),
])
def test_dev_commands_run_through_the_shell(command: str, argv: list[str]) -> None:
    assert command_argv(command) == argv


HOSTS = textwrap.dedent("""\
    127.0.0.1\tlocalhost
    ::1\tlocalhost ip6-localhost
    # a user's own comment
    10.0.0.5\tnas.lan""")


def test_the_hosts_block_is_added_replaced_and_removed_leaving_other_lines() -> None:
    added = hosts.with_block(HOSTS, "devapp", ["app.dev.test", "api.dev.test"])
    assert added.startswith(HOSTS + "\n")
    assert added.endswith("# stagecraft dev devapp begin\n127.0.0.1\tapi.dev.test\n"
                          "127.0.0.1\tapp.dev.test\n# stagecraft dev devapp end\n")
    assert hosts.block_names(added, "devapp") == ["api.dev.test", "app.dev.test"]
    again = hosts.with_block(added, "devapp", ["app.dev.test"])
    assert again.count("begin") == 1 and "api.dev.test" not in again
    other = hosts.with_block(again, "shop", ["shop.test"])
    assert hosts.without_block(other, "devapp") == hosts.with_block(HOSTS, "shop", ["shop.test"])
    assert hosts.without_block(hosts.without_block(added, "devapp"), "devapp") == HOSTS + "\n"


def test_a_block_without_its_end_leaves_the_file_alone() -> None:
    broken = HOSTS + "\n# stagecraft dev devapp begin\n127.0.0.1\tapp.dev.test\n"
    assert hosts.without_block(broken, "devapp") == broken


def test_only_names_that_do_not_reach_loopback_get_lines() -> None:
    resolved = {"app.localhost": True, "app.dev.test": False}
    assert hosts.names_to_add(["app.localhost", "app.dev.test"], resolved.__getitem__) == \
        ["app.dev.test"]


def test_the_hosts_file_is_rewritten_only_when_it_changes(tmp_path: Path) -> None:
    path = tmp_path / "hosts"
    path.write_text(HOSTS + "\n")
    assert hosts.update(path, lambda text: hosts.with_block(text, "devapp", ["a.test"])) is True
    assert hosts.update(path, lambda text: hosts.with_block(text, "devapp", ["a.test"])) is False
    assert hosts.update(path, lambda text: hosts.without_block(text, "devapp")) is True
    assert path.read_text() == HOSTS + "\n"
