"""``python -m stagecraft.providers.cloud.local.host_image [debian-13|docker]``: build the
host image of that flavour (default debian-13), print its tag.

Progress goes to stderr; stdout is only the tag, so scripts can do
``IMAGE=$(python -m stagecraft.providers.cloud.local.host_image)``.
"""

from __future__ import annotations

import sys

from stagecraft.errors import StagecraftError
from stagecraft.providers.cloud.local.host_image import FLAVOURS, ensure_host_image


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) > 1 or (args and args[0] not in FLAVOURS):
        print(f"usage: python -m stagecraft.providers.cloud.local.host_image "
              f"[{'|'.join(FLAVOURS)}]", file=sys.stderr)
        return 2
    try:
        tag = ensure_host_image(log=lambda line: print(f"host-image: {line}", file=sys.stderr),
                                flavour=args[0] if args else FLAVOURS[0])
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
