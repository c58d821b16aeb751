"""``opsconsole leaks URL start [--interval S] | stop | report``: drive the leak detector.

Runs in the operator's process. Start and stop need an operator's token (the server checks);
each prints the detector's report as the server renders it, so the CLI formats nothing itself.
"""

from __future__ import annotations

import argparse
import sys
import urllib.parse
from typing import TYPE_CHECKING

from opsconsole.errors import ClientError

if TYPE_CHECKING:
    from opsconsole.cli.client import Client

ACTIONS = ("start", "stop", "report")


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "leaks",
        help="the leak detector: start [--interval S], stop, report",
        description="Start or stop the host's leak detector, or print its verdict and growth table. "
        "Start and stop need an operator; report works for viewers too.",
    )
    p.add_argument("url")
    p.add_argument("action", choices=ACTIONS, help="start sampling, stop (the history stays), or report")
    p.add_argument(
        "--interval",
        type=float,
        metavar="S",
        help="start: seconds between samples (1-3600; the server's default is 30)",
    )
    p.add_argument("--format", choices=("text", "json"), default="text", help="text (default) or json")
    return p


def check(args: argparse.Namespace) -> None:
    """Refuse a misplaced option before any request."""
    if args.interval is not None and args.action != "start":
        raise ClientError(f"leaks: --interval only goes with start, not {args.action}")


def run(client: Client, args: argparse.Namespace) -> int:
    params = {"format": args.format}
    if args.interval is not None:
        params["interval"] = f"{args.interval:g}"
    query = "?" + urllib.parse.urlencode(params)
    if args.action == "report":
        body = client.fetch("GET", "/ops/leaks" + query)
    else:
        body = client.fetch("POST", f"/ops/leaks/{args.action}{query}", {})
    sys.stdout.write(body.decode("utf-8", "replace"))
    if not body.endswith(b"\n"):
        sys.stdout.write("\n")
    return 0
