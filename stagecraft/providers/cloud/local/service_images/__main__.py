"""``python -m stagecraft.providers.cloud.local.service_images [runtime|registry|traefik|postgres|headscale]...``:
build the local cloud's images (default: runtime) and print their tags, one a line.

Progress goes to stderr; stdout is only the tags, so scripts can do
``BASE=$(python -m stagecraft.providers.cloud.local.service_images runtime)``.
"""

from __future__ import annotations

import sys

from stagecraft.errors import StagecraftError
from stagecraft.providers.cloud.local.service_images import (
    ensure_headscale_image,
    ensure_postgres_image,
    ensure_registry_image,
    ensure_runtime_image,
    ensure_traefik_image,
)

BUILDERS = {
    "runtime": ensure_runtime_image,
    "registry": ensure_registry_image,
    "traefik": ensure_traefik_image,
    "postgres": ensure_postgres_image,
    "headscale": ensure_headscale_image,
}


def main(argv: list[str]) -> int:
    names = argv or ["runtime"]
    unknown = [n for n in names if n not in BUILDERS]
    if unknown:
        print(f"error: unknown image {unknown[0]!r}; choose from: {', '.join(BUILDERS)}",
              file=sys.stderr)
        return 2
    for name in names:
        try:
            tag = BUILDERS[name](lambda line: print(f"{name}-image: {line}", file=sys.stderr))
        except StagecraftError as exc:
            print(f"error: {exc.message}", file=sys.stderr)
            output_tail = getattr(exc, "output_tail", "")
            if output_tail:
                print(output_tail, file=sys.stderr)
            if exc.hint:
                print(f"hint: {exc.hint}", file=sys.stderr)
            return int(exc.exit_code)
        print(tag, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
