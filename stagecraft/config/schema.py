"""The models of stagecraft.yml (see spec/core/config.md and docs/config.md).

Field names are a contract with users. Every field has a description: it
becomes the JSON Schema that editors show, and the reference docs.
"""

from __future__ import annotations

import hashlib
import json
from typing import Annotated, Any, Literal, Optional, Union

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    WithJsonSchema,
    create_model,
    model_validator,
)

from stagecraft.config.values import (
    DNS_LABEL_PATTERN,
    DURATION_PATTERN,
    REFERENCE_PATTERN,
    parse_duration,
    require_reference,
)


def _check_duration(value: object) -> object:
    parse_duration(value)
    return value


Duration = Annotated[
    str,
    BeforeValidator(_check_duration),
    WithJsonSchema({"type": "string", "pattern": DURATION_PATTERN,
                    "description": "A duration with a unit: 500ms, 10s, 2m, 1h."}),
]


def _duration_between(low: str, high: str) -> AfterValidator:
    """A Duration's bounds, themselves durations (checked after the unit was)."""

    def check(value: str) -> str:
        if not parse_duration(low) <= parse_duration(value) <= parse_duration(high):
            raise ValueError(f"expected a duration from {low} to {high}, got {value!r}")
        return value

    return AfterValidator(check)


def is_duration(info: Any) -> bool:
    """Whether a model field (its FieldInfo) holds a Duration."""
    return any(getattr(item, "func", None) is _check_duration for item in info.metadata)
SecretRef = Annotated[
    str,
    AfterValidator(require_reference),
    WithJsonSchema({"type": "string", "pattern": REFERENCE_PATTERN,
                    "description": "A reference: ${secret:NAME} or ${env:NAME}."}),
]
DnsLabel = Annotated[str, StringConstraints(pattern=DNS_LABEL_PATTERN)]
RoleName = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_-]{0,62}$")]
VarName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]
Port = Annotated[int, Field(ge=1, le=65535)]
Cidr = Annotated[str, StringConstraints(
    pattern=r"^([0-9]{1,3}(\.[0-9]{1,3}){3}|[0-9a-fA-F:]*:[0-9a-fA-F:.]*)(/[0-9]{1,3})?$")]
SshUser = Annotated[str, StringConstraints(pattern=r"^[a-z_][a-z0-9_-]{0,31}$")]
TailnetTag = Annotated[str, StringConstraints(pattern=r"^tag:[a-z0-9-]+$")]
EnvValue = Union[str, int, float, bool]


class Model(BaseModel):
    """Base of every config model: unknown keys are errors, values immutable."""

    model_config = ConfigDict(
        extra="forbid", frozen=True, populate_by_name=True, validate_default=True
    )


# --- project -----------------------------------------------------------------


class Registry(Model):
    """The image registry that builds push to and hosts pull from."""

    server: str = Field(
        description="Registry host (and optional port/path); images are "
        "<server>/<project>-<service>:<tag>.",
        pattern=r"^[A-Za-z0-9.-]+(:\d+)?(/[a-z0-9._/-]+)?$",
    )
    username: Optional[str] = Field(None, description="User to log in to the registry as.")
    password: Optional[SecretRef] = Field(
        None, description="Registry password or token, as a ${secret:NAME} reference."
    )
    ca_file: Optional[str] = Field(
        None, description="PEM file of the CA that signed the registry's certificate, when "
        "no public CA did; relative to stagecraft.yml. Bootstrap makes the hosts trust it; "
        "this machine's Docker must trust it too (/etc/docker/certs.d/<server>/ca.crt).",
    )


class Project(Model):
    """What is being deployed."""

    name: DnsLabel = Field(
        description="Project name: lowercase letters, digits and '-'. Used in host "
        "paths, container and image names."
    )
    registry: Optional[Registry] = Field(
        None, description="Where images are pushed. Without one: the cloud's own registry, else images go to the hosts over SSH."
    )


# --- providers ---------------------------------------------------------------


class BackendGeneric(Model):
    """A backend built with `docker build` or any command."""

    kind: Literal["generic"] = Field(description="Provider kind.")
    build: Optional[str] = Field(None, description="Command that builds the image instead of docker build.")
    dev: Optional[str] = Field(None, description="Command that runs the backend in `stagecraft dev`.")
    workdir: Optional[str] = Field(None, description="Directory the commands run in.")


