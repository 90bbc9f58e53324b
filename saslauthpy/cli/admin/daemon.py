"""``saslauthpy-admin status``, ``cache flush`` and ``throttle show|clear``: questions for the
running daemon, through its control socket (controlclient.py)."""

from __future__ import annotations

import argparse
import ipaddress

from .. import terminal
from . import controlclient, hostconfig
from .output import Output


def run(args: argparse.Namespace, view: hostconfig.DaemonView, out: Output) -> int:
    if args.command == "status":
        reply = controlclient.ask(view.config, {"cmd": "status"})
        out.result(reply, [f"{key}: {value}" for key, value in _flat(reply) if key != "ok"])
    elif args.command == "cache":
        reply = controlclient.ask(view.config, {"cmd": "flush", "login": args.login,
                                                "realm": args.realm})
        out.result(reply, f"flushed {reply.get('flushed', 0)} cache entries")
    elif args.action == "show":
        reply = controlclient.ask(view.config, {"cmd": "throttle-show", **selector(args)})
        keys = reply.get("keys", [])
        if keys:
            text = [f"{'KEY':<40} {'LEVEL':>5} {'DELAY':>8}"] + [
                f"{k['key']:<40} {k['level']:>5} {k['delay']:>7.1f}s" for k in keys]
        elif "penalised" in reply:  # no selector: the table can only count its keys
            text = f"{reply['penalised']} penalised logins and addresses; name one to see it"
        else:
            text = "no penalties"
        out.result(keys if args.who else reply, text)
    else:
        reply = controlclient.ask(view.config, {"cmd": "throttle-clear", **selector(args)})
        out.result(reply, f"cleared {reply.get('cleared', 0)} penalties")
    return terminal.OK


def selector(args: argparse.Namespace) -> dict:
    """LOGIN|ADDRESS (and --realm) as the control protocol's selectors."""
    sel: dict = {}
    if args.who:
        try:
            ipaddress.ip_address(args.who.split(";")[0].strip("[]"))
            sel["address"] = args.who
        except ValueError:
            sel["login"] = args.who
    if args.realm is not None:
        sel["realm"] = args.realm
    return sel


def _flat(data: dict, prefix: str = ""):
    for key, value in data.items():
        if isinstance(value, dict):
            yield from _flat(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", ",".join(map(str, value)) if isinstance(value, list) else value
