"""`stagecraft build`: build (and push) the images of a release."""

from __future__ import annotations

import re

import click

from stagecraft.cli.context import AppContext, command

# A Docker tag: what a release id must be to name images.
_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")


def _release(value: str | None) -> str | None:
    if value is not None and not _TAG.match(value):
        raise click.BadParameter(
            "use letters, digits, '_', '.' and '-' (at most 128; not starting with '.' or '-')",
            param_hint="--release")
    return value


@command("build", short_help="Build (and push) the images of a release.")
@click.argument("services", nargs=-1, metavar="[SERVICE]...")
@click.option("--no-push", "no_push", is_flag=True,
              help="Build and tag locally; push nothing (no registry needed).")
@click.option("--release", "release", default=None, metavar="ID",
              callback=lambda _c, _p, v: _release(v),
              help="Release id to tag images with (default: UTC time and git short sha).")
def command(app: AppContext, services: tuple[str, ...], no_push: bool,
            release: str | None) -> None:
    """Build the images of SERVICE... (all services by default) with the environment's
    backend provider, tag them <registry>/<project>-<service>:<release>, push them and
    print the pull reference (with digest) of each. Services with `from:` reuse the
    image of the service they name; services with `image:` are not built."""
    from stagecraft.deploy.build import build_images, registry_target, repository
    from stagecraft.hosts.fleet import cloud_for
    from stagecraft.ledger.release_id import new_release_id

    env = app.environment()
    project_dir = app.load().project_dir
    release_id = release or new_release_id(project_dir)
    cloud = cloud_for(env)

    if app.dry_run:
        from stagecraft.deploy.build import select_services, services_to_build

        selected = select_services(env, list(services))
        # A dry run contacts nothing: a cloud's own registry address is not looked up.
        registry = env.project.registry
        server = (registry.server if registry is not None and not no_push
                  and not cloud.capabilities.registry else None)
        plan = {name: f"{repository(server, env.project.name, name)}:{release_id}"
                for name in services_to_build(env, selected)}

        def text_plan(_: dict) -> None:
            for name, ref in plan.items():
                click.echo(f"would build {name} as {ref}")

        app.emit({"dry_run": True, "release": release_id, "push": not no_push, "build": plan},
                 text_plan)
        return

    target = None if no_push else registry_target(env, project_dir, cloud)

    def show(service: str, line: str) -> None:
        app.say(f"[{service}] {line}")

    images = build_images(env, project_dir, release_id, target, services=list(services),
                          push=not no_push, on_line=show, cloud=cloud)
    data = {"environment": env.name, "release": release_id, "pushed": not no_push,
            "registry": target.to_dict() if target else None,
            "images": {name: image.to_dict() for name, image in images.items()}}

    def text(_: dict) -> None:
        from stagecraft.ui.table import print_table

        rows = []
        for name, image in images.items():
            note = {"image": "(image: not built)",
                    "from": f"(from {image.from_service})"}.get(image.source, "")
            rows.append([name, image.pull_ref, note])
        print_table(["service", "image", "note"], rows, header=False)

    app.emit(data, text)
