"""``opsconsole`` / ``python -m opsconsole``: the client verbs plus the host-side demo."""

from __future__ import annotations

import sys

from opsconsole.cli.main import build_parser, run
from opsconsole.host import demo


def main(argv: list[str] | None = None) -> int:
    parser, sub = build_parser()
    demo.add_parser(sub)
    return run(parser, argv)


if __name__ == "__main__":
    sys.exit(main())
