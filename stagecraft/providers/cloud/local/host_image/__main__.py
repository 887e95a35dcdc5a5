"""``python -m stagecraft.providers.cloud.local.host_image``: build the host image, print its tag.

Progress goes to stderr; stdout is only the tag, so scripts can do
``IMAGE=$(python -m stagecraft.providers.cloud.local.host_image)``.
"""

from __future__ import annotations

import sys

from stagecraft.errors import StagecraftError
from stagecraft.providers.cloud.local.host_image import ensure_host_image


def main() -> int:
    try:
        tag = ensure_host_image(log=lambda line: print(f"host-image: {line}", file=sys.stderr))
    except StagecraftError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        output_tail = getattr(exc, "output_tail", "")
        if output_tail:
            print(output_tail, file=sys.stderr)
        if exc.hint:
            print(f"hint: {exc.hint}", file=sys.stderr)
        return int(exc.exit_code)
    print(tag)
    return 0


if __name__ == "__main__":
    sys.exit(main())