class BackendEncore(Model):
    """An Encore.ts backend: `encore run` in dev, `encore build docker` to build."""

    kind: Literal["encore-ts"] = Field(description="Provider kind.")
    workdir: Optional[str] = Field(None, description="Directory of the Encore app (encore.app).")
    dev: Optional[str] = Field(None, description="Override of the dev command (default `encore run`).")


class FrontendGeneric(Model):
    """A frontend run by command in dev (Vite, Next, ...)."""

    kind: Literal["generic"] = Field(description="Provider kind.")
    dev: Optional[str] = Field(None, description="Command that runs the dev server.")
    build: Optional[str] = Field(None, description="Command that builds the frontend.")
    workdir: Optional[str] = Field(None, description="Directory the commands run in.")


_SSH_OVER_MESH = (
    "Whether Ansible and `stagecraft ssh` reach the hosts at their tailnet addresses once "
    "they joined (the controller must reach the tailnet: Tailscale running on it, or a "
    "node the cloud runs for it). False keeps SSH on the cloud's addresses; services talk "
    "over the tailnet either way."
)


class NetworkTailscale(Model):
    """Hosts join a Tailscale tailnet; private traffic goes over it."""

    kind: Literal["tailscale"] = Field(description="Provider kind.")
    auth_key: SecretRef = Field(
        description="Tailscale auth key, as a reference: reusable (one key joins every "
                    "host), tagged keys recommended; used only by a host that must log in.")
    tags: list[TailnetTag] = Field(
        default_factory=list, description="ACL tags advertised by the hosts (tag:name)."
    )
    ssh_over_mesh: bool = Field(True, description=_SSH_OVER_MESH)


class NetworkHeadscale(Model):
    """Hosts join a tailnet run by a Headscale control server."""

    kind: Literal["headscale"] = Field(description="Provider kind.")
    login_server: Optional[str] = Field(
        None, description="URL of the Headscale server. Required, except on a cloud that "
                          "runs a Headscale server of its own (local).", pattern=r"^https?://")
    auth_key: Optional[SecretRef] = Field(
        None, description="Pre-auth key, as a reference (`headscale preauthkeys create "
                          "--reusable`). Required, except on a cloud that makes its own "
                          "(local).")
    tags: list[TailnetTag] = Field(
        default_factory=list, description="ACL tags advertised by the hosts (tag:name)."
    )
    ssh_over_mesh: bool = Field(True, description=_SSH_OVER_MESH)


class NetworkNone(Model):
    """No overlay: hosts talk over the cloud's private network (VPC)."""

    kind: Literal["none"] = Field(description="Provider kind.")


class CloudDigitalOcean(Model):
    """Hosts are DigitalOcean droplets."""

    kind: Literal["digitalocean"] = Field(description="Provider kind.")
    token: SecretRef = Field(description="DigitalOcean API token, as a reference.")
    region: str = Field(description="Region slug, e.g. fra1.", pattern=r"^[a-z]{3}\d$")
    image: str = Field("debian-13-x64", description="Droplet image slug.")
    size: str = Field("s-1vcpu-2gb", description="Default droplet size slug for hosts without one.")
    vpc: Optional[str] = Field(None, description="Name of the VPC (default: one per environment).")
    api_url: str = Field(
        "https://api.digitalocean.com/v2", pattern=r"^https?://[^\s/]+(/[^\s]*)?$",
        description="Base URL of DigitalOcean's API; another one only for a stand-in of "
        "it (`--rehearse` sets the twin's).")
    docker_source: Literal["docker-ce", "distro"] = Field(
        "docker-ce", description="Where bootstrap installs Docker Engine from: `docker-ce`, "
        "Docker's apt repository; `distro`, the distribution's packages.")
    wait_timeout: Annotated[Duration, _duration_between("10s", "1h")] = Field(
        "5m", description="How long `infra up` waits for a droplet to become active (a new "
        "one, or one powered on or resized), from 10s to 1h. A droplet still in status `new` "
        "after that is an error that names it; the next `infra up` finds it by its name and "
        "waits again.")
    rehearsal: bool = Field(
        False, description="Set by `--rehearse`, not in stagecraft.yml: the API is the twin "
        "on this machine, whose droplets are containers.")


