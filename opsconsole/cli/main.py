"""The ``opsconsole`` command's client verbs: login, logout, whoami, enroll, audit verify.

Runs in the operator's process. ``opsconsole/__main__.py`` adds the host-side verbs.
A verb imports what only it needs inside its function: key signing (paramiko) for
``login``, the QR code and TOTP for ``enroll``, Tornado's websocket client for ``connect``,
and the HTTP client, the audit verifier and the rest load only for the verbs that use them:
``opsconsole --help`` imports argparse and this module.
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from opsconsole.cli import dump as dump_mod
from opsconsole.cli import leaks as leaks_mod
from opsconsole.errors import AuditChainError, ClientError, OpsConsoleError

if TYPE_CHECKING:
    from opsconsole.cli.client import Client


def build_parser() -> tuple[argparse.ArgumentParser, argparse._SubParsersAction[argparse.ArgumentParser]]:
    parser = argparse.ArgumentParser(prog="opsconsole", description="Reach a live Python process.")
    sub = parser.add_subparsers(dest="verb", required=True, metavar="VERB")

    p = sub.add_parser("login", help="log in with an SSH key and a TOTP code; caches the token")
    p.add_argument("url")
    p.add_argument("--user", required=True)
    p.add_argument("--identity", type=Path, help="private key (or .pub of an agent key); default: ssh-agent")
    p.add_argument("--totp", help="the 6-digit code (asked for when absent)")
    p.set_defaults(func=cmd_login)

    p = sub.add_parser("logout", help="revoke the cached token")
    p.add_argument("url")
    p.set_defaults(func=cmd_logout)

    p = sub.add_parser("whoami", help="show who the cached token belongs to")
    p.add_argument("url")
    p.set_defaults(func=cmd_whoami)

    p = sub.add_parser("enroll", help="add an operator: key line + TOTP secret + QR code")
    p.add_argument("user")
    p.add_argument("--key", required=True, help="public key file or line")
    p.add_argument("--role", choices=["operator", "viewer"], default="operator")
    p.add_argument("--keys-dir", type=Path, default=Path("keys"))
    p.add_argument("--reset-totp", action="store_true", help="replace the user's existing TOTP secret")
    p.set_defaults(func=cmd_enroll)

    dump_mod.add_parser(sub).set_defaults(func=cmd_dump)
    leaks_mod.add_parser(sub).set_defaults(func=cmd_leaks)

    p = sub.add_parser("connect", help="the REPL in this terminal (Ctrl-] leaves)")
    p.add_argument("url")
    p.set_defaults(func=cmd_connect)

    p = sub.add_parser("open", help="open the web console with a one-time link")
    p.add_argument("url")
    p.add_argument("--print", action="store_true", help="print the link instead of opening a browser")
    p.add_argument(
        "--view", choices=("terminal", "memory"), default="terminal", help="what the page shows first"
    )
    p.set_defaults(func=cmd_open)

    p = sub.add_parser("audit", help="audit log tools")
    audit_sub = p.add_subparsers(dest="audit_verb", required=True, metavar="ACTION")
    v = audit_sub.add_parser("verify", help="check the hash chain of an audit log")
    v.add_argument("file", type=Path)
    v.add_argument(
        "--head",
        action="append",
        default=[],
        metavar="SEQ:HASH",
        help="an anchored head from the host's log (opsconsole-audit-head lines); the file must reach "
        "it with the same hash. Repeatable.",
    )
    v.set_defaults(func=cmd_audit_verify)
    return parser, sub


def cmd_login(args: argparse.Namespace) -> int:
    from opsconsole.cli import login as login_mod
    from opsconsole.cli.client import Client, TokenCache

    key = login_mod.choose_signer(args.identity)
    client = Client(args.url)
    result = login_mod.login(
        client,
        user=args.user,
        key=key,
        totp=lambda: args.totp or getpass.getpass("TOTP code: "),
        used=login_mod.UsedCodes(),
    )
    TokenCache().put(args.url, result.token, args.user)
    print(
        f"logged in to {client.url} as {args.user} ({result.role}); session expires in {result.expires_in}s"
    )
    return 0


def _authed(url: str) -> Client:
    from opsconsole.cli.client import Client, TokenCache

    token = TokenCache().get(url)
    if token is None:
        raise ClientError(f"not logged in to {url}; run: opsconsole login {url} --user USER")
    return Client(url, token)


def cmd_dump(args: argparse.Namespace) -> int:
    dump_mod.check(args)  # a missing option is reported before the token is looked up
    return dump_mod.run(_authed(args.url), args)


def cmd_leaks(args: argparse.Namespace) -> int:
    leaks_mod.check(args)
    return leaks_mod.run(_authed(args.url), args)


def cmd_connect(args: argparse.Namespace) -> int:
    from opsconsole.cli import connect

    client = _authed(args.url)
    assert client.token is not None
    return connect.run(client.url, client.token)


def cmd_open(args: argparse.Namespace) -> int:
    import webbrowser

    link = _authed(args.url).post("/ops/auth/ticket")
    # The ticket rides in the fragment, which browsers never send to a server.
    url = link["url"] + ("&view=memory" if args.view == "memory" else "")
    if args.print or not webbrowser.open(url):
        print(url)
        print(f"(one-time link, valid {link['expires_in']} s)", file=sys.stderr)
    else:
        print(f"opened the web console in your browser (link valid {link['expires_in']} s)")
    return 0


def cmd_logout(args: argparse.Namespace) -> int:
    from opsconsole.cli.client import TokenCache

    try:
        _authed(args.url).post("/ops/auth/logout")
    finally:
        TokenCache().drop(args.url)
    print("logged out")
    return 0


def cmd_whoami(args: argparse.Namespace) -> int:
    print(json.dumps(_authed(args.url).get("/ops/whoami")))
    return 0


def cmd_enroll(args: argparse.Namespace) -> int:
    from opsconsole.cli import enroll as enroll_mod

    e = enroll_mod.enroll(
        args.user, args.key, role=args.role, keys_dir=args.keys_dir, reset_totp=args.reset_totp
    )
    print(f"added to {args.keys_dir / 'authorized_keys'}:\n  {e.key_line}\n")
    print("Scan this with an authenticator app (or enter the URI):")
    print(e.qr)
    print(e.otpauth_uri)
    return 0


def cmd_audit_verify(args: argparse.Namespace) -> int:
    from opsconsole.audit import head, verify_file

    try:
        heads = [head.parse(text) for text in args.head]
    except ValueError as exc:
        print(f"opsconsole: --head: {exc}", file=sys.stderr)
        return 2
    try:
        report = verify_file(args.file, heads)
    except AuditChainError as exc:
        print(f"BROKEN: {exc}", file=sys.stderr)
        return 1
    anchored = f"; reaches the anchored head(s) {', '.join(map(str, heads))}" if heads else ""
    print(f"ok: {report.records} records, chain intact, last hash {report.last_hash}{anchored}")
    return 0


def run(parser: argparse.ArgumentParser, argv: list[str] | None = None) -> int:
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except OpsConsoleError as exc:
        print(f"opsconsole: {exc}", file=sys.stderr)
        return 2 if not isinstance(exc, ClientError) or exc.status is None else 1
    except KeyboardInterrupt:
        return 130


def main(argv: list[str] | None = None) -> int:
    parser, _ = build_parser()
    return run(parser, argv)
