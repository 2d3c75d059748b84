"""
The C{python -m netbore.certs} command: a private CA, server certificates
for a tunnel domain and client certificates for agents::

    python -m netbore.certs ca     --out DIR
    python -m netbore.certs server --ca DIR --domain tunnel.example.com [--name extra.host]...
    python -m netbore.certs agent  --ca DIR --account alice

Exit status 0 with one line saying what was written; 2 for a usage error;
1 when a file exists already (without C{--force}) or cannot be read or
written.
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys
from collections.abc import Callable, Sequence
from typing import TextIO

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa

from .build import CA_DAYS, LEAF_DAYS, PrivateKey, UsageError, account_uri, make_agent, make_ca, make_server, new_key
from .files import CA_CERT, CA_KEY, FileError, Output, cert_pem, key_pem, load_ca, write_all

__all__ = ["main"]

PROG = "python -m netbore.certs"

Now = Callable[[], datetime.datetime]


def _utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def _kind(key: PrivateKey) -> str:
    return "RSA 2048" if isinstance(key, rsa.RSAPrivateKey) else "EC P-256"


def _until(cert: x509.Certificate) -> str:
    return cert.not_valid_after_utc.strftime("%Y-%m-%d")


def _ca(args: argparse.Namespace, now: Now) -> str:
    key = new_key(args.rsa)
    cert = make_ca(key, now(), days=CA_DAYS if args.days is None else args.days, common_name=args.cn)
    cert_path, key_path = os.path.join(args.out, CA_CERT), os.path.join(args.out, CA_KEY)
    write_all([Output(cert_path, cert_pem(cert), False), Output(key_path, key_pem(key), True)], args.force)
    return (
        f"wrote {cert_path} (CA certificate {args.cn!r}, {_kind(key)}, valid until {_until(cert)}) "
        f"and {key_path} (its private key, mode 0600)"
    )


def _server(args: argparse.Namespace, now: Now) -> str:
    ca, ca_key = load_ca(args.ca)
    key = new_key(args.rsa)
    cert = make_server(
        ca, ca_key, key, now(), args.domain, args.name, days=LEAF_DAYS if args.days is None else args.days
    )
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    shown = ", ".join(str(n.value) for n in names)
    path = os.path.join(args.out or args.ca, f"{args.domain.lower().rstrip('.')}.pem")
    # The certificate first, then its key: Twisted's ssl: endpoint (as
    # privateKey= and certKey=) and txsni-style directories read this.
    write_all([Output(path, cert_pem(cert) + key_pem(key), True)], args.force)
    return (
        f"wrote {path} (server certificate and key, {_kind(key)}, mode 0600) for {shown}, "
        f"valid until {_until(cert)}, signed by {os.path.join(args.ca, CA_CERT)}"
    )


def _agent(args: argparse.Namespace, now: Now) -> str:
    ca, ca_key = load_ca(args.ca)
    key = new_key(args.rsa)
    cert = make_agent(ca, ca_key, key, now(), args.account, days=LEAF_DAYS if args.days is None else args.days)
    out = args.out or args.ca
    cert_path = os.path.join(out, f"agent-{args.account}.crt")
    key_path = os.path.join(out, f"agent-{args.account}.key")
    write_all([Output(cert_path, cert_pem(cert), False), Output(key_path, key_pem(key), True)], args.force)
    return (
        f"wrote {cert_path} (client certificate for account {args.account}: CN {args.account}, "
        f"SAN {account_uri(args.account)}, {_kind(key)}, valid until {_until(cert)}) "
        f"and {key_path} (its private key, mode 0600)"
    )


def _common(command: argparse.ArgumentParser, days: int) -> None:
    command.add_argument("--days", type=int, default=None, help=f"validity in days (default {days})")
    command.add_argument("--rsa", action="store_true", help="an RSA 2048 key instead of EC P-256")
    command.add_argument("--force", action="store_true", help="replace files that exist already")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, description="Make a private CA and the certificates of a netbore edge and its agents."
    )
    commands = parser.add_subparsers(dest="command", required=True)

    ca = commands.add_parser("ca", help=f"a new private CA: {CA_CERT} and {CA_KEY} in --out")
    ca.add_argument("--out", required=True, help="directory to write the CA in (created 0700 if missing)")
    ca.add_argument("--cn", default="netbore private CA", help="the CA's common name")
    _common(ca, CA_DAYS)
    ca.set_defaults(handler=_ca)

    server = commands.add_parser(
        "server", help="a server certificate for DOMAIN and *.DOMAIN: DOMAIN.pem (certificate and key)"
    )
    server.add_argument("--ca", required=True, help="the CA's directory")
    server.add_argument("--domain", required=True, help="the edge's --domain (two labels or more)")
    server.add_argument(
        "--name", action="append", default=[], help="another DNS name, wildcard or IP address (repeatable)"
    )
    server.add_argument("--out", default=None, help="directory to write in (default: the CA's)")
    _common(server, LEAF_DAYS)
    server.set_defaults(handler=_server)

    agent = commands.add_parser(
        "agent", help="an agent's client certificate for ACCOUNT: agent-ACCOUNT.crt and agent-ACCOUNT.key"
    )
    agent.add_argument("--ca", required=True, help="the CA's directory")
    agent.add_argument("--account", required=True, help="the account (of the edge's --api-keys-file)")
    agent.add_argument("--out", default=None, help="directory to write in (default: the CA's)")
    _common(agent, LEAF_DAYS)
    agent.set_defaults(handler=_agent)
    return parser


def main(argv: Sequence[str] | None = None, out: TextIO | None = None, now: Now = _utcnow) -> int:
    """
    Run the command in C{argv}, printing its one-line summary to C{out}
    (standard output); the exit status (see the module's docstring).
    """
    parser = _parser()
    args = parser.parse_args(argv)  # exits 2 with the usage for a bad command line
    try:
        summary = args.handler(args, now)
    except UsageError as e:
        parser.exit(2, f"{PROG} {args.command}: error: {e}\n")
    except FileError as e:
        print(f"{PROG} {args.command}: error: {e}", file=sys.stderr)
        return 1
    print(summary, file=out if out is not None else sys.stdout)
    return 0
