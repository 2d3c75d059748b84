"""
Builders of the certificates of a private netbore PKI, on C{cryptography}:
a CA, a server certificate for a tunnel domain and its wildcard, and agent
client certificates that name an account.

Pure functions: the time is passed in, nothing is read or written.
"""

from __future__ import annotations

import datetime
import ipaddress
import re
from collections.abc import Sequence

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from ..names import is_valid_label

__all__ = [
    "CA_DAYS",
    "LEAF_DAYS",
    "MAX_LEAF_DAYS",
    "PrivateKey",
    "UsageError",
    "account_uri",
    "check_account",
    "check_domain",
    "make_agent",
    "make_ca",
    "make_server",
    "new_key",
    "server_names",
]

#: Default validity of a CA, in days (ten years).
CA_DAYS = 3650
#: Default and longest validity of a server or agent certificate, in days:
#: the CA/Browser Forum's limit, which Apple's clients also apply.
LEAF_DAYS = MAX_LEAF_DAYS = 397
#: How far back C{notBefore} is put, so that a peer whose clock is a little
#: behind accepts a certificate made a moment ago.
BACKDATE = datetime.timedelta(minutes=5)

PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey

# The rule of account names in the edge's --api-keys-file
# (netbore.auth.apikeys): an agent certificate names an account that can exist.
_ACCOUNT = re.compile(r"\A[A-Za-z0-9][A-Za-z0-9._@+-]{0,63}\Z")


class UsageError(ValueError):
    """
    An argument no certificate can be made from (a bad domain, account,
    name or validity); the message says which and why.
    """


def new_key(use_rsa: bool = False) -> PrivateKey:
    """
    A fresh private key: EC P-256, or RSA 2048 when C{use_rsa}.
    """
    if use_rsa:
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return ec.generate_private_key(ec.SECP256R1())


def check_domain(domain: str) -> str:
    """
    The tunnel domain C{domain}, case-folded, when a wildcard certificate
    under it is honoured by TLS clients.

    @raise UsageError: for anything but two or more DNS labels.  A
        wildcard directly under one label (C{*.localhost}, C{*.com}) is
        refused by OpenSSL's and browsers' name checks.
    """
    folded = domain.lower().rstrip(".")
    labels = folded.split(".")
    if not all(is_valid_label(label) for label in labels):
        raise UsageError(f"{domain!r} is not a DNS name: labels of 1-63 characters of a-z, 0-9 and '-'")
    if len(labels) < 2:
        raise UsageError(
            f"a wildcard under a one-label domain ({'*.' + folded!r}) is refused by TLS clients; "
            f"use a domain of two labels or more, such as tunnel.{folded}"
        )
    return folded


def check_account(account: str) -> str:
    """
    C{account} unchanged when it may be an account of the edge's
    C{--api-keys-file}.

    @raise UsageError: otherwise.
    """
    if not _ACCOUNT.match(account):
        raise UsageError(
            f"{account!r} is not an account name: 1-64 characters of letters, digits and ._@+- "
            "starting with a letter or digit"
        )
    return account


def account_uri(account: str) -> str:
    """
    The SAN URI that names C{account} in an agent certificate.
    """
    return f"netbore:account:{account}"


def _extra_name(name: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        pass
    folded = name.lower().rstrip(".")
    labels = folded.split(".")
    if labels[0] == "*" and len(labels) > 2:
        labels = labels[1:]
    if not all(is_valid_label(label) for label in labels):
        raise UsageError(f"{name!r} is neither a DNS name (a leading '*.' allowed) nor an IP address")
    return x509.DNSName(folded)


def server_names(domain: str, extra: Sequence[str] = ()) -> list[x509.GeneralName]:
    """
    The subject alternative names of the server certificate of C{domain}:
    the domain, its wildcard, then each of C{extra} (DNS names, wildcards
    or IP addresses) once.
    """
    domain = check_domain(domain)
    names: list[x509.GeneralName] = [x509.DNSName(domain), x509.DNSName(f"*.{domain}")]
    for name in extra:
        general = _extra_name(name)
        if general not in names:
            names.append(general)
    return names


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _days(days: int, longest: int) -> datetime.timedelta:
    if not 1 <= days <= longest:
        raise UsageError(f"--days must be between 1 and {longest}, not {days}")
    return datetime.timedelta(days=days)


def _key_usage(key: PrivateKey, *, ca: bool) -> x509.KeyUsage:
    # RSA key exchange needs keyEncipherment; EC keys only sign.
    return x509.KeyUsage(
        digital_signature=not ca,
        content_commitment=False,
        key_encipherment=not ca and isinstance(key, rsa.RSAPrivateKey),
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )


def make_ca(
    key: PrivateKey, now: datetime.datetime, *, days: int = CA_DAYS, common_name: str = "netbore private CA"
) -> x509.Certificate:
    """
    A self-signed CA certificate for C{key}, valid C{days} from C{now},
    that may sign leaf certificates only (path length 0).
    """
    validity = _days(days, 100 * 365)
    subject = _name(common_name)
    public = key.public_key()
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + validity)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(key, ca=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .sign(key, hashes.SHA256())
    )


def _leaf(
    ca: x509.Certificate,
    ca_key: PrivateKey,
    key: PrivateKey,
    now: datetime.datetime,
    days: int,
    common_name: str,
    names: list[x509.GeneralName],
    usage: x509.ObjectIdentifier,
) -> x509.Certificate:
    # A certificate never outlives the CA that vouches for it.
    not_after = min(now + _days(days, MAX_LEAF_DAYS), ca.not_valid_after_utc)
    public = key.public_key()
    return (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(ca.subject)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(key, ca=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )


def make_server(
    ca: x509.Certificate,
    ca_key: PrivateKey,
    key: PrivateKey,
    now: datetime.datetime,
    domain: str,
    extra: Sequence[str] = (),
    *,
    days: int = LEAF_DAYS,
) -> x509.Certificate:
    """
    A server certificate (C{serverAuth}) for C{key}, signed by C{ca}, for
    C{domain}, C{*.domain} and the C{extra} names (see L{server_names}).
    """
    names = server_names(domain, extra)
    return _leaf(ca, ca_key, key, now, days, check_domain(domain), names, ExtendedKeyUsageOID.SERVER_AUTH)


def make_agent(
    ca: x509.Certificate,
    ca_key: PrivateKey,
    key: PrivateKey,
    now: datetime.datetime,
    account: str,
    *,
    days: int = LEAF_DAYS,
) -> x509.Certificate:
    """
    An agent's client certificate (C{clientAuth}) for C{key}, signed by
    C{ca}, naming C{account} twice: subject CN and SAN URI
    C{netbore:account:<account>}.
    """
    account = check_account(account)
    names: list[x509.GeneralName] = [x509.UniformResourceIdentifier(account_uri(account))]
    return _leaf(ca, ca_key, key, now, days, account, names, ExtendedKeyUsageOID.CLIENT_AUTH)
