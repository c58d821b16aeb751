"""``opsconsole`` / ``python -m opsconsole``: the client verbs plus the host-side demo.

The demo's flags are defined here and its module is imported only when the verb runs: it
embeds a Tornado app and the whole console, which ``opsconsole --help`` and the client verbs
must not pay for.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from opsconsole.cli.main import build_parser, run


def add_demo_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("demo", help="run a demo web app with the console embedded")
    p.add_argument("--state", type=Path, default=Path(".opsconsole-demo"))
    p.add_argument("--port", type=int, default=8780, help="console port (0 = any free port)")
    p.add_argument("--app-port", type=int, default=8000, help="demo app port (0 = any free port)")
    p.add_argument("--ssh-port", type=int, default=8722, help="SSH port (0 = any free port, -1 = off)")
    p.add_argument(
        "--leak-interval",
        type=float,
        default=0.0,
        metavar="S",
        help="start the leak detector, sampling every S seconds (at least 1; default 0 = off)",
    )
    p.set_defaults(func=run_demo)


def run_demo(args: argparse.Namespace) -> int:
    from opsconsole.host import demo

    return demo.main(args)


def main(argv: list[str] | None = None) -> int:
    parser, sub = build_parser()
    add_demo_parser(sub)
    return run(parser, argv)


if __name__ == "__main__":
    sys.exit(main())