class CloudLocal(Model):
    """Hosts are containers on this machine's Docker Engine (the embedded default)."""

    kind: Literal["local"] = Field(description="Provider kind.")
    image: Literal["debian-13", "docker"] = Field(
        "debian-13", description="Host image: `debian-13`, bare like a fresh Debian 13 "
        "droplet (bootstrap installs Docker); `docker`, the same with the packages "
        "bootstrap installs from Debian (Docker Engine, Compose v2) already there, as "
        "clouds offer a Docker image, so bootstrap only configures (about 40 s sooner).")


class CloudSSH(Model):
    """Hosts exist already (servers you rent or own) and are reached by SSH at their `address`."""

    kind: Literal["ssh"] = Field(description="Provider kind.")
    user: SshUser = Field("root", description="User that adopts and bootstraps hosts that "
                          "name none: root, or one with passwordless sudo.")
    ssh_key: Optional[str] = Field(
        None, description="Private key file for hosts that name none (default: your ssh "
        "agent and ~/.ssh). `~` is expanded.")
    docker_source: Literal["docker-ce", "distro"] = Field(
        "docker-ce", description="Where bootstrap installs Docker Engine and Compose from: "
        "`docker-ce`, Docker's own apt repository (the servers must reach "
        "download.docker.com); `distro`, the distribution's docker.io and docker-compose "
        "packages (for servers that reach only its mirror).")


class SecretsEnvfile(Model):
    """Secrets come from a dotenv file per environment."""

    kind: Literal["envfile"] = Field(description="Provider kind.")
    path: str = Field(".env.{env}", description="Path of the file; {env} is the environment name.")


class SecretsEnv(Model):
    """Secrets come from the process environment: a CI job passes its secrets as
    environment variables (STAGECRAFT_SECRETS=env selects this without editing the file)."""

    kind: Literal["env"] = Field(description="Provider kind.")
    prefix: str = Field(
        "", pattern=r"^([A-Za-z_][A-Za-z0-9_]*)?$",
        description="Prepended to each secret's name to get its variable: with prefix "
        "`SHOP_`, ${secret:DATABASE_URL} is read from SHOP_DATABASE_URL.")


class SecretsEncore(Model):
    """Secrets come from Encore's secret store."""

    kind: Literal["encore"] = Field(description="Provider kind.")


class CIGithub(Model):
    """CI runs on GitHub Actions."""

    kind: Literal["github"] = Field(description="Provider kind.")


def _union(*models: type[Model]) -> Any:
    return Annotated[Union[models], Field(discriminator="kind")]


Backend = _union(BackendGeneric, BackendEncore)
Frontend = _union(FrontendGeneric)
Network = _union(NetworkTailscale, NetworkHeadscale, NetworkNone)
Cloud = _union(CloudDigitalOcean, CloudLocal, CloudSSH)
Secrets = _union(SecretsEnvfile, SecretsEnv, SecretsEncore)
CI = _union(CIGithub)

PROVIDER_KINDS: dict[str, tuple[str, ...]] = {
    "backend": ("generic", "encore-ts"),
    "frontend": ("generic",),
    "network": ("tailscale", "headscale", "none"),
    "cloud": ("digitalocean", "local", "ssh"),
    "secrets": ("envfile", "env", "encore"),
    "ci": ("github",),
}


class Providers(Model):
    """Pluggable providers; each environment may override any of them."""

    backend: Backend = Field(default_factory=lambda: BackendGeneric(kind="generic"),
                             description="How backend images are built and run in dev.")
    frontend: Optional[Frontend] = Field(None, description="How the frontend runs in dev.")
    network: Network = Field(default_factory=lambda: NetworkNone(kind="none"),
                             description="The private network between hosts.")
    cloud: Cloud = Field(default_factory=lambda: CloudLocal(kind="local"),
                         description="Where hosts come from.")
    secrets: Secrets = Field(default_factory=lambda: SecretsEnvfile(kind="envfile"),
                             description="Where ${secret:NAME} values come from.")
    ci: Optional[CI] = Field(None, description="The CI system workflows are generated for.")


# --- services ----------------------------------------------------------------


