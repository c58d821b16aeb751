"""``opsconsole demo``: a small Tornado web app with a deliberate leak and the console embedded.

The app runs on the main thread's asyncio loop; the console is started from inside that
running loop through the public API, exactly as a service would embed it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tornado.httpserver
import tornado.netutil
import tornado.web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

import opsconsole
from opsconsole.auth.totp import load_secrets
from opsconsole.cli.enroll import enroll, qr_text
from opsconsole.private_files import ensure_private_dir, write_private

USER = "demo"


class LeakyRecord:
    """What the demo leaks: one per ``/leak`` request, kept forever in ``LEAKED``."""

    def __init__(self, n: int, payload: str) -> None:
        self.n = n
        self.payload = payload


LEAKED: list[LeakyRecord] = []


class IndexHandler(tornado.web.RequestHandler):
    def get(self) -> None:
        self.write({"app": "opsconsole demo", "leaked": len(LEAKED)})


class LeakHandler(tornado.web.RequestHandler):
    def get(self) -> None:
        LEAKED.append(LeakyRecord(len(LEAKED), "x" * 200 + str(len(LEAKED))))  # the deliberate leak
        self.write({"leaked": len(LEAKED)})


def busy_spin(seconds: float) -> int:
    """Pure-Python busy loop: holds the app's thread (and its event loop) for ``seconds``."""
    deadline = time.monotonic() + seconds
    spins = 0
    while time.monotonic() < deadline:
        spins += 1
    return spins


class SpinHandler(tornado.web.RequestHandler):
    def get(self) -> None:
        try:
            seconds = float(self.get_query_argument("seconds", "5"))
        except ValueError:
            seconds = -1.0
        if not 0 < seconds <= 120:
            self.set_status(400)
            self.finish({"error": "seconds must be in (0, 120]"})
            return
        # Deliberately blocks the app's event loop: watch the console answer meanwhile.
        self.write({"spun": seconds, "spins": busy_spin(seconds)})


@dataclass(frozen=True, slots=True)
class DemoState:
    dir: Path
    identity: Path
    keys_dir: Path
    totp_secret: str


def prepare_state(state: Path) -> DemoState:
    """First run: an operator key pair, authorized_keys and a TOTP secret. Later runs reuse them."""
    ensure_private_dir(state)
    identity, keys_dir = state / "id_ed25519", state / "keys"
    if not identity.exists():
        key = ed25519.Ed25519PrivateKey.generate()
        private = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
        )
        public = key.public_key().public_bytes(
            serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
        )
        write_private(identity, private.decode())
        write_private(identity.with_name("id_ed25519.pub"), public.decode() + f" {USER}@opsconsole-demo\n")
    if not (keys_dir / "totp_secrets").exists():
        enroll(USER, str(identity.with_name("id_ed25519.pub")), role="operator", keys_dir=keys_dir)
    secret = load_secrets(keys_dir / "totp_secrets")[USER]
    return DemoState(state, identity, keys_dir, secret)


def main(args: argparse.Namespace) -> int:
    """The ``demo`` verb (its flags are defined in ``opsconsole/__main__.py``). Main thread."""
    return asyncio.run(serve(args))


async def serve(args: argparse.Namespace) -> int:
    # runs on the main thread's loop: the "host application"
    st = prepare_state(args.state.resolve())
    app = tornado.web.Application([(r"/", IndexHandler), (r"/leak", LeakHandler), (r"/spin", SpinHandler)])
    sockets = tornado.netutil.bind_sockets(args.app_port, address="127.0.0.1")
    server = tornado.httpserver.HTTPServer(app)
    server.add_sockets(sockets)
    app_url = f"http://127.0.0.1:{sockets[0].getsockname()[1]}"
    console = opsconsole.start(
        port=args.port,
        state_dir=st.dir / "state",
        authorized_keys=st.keys_dir / "authorized_keys",
        totp_secrets=st.keys_dir / "totp_secrets",
        ssh_port=None if args.ssh_port < 0 else args.ssh_port,
        leak_interval=args.leak_interval,
    )
    info = {
        "url": console.url,
        "user": USER,
        "identity": str(st.identity),
        "totp_secret": st.totp_secret,
        "authorized_keys": str(st.keys_dir / "authorized_keys"),
        "app_url": app_url,
        "ssh_port": console.ssh_port,
    }
    write_private(st.dir / "demo.json", json.dumps(info, indent=2) + "\n")
    known_hosts = st.dir / "known_hosts"
    if console.ssh is not None:
        # what `ssh` would ask the operator to confirm, written down so the demo's command pins it
        key = console.ssh.host_key
        known_hosts.write_text(f"[127.0.0.1]:{console.ssh_port} {key.get_name()} {key.get_base64()}\n")
    _print_banner(info, st, args.leak_interval)
    if console.ssh is not None:
        print(
            f"""Or over SSH (key, then the TOTP code; host key {console.ssh.fingerprint}):
  ssh -p {console.ssh_port} -i {st.identity} -o UserKnownHostsFile={known_hosts} {USER}@127.0.0.1
""",
            flush=True,
        )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        console.stop()
        server.stop()
        print("\nstopped", flush=True)
    return 0


def _print_banner(info: dict[str, Any], st: DemoState, leak_interval: float) -> None:
    uri = opsconsole_uri(st.totp_secret)
    cli = _cli_command()
    leaks = f"running every {leak_interval:g} s" if leak_interval > 0 else "off"
    print(
        f"""opsconsole demo
  app      {info["app_url"]}/      (/leak keeps one more LeakyRecord per call;
                                      /spin?seconds=N busy-loops the app's main thread)
  console  {info["url"]}
  state    {st.dir / "demo.json"}
  audit    {st.dir / "state" / "audit.jsonl"}   ({cli} audit verify FILE)

Log in (key file, or ssh-add it and drop --identity):
  {cli} login {info["url"]} --user {USER} --identity {st.identity}
  {cli} whoami {info["url"]}
  {cli} open {info["url"]} --view memory      (the memory dashboard)
Each TOTP code logs in once: for a second login, wait for the next code.

Leak detector ({leaks}):
  {cli} leaks {info["url"]} report    (also: start --interval S, stop)

The TOTP code comes from an authenticator app (scan below) or, for scripts,
from the totp_secret in demo.json. Ctrl-C stops the demo.
{qr_text(uri)}{uri}
""",
        flush=True,
    )


def _cli_command() -> str:
    # The command as this demo was started with it: `make demo` runs .venv/bin/opsconsole,
    # which is on no PATH until the venv is activated.
    script = Path(sys.executable).with_name("opsconsole")
    if not script.is_file():
        return f"{sys.executable} -m opsconsole"
    try:
        return str(script.relative_to(Path.cwd()))
    except ValueError:
        return str(script)


def opsconsole_uri(secret: str) -> str:
    from opsconsole.auth.totp import provisioning_uri

    return provisioning_uri(secret, user=USER, issuer="opsconsole-demo")


if __name__ == "__main__":
    sys.exit(
        asyncio.run(
            serve(
                argparse.Namespace(
                    state=Path(".opsconsole-demo"), port=8780, app_port=8000, ssh_port=8722, leak_interval=0.0
                )
            )
        )
    )