class Build(Model):
    """How to build a service's image."""

    context: str = Field(".", description="Build context directory, relative to stagecraft.yml.")
    dockerfile: Optional[str] = Field(None, description="Dockerfile path, relative to the context.")
    args: dict[VarName, EnvValue] = Field(default_factory=dict, description="Build arguments.")
    target: Optional[str] = Field(None, description="Build stage to stop at.")


class Healthcheck(Model):
    """How to tell that a container is ready for traffic."""

    path: Optional[str] = Field(None, description="HTTP path probed on the service's port.", pattern=r"^/")
    command: Optional[list[str]] = Field(None, description="Command run in the container instead of an HTTP probe.")
    interval: Duration = Field("5s", description="Time between probes.")
    timeout: Duration = Field("3s", description="Time a probe may take.")
    retries: int = Field(3, ge=1, le=100, description="Failed probes before the container is unhealthy.")
    start_period: Duration = Field("0s", description="Grace time after start before failures count.")

    @model_validator(mode="after")
    def _one_probe(self) -> "Healthcheck":
        if (self.path is None) == (self.command is None):
            raise ValueError("a healthcheck needs exactly one of path (HTTP) or command")
        return self


class Route(Model):
    """A public route from the edge to a service."""

    host: str = Field(description="Domain routed to the service; {env} and {domain} are replaced.")
    path: str = Field("/", description="Path prefix matched.", pattern=r"^/")


class Service(Model):
    """One containerised service of the app."""

    build: Optional[Build] = Field(None, description="Build the image from source.")
    image: Optional[str] = Field(None, description="Use a prebuilt image instead of building.",
                                 pattern=r"^[^\s]+$")
    from_: Optional[str] = Field(None, alias="from", description="Run the image of another service.")
    command: Optional[Union[str, list[str]]] = Field(None, description="Command that overrides the image's.")
    port: Optional[Port] = Field(None, description="Port the service listens on inside its container.")
    healthcheck: Optional[Healthcheck] = Field(None, description="Readiness probe; required for routed services.")
    env: dict[VarName, EnvValue] = Field(default_factory=dict, description="Plain environment variables.")
    secrets: list[VarName] = Field(default_factory=list, description="Names of secrets passed as environment variables.")
    replicas: int = Field(1, ge=0, le=100, description="Containers per host.")
    on: list[RoleName] = Field(min_length=1, description="Host roles that run this service.")
    routes: list[Route] = Field(default_factory=list, description="Public routes through the edge.")
    volumes: list[str] = Field(default_factory=list, description="Mounts: 'volume:/path[:ro]' or '/host/path:/path[:ro]'.")
    stateful: bool = Field(False, description="Never rolled, never recreated without --force (databases).")
    stop_grace: Duration = Field("10s", description="Time between SIGTERM and SIGKILL on stop.")
    dev: Optional[Literal["infra", "backend", "frontend", "skip"]] = Field(
        None, description="What `stagecraft dev` does with the service: `infra` runs it as a "
        "container (Docker Compose on this machine), `backend` / `frontend` routes it to the "
        "backend / frontend dev process, `skip` leaves it out. Default: stateful and "
        "`image:` services are infra; built services are the frontend's when their build "
        "context is providers.frontend.workdir, else the backend's; `from:` services skip.")

    @model_validator(mode="after")
    def _one_source(self) -> "Service":
        given = [name for name, value in
                 (("build", self.build), ("image", self.image), ("from", self.from_)) if value is not None]
        if len(given) != 1:
            raise ValueError(
                "a service needs exactly one of build, image or from"
                + (f" (got {', '.join(given)})" if given else "")
            )
        return self


class Volume(Model):
    """A block storage volume attached to the hosts that carry it."""

    size_gb: int = Field(ge=1, le=16384, description="Size in GiB.")
    filesystem: Literal["ext4", "xfs"] = Field("ext4", description="Filesystem created on first use only.")
    device: Optional[str] = Field(None, description="Stable device path; default depends on the cloud.")


class MigrationSet(Model):
    """Where the migrations of one phase are, or the command that runs them."""

    path: Optional[str] = Field(None, description="Directory of migration files (engine-specific).")
    command: Optional[list[str]] = Field(None, description="Command that applies migrations (engine `command`).")
    status_command: Optional[list[str]] = Field(None, description="Command that lists pending migrations.")


class Migrations(Model):
    """Database migrations, run as phases of a release."""

    engine: Literal["raw", "drizzle", "prisma", "command"] = Field(description="Migration engine.")
    from_: str = Field(alias="from", description="Service whose release image runs the migrations.")
    database_url: SecretRef = Field(description="Database URL, as a reference.")
    pre_deploy: Optional[MigrationSet] = Field(None, description="Run before any traffic switches.")
    post_deploy: Optional[MigrationSet] = Field(None, description="Run after every host is healthy.")
    host: Optional[DnsLabel] = Field(None, description="Host that runs migrations (default: the first that runs `from`).")
    timeout: Duration = Field("10m", description="Time a migration phase may take.")


class Firewall(Model):
    """Host firewall: default deny inbound."""

    public: list[Port] = Field(default_factory=lambda: [80, 443], description="Ports open on edge hosts.")
    ssh: Literal["private", "public"] = Field("private", description="Where SSH is allowed from.")
    ssh_from: list[Cidr] = Field(
        default_factory=lambda: ["0.0.0.0/0", "::/0"],
        description="With `ssh: public`: the networks SSH is open to in a cloud's own "
        "firewall (DigitalOcean), e.g. your office's or CI's addresses. Default: anywhere.")


class Rollout(Model):
    """How a release rolls across hosts."""

    batch: int = Field(1, ge=1, description="Hosts switched at a time.")
    health_timeout: Duration = Field("60s", description="Time new containers have to become healthy.")
    drain: Duration = Field("10s", description="Time old containers keep serving after leaving the pool.")


class Tls(Model):
    """How edge hosts get certificates for the routes' domains."""

    mode: Optional[Literal["acme", "local", "off"]] = Field(
        None, description="acme: Let's Encrypt over the HTTP challenge; local: a "
        "certificate from the CA stagecraft keeps for this environment; off: HTTP "
        "only. Default: the cloud's (local for clouds no public CA reaches, else acme).")
    email: Optional[str] = Field(None, description="Contact address for the ACME account.",
                                 pattern=r"^[^@\s]+@[^@\s]+$")


# --- environments ------------------------------------------------------------


class Host(Model):
    """One host of an environment."""

    name: DnsLabel = Field(description="Host name: a DNS label, unique in the environment.")
    roles: list[RoleName] = Field(min_length=1, description="Roles; `edge` hosts take public traffic.")
    size: Optional[str] = Field(None, description="Cloud size slug.")
    region: Optional[str] = Field(None, description="Cloud region, if not the provider's.")
    volumes: list[str] = Field(default_factory=list, description="Volumes attached to this host.")
    address: Optional[str] = Field(
        None, description="IP address or DNS name the controller reaches the host at (cloud `ssh`).")
    port: Optional[Port] = Field(None, description="SSH port (cloud `ssh`; default 22).")
    user: Optional[SshUser] = Field(
        None, description="User that adopts and bootstraps the host: root, or one with "
        "passwordless sudo (cloud `ssh`; default: the cloud's `user`). After bootstrap "
        "stagecraft connects as the deploy user.")
    ssh_key: Optional[str] = Field(
        None, description="Private key file for this host (cloud `ssh`; default: the cloud's "
        "`ssh_key`, else your ssh agent and ~/.ssh). `~` is expanded.")
    proxy_jump: Optional[str] = Field(
        None, description="Bastion to reach the host through (cloud `ssh`): the name of "
        "another host of the environment, or [user@]address[:port].")


def _partial(model: type[Model], name: str) -> type[Model]:
    """The same fields as ``model``, all optional: the shape of an override."""
    fields: dict[str, Any] = {}
    for field_name, info in model.model_fields.items():
        annotation = info.annotation
        if info.metadata:  # keep validators and bounds (Duration, ge=, patterns)
            annotation = Annotated[(annotation, *info.metadata)]
        fields[field_name] = (
            Optional[annotation],
            Field(None, alias=info.alias, description=info.description),
        )
    return create_model(name, __base__=Model, __doc__=f"Overrides of {model.__name__} fields.", **fields)


ServiceOverride = _partial(Service, "ServiceOverride")
FirewallOverride = _partial(Firewall, "FirewallOverride")
RolloutOverride = _partial(Rollout, "RolloutOverride")
MigrationsOverride = _partial(Migrations, "MigrationsOverride")

ProviderOverride = Annotated[
    dict[str, Any],
    WithJsonSchema({"type": "object", "description": "Provider settings; a new kind replaces, the same kind merges."}),
]


class ProvidersOverride(Model):
    """Per-environment provider overrides."""

    backend: Optional[ProviderOverride] = Field(None, description="Override of providers.backend.")
    frontend: Optional[ProviderOverride] = Field(None, description="Override of providers.frontend.")
    network: Optional[ProviderOverride] = Field(None, description="Override of providers.network.")
    cloud: Optional[ProviderOverride] = Field(None, description="Override of providers.cloud.")
    secrets: Optional[ProviderOverride] = Field(None, description="Override of providers.secrets.")
    ci: Optional[ProviderOverride] = Field(None, description="Override of providers.ci.")


class Environment(Model):
    """An environment: its hosts, and what it overrides of the top level."""

    hosts: list[Host] = Field(min_length=1, description="The hosts of this environment.")
    domain: Optional[str] = Field(None, description="Base domain; `{domain}` in route hosts.")
    tls: Optional[Tls] = Field(None, description="Certificates on edge hosts.")
    providers: Optional[ProvidersOverride] = Field(None, description="Provider overrides.")
    services: dict[str, ServiceOverride] = Field(default_factory=dict, description="Service field overrides.")  # type: ignore[valid-type]
    firewall: Optional[FirewallOverride] = Field(None, description="Firewall overrides.")  # type: ignore[valid-type]
    rollout: Optional[RolloutOverride] = Field(None, description="Rollout overrides.")  # type: ignore[valid-type]
    migrations: Optional[MigrationsOverride] = Field(None, description="Migration overrides.")  # type: ignore[valid-type]


class StagecraftConfig(Model):
    """stagecraft.yml: one app, its services, and its environments."""

    version: Literal[1] = Field(description="Format version of this file; always 1.")
    project: Project = Field(description="What is being deployed.")
    providers: Providers = Field(default_factory=Providers, description="Default providers.")
    services: dict[DnsLabel, Service] = Field(min_length=1, description="The app's services by name.")
    volumes: dict[DnsLabel, Volume] = Field(default_factory=dict, description="Block volumes by name.")
    migrations: Optional[Migrations] = Field(None, description="Database migrations.")
    firewall: Firewall = Field(default_factory=Firewall, description="Host firewall.")
    rollout: Rollout = Field(default_factory=Rollout, description="Rollout settings.")
    environments: dict[DnsLabel, Environment] = Field(min_length=1, description="Environments by name.")


class ResolvedEnvironment(Model):
    """One environment with every override applied: what plan and render consume."""

    name: DnsLabel = Field(description="Environment name.")
    project: Project = Field(description="What is being deployed.")
    providers: Providers = Field(default_factory=Providers, description="Providers in effect.")
    services: dict[DnsLabel, Service] = Field(description="Services in effect.")
    volumes: dict[DnsLabel, Volume] = Field(default_factory=dict, description="Block volumes.")
    migrations: Optional[Migrations] = Field(None, description="Migrations in effect.")
    firewall: Firewall = Field(default_factory=Firewall, description="Firewall in effect.")
    rollout: Rollout = Field(default_factory=Rollout, description="Rollout in effect.")
    domain: Optional[str] = Field(None, description="Base domain.")
    tls: Tls = Field(default_factory=Tls, description="Certificates on edge hosts.")
    hosts: list[Host] = Field(description="The hosts.")

    def config_hash(self) -> str:
        """A short hash of this resolved configuration, recorded with each release."""
        text = json.dumps(self.model_dump(mode="json", by_alias=True), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


    @property
    def primary_host(self) -> Host:
        """The host that holds the deploy lock: the environment's first host."""
        return self.hosts[0]

    def hosts_with_role(self, role: str) -> list[Host]:
        return [h for h in self.hosts if role in h.roles]

    def hosts_for_service(self, service: str) -> list[Host]:
        wanted = set(self.services[service].on)
        return [h for h in self.hosts if wanted.intersection(h.roles)]

    def route_host(self, route: Route) -> str:
        """A route's domain with {env} and {domain} filled in."""
        return route.host.replace("{env}", self.name).replace("{domain}", self.domain or "{domain}")

