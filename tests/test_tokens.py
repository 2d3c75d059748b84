"""
Tests for L{netbore.auth}: key store, keyrings, the token authority, and
the C{python -m netbore.auth.keys} command.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import stat
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet.task import Clock

from netbore.auth import (
    EPHEMERAL,
    KINDS,
    LEEWAY,
    MANAGEMENT,
    RECREATE,
    HMACKeyring,
    Keyring,
    KeyringError,
    RSAKeyring,
    TokenAuthority,
    TokenError,
    generate_key,
    hmac_kid,
    keys,
    load_keyring,
    read_keys,
    rsa_kid,
)

ISSUER = "https://edge.example"
NOW = 1_700_000_000
SECRET_1 = b"s1-" + b"a" * 40
SECRET_2 = b"s2-" + b"b" * 40

# Arguments that make a valid token of each kind.
KIND_ARGS: dict[str, dict[str, Any]] = {
    EPHEMERAL: {"sub": "tun-1", "name": "myapp"},
    RECREATE: {"sub": "tun-1", "name": "myapp"},
    MANAGEMENT: {"sub": "alice", "role": "admin"},
}


def _clock() -> Clock:
    clock = Clock()
    clock.advance(NOW)
    return clock


@pytest.fixture(scope="module")
def rsa_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    """
    A data dir with one generated key, shared by the tests that only read it.
    """
    data_dir = str(tmp_path_factory.mktemp("edge") / "data")
    load_keyring(data_dir)
    return data_dir


@pytest.fixture(scope="module")
def rsa_keyring(rsa_dir: str) -> Keyring:
    return load_keyring(rsa_dir)


@pytest.fixture
def clock() -> Clock:
    return _clock()


@pytest.fixture
def authority(rsa_keyring: Keyring, clock: Clock) -> TokenAuthority:
    return TokenAuthority(rsa_keyring, ISSUER, clock)


def _issue(authority: TokenAuthority, kind: str, ttl: float = 600) -> str:
    token, _ = authority.issue(kind, ttl=ttl, **KIND_ARGS[kind])
    return token


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _segment(value: object) -> str:
    return _b64(json.dumps(value).encode("utf-8"))


def _claims(**changes: Any) -> dict[str, Any]:
    claims: dict[str, Any] = {
        "iss": ISSUER,
        "sub": "tun-1",
        "iat": NOW,
        "nbf": NOW,
        "exp": NOW + 600,
        "jti": "j1",
        "token_use": EPHEMERAL,
        "name": "myapp",
    }
    claims.update(changes)
    return claims


def _rs256(keyring: Keyring, payload: object, header: dict[str, Any] | None = None) -> str:
    """
    A token signed by hand with C{keyring}'s signing key, with any payload.
    """
    kid, key = keyring.signing_key()
    head = {"alg": "RS256", "typ": "JWT", "kid": kid} if header is None else header
    signing_input = f"{_segment(head)}.{_segment(payload)}"
    signature = key.sign(signing_input.encode("ascii"), padding.PKCS1v15(), hashes.SHA256())
    return f"{signing_input}.{_b64(signature)}"


def _refused(authority: TokenAuthority, token: Any, kind: str = EPHEMERAL, **kw: Any) -> TokenError:
    with pytest.raises(TokenError) as info:
        authority.verify(token, kind, **kw)
    return info.value


# -- round trips ------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_round_trip_rs256(authority: TokenAuthority, rsa_keyring: Keyring, kind: str) -> None:
    token, exp = authority.issue(kind, ttl=600, **KIND_ARGS[kind])
    claims = authority.verify(token, kind, **{k: v for k, v in KIND_ARGS[kind].items() if k != "role"})
    assert (claims.token_use, claims.sub, claims.iat, claims.exp) == (kind, KIND_ARGS[kind]["sub"], NOW, NOW + 600)
    assert exp == NOW + 600
    assert claims.name == KIND_ARGS[kind].get("name")
    assert claims.role == KIND_ARGS[kind].get("role")
    assert claims.raw["iss"] == ISSUER and claims.raw["nbf"] == NOW and claims.raw["jti"]
    header = jwt.get_unverified_header(token)
    assert header["alg"] == "RS256"
    assert header["kid"] == rsa_keyring.signing_key()[0]


@pytest.mark.parametrize("kind", KINDS)
def test_round_trip_hs256(tmp_path: Path, clock: Clock, kind: str) -> None:
    secret_file = tmp_path / "secret"
    secret_file.write_bytes(SECRET_1 + b"\n")
    authority = TokenAuthority(load_keyring(str(tmp_path / "d"), str(secret_file)), ISSUER, clock)
    token, _ = authority.issue(kind, ttl=60, **KIND_ARGS[kind])
    assert authority.verify(token, kind).sub == KIND_ARGS[kind]["sub"]
    assert jwt.get_unverified_header(token)["alg"] == "HS256"
    assert not (tmp_path / "d").exists()


def test_jti_is_random(authority: TokenAuthority) -> None:
    first = authority.verify(_issue(authority, EPHEMERAL), EPHEMERAL)
    second = authority.verify(_issue(authority, EPHEMERAL), EPHEMERAL)
    assert first.raw["jti"] != second.raw["jti"]


@pytest.mark.parametrize(
    "kind, args",
    [
        ("bogus", {"sub": "x", "name": "n"}),
        (EPHEMERAL, {"sub": "x"}),
        (RECREATE, {"sub": "x", "name": "n", "role": "admin"}),
        (MANAGEMENT, {"sub": "x"}),
        (MANAGEMENT, {"sub": "x", "role": "user", "name": "n"}),
        (EPHEMERAL, {"sub": "", "name": "n"}),
        (EPHEMERAL, {"sub": "x", "name": "n", "ttl": 0.5}),
        (EPHEMERAL, {"sub": "x", "name": "n", "ttl": float("nan")}),
    ],
)
def test_issue_refuses_bad_arguments(authority: TokenAuthority, kind: str, args: dict[str, Any]) -> None:
    args = {"ttl": 60, **args}
    with pytest.raises(ValueError):
        authority.issue(kind, **args)


# -- algorithm and key id -----------------------------------------------------


def test_alg_none_refused(authority: TokenAuthority, rsa_keyring: Keyring) -> None:
    kid = rsa_keyring.signing_key()[0]
    token = f"{_segment({'alg': 'none', 'typ': 'JWT', 'kid': kid})}.{_segment(_claims())}."
    assert _refused(authority, token).reason == "algorithm"


def test_rsa_public_pem_as_hs256_secret_refused(authority: TokenAuthority, rsa_keyring: Keyring) -> None:
    kid, key = rsa_keyring.signing_key()
    pem = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    signing_input = f"{_segment({'alg': 'HS256', 'typ': 'JWT', 'kid': kid})}.{_segment(_claims())}"
    signature = hmac.new(pem, signing_input.encode("ascii"), hashlib.sha256).digest()
    error = _refused(authority, f"{signing_input}.{_b64(signature)}")
    assert error.reason == "algorithm"


def test_rs256_token_refused_by_hs256_edge(authority: TokenAuthority, clock: Clock) -> None:
    hs = TokenAuthority(HMACKeyring([SECRET_1]), ISSUER, clock)
    assert _refused(hs, _issue(authority, EPHEMERAL)).reason == "algorithm"


def test_unknown_kid_refused(tmp_path: Path, authority: TokenAuthority, clock: Clock) -> None:
    other = TokenAuthority(load_keyring(str(tmp_path)), ISSUER, clock)
    error = _refused(authority, _issue(other, EPHEMERAL))
    assert error.reason == "kid"
    assert "unknown key" in str(error)


def test_missing_kid_refused(authority: TokenAuthority, rsa_keyring: Keyring) -> None:
    token = _rs256(rsa_keyring, _claims(), header={"alg": "RS256", "typ": "JWT"})
    error = _refused(authority, token)
    assert error.reason == "kid"
    assert "no key id" in str(error)


def test_crit_header_refused(authority: TokenAuthority, rsa_keyring: Keyring) -> None:
    kid = rsa_keyring.signing_key()[0]
    token = _rs256(rsa_keyring, _claims(), header={"alg": "RS256", "kid": kid, "crit": ["exp"]})
    _refused(authority, token)


def test_hand_signed_token_accepted(authority: TokenAuthority, rsa_keyring: Keyring) -> None:
    """
    The hand-built tokens of the tests below are refused for the reason
    each one tests, not because they are built wrong.
    """
    assert authority.verify(_rs256(rsa_keyring, _claims()), EPHEMERAL).sub == "tun-1"


# -- signature ----------------------------------------------------------------


def test_tampered_payload_refused(authority: TokenAuthority) -> None:
    header, _, signature = _issue(authority, EPHEMERAL).split(".")
    forged = f"{header}.{_segment(_claims(sub='tun-2'))}.{signature}"
    assert _refused(authority, forged).reason == "signature"


def test_tampered_signature_refused(authority: TokenAuthority) -> None:
    token = _issue(authority, EPHEMERAL)
    signing_input, signature = token.rsplit(".", 1)
    middle = len(signature) // 2
    flipped = "A" if signature[middle] != "A" else "B"
    forged = f"{signing_input}.{signature[:middle]}{flipped}{signature[middle + 1 :]}"
    assert _refused(authority, forged).reason == "signature"


def test_error_does_not_echo_token(authority: TokenAuthority) -> None:
    token = _issue(authority, EPHEMERAL)
    error = _refused(authority, token[:-8] + "AAAAAAAA")
    assert token[:20] not in str(error)
    assert token[-8:] not in str(error)


# -- time ---------------------------------------------------------------------


def test_expired_beyond_skew_refused(authority: TokenAuthority, clock: Clock) -> None:
    token = _issue(authority, EPHEMERAL, ttl=600)
    clock.advance(600 + LEEWAY + 1)
    assert _refused(authority, token).reason == "expired"


def test_expired_within_skew_accepted(authority: TokenAuthority, clock: Clock) -> None:
    token = _issue(authority, EPHEMERAL, ttl=600)
    clock.advance(600 + LEEWAY - 1)
    assert authority.verify(token, EPHEMERAL).exp == NOW + 600


def test_nbf_in_future_refused(authority: TokenAuthority, rsa_keyring: Keyring) -> None:
    token = _rs256(rsa_keyring, _claims(nbf=NOW + LEEWAY + 5))
    assert _refused(authority, token).reason == "not_yet_valid"


def test_nbf_within_skew_accepted(authority: TokenAuthority, rsa_keyring: Keyring) -> None:
    token = _rs256(rsa_keyring, _claims(nbf=NOW + LEEWAY - 5))
    assert authority.verify(token, EPHEMERAL).sub == "tun-1"


def test_iat_in_future_refused(authority: TokenAuthority, rsa_keyring: Keyring) -> None:
    token = _rs256(rsa_keyring, _claims(iat=NOW + LEEWAY + 5))
    assert _refused(authority, token).reason == "issued_in_future"


def test_times_use_injected_clock(authority: TokenAuthority, clock: Clock) -> None:
    """
    The clock is at 2023; the wall clock is later.  A token valid on the
    injected clock is accepted although it expired by the wall clock.
    """
    clock.advance(-10 * 365 * 86400)
    token = _issue(authority, EPHEMERAL, ttl=60)
    assert authority.verify(token, EPHEMERAL).exp < NOW


# -- claims -------------------------------------------------------------------


def test_wrong_issuer_refused(authority: TokenAuthority, rsa_keyring: Keyring, clock: Clock) -> None:
    other = TokenAuthority(rsa_keyring, "https://evil.example", clock)
    assert _refused(authority, _issue(other, EPHEMERAL)).reason == "issuer"


@pytest.mark.parametrize("issued, expected", [(a, b) for a in KINDS for b in KINDS if a != b])
def test_token_use_swap_refused(authority: TokenAuthority, issued: str, expected: str) -> None:
    error = _refused(authority, _issue(authority, issued), expected)
    assert error.reason == "token_use"


def test_sub_mismatch_refused(authority: TokenAuthority) -> None:
    token = _issue(authority, RECREATE)
    assert authority.verify(token, RECREATE, sub="tun-1").sub == "tun-1"
    assert _refused(authority, token, RECREATE, sub="tun-2").reason == "sub"


def test_name_mismatch_refused(authority: TokenAuthority) -> None:
    token = _issue(authority, EPHEMERAL)
    assert authority.verify(token, EPHEMERAL, name="myapp").name == "myapp"
    assert _refused(authority, token, EPHEMERAL, sub="tun-1", name="other").reason == "name"


def test_management_sub_mismatch_refused(authority: TokenAuthority) -> None:
    token = _issue(authority, MANAGEMENT)
    assert _refused(authority, token, MANAGEMENT, sub="bob").reason == "sub"


@pytest.mark.parametrize(
    "payload",
    [
        ["not", "a", "dict"],
        "a string",
        _claims(exp="tomorrow"),
        _claims(exp=float(NOW + 600)),
        _claims(exp=True),
        _claims(iat=None),
        {k: v for k, v in _claims().items() if k != "exp"},
        {k: v for k, v in _claims().items() if k != "token_use"},
        {k: v for k, v in _claims().items() if k != "name"},
        _claims(sub=7),
    ],
)
def test_bad_claims_refused(authority: TokenAuthority, rsa_keyring: Keyring, payload: object) -> None:
    _refused(authority, _rs256(rsa_keyring, payload))


@pytest.mark.parametrize(
    "garbage",
    [
        "",
        "garbage",
        "a.b",
        "a.b.c",
        "a.b.c.d",
        "!!!.@@@.###",
        "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0",
        f"{_segment([1, 2])}.{_segment({})}.AAAA",
        f"{_segment({'alg': 'RS256', 'kid': 'x'})}.%%%.AAAA",
        f"{_b64(b'{not json')}.{_segment({})}.AAAA",
        "é.é.é",
        "x" * 100_000,
        None,
        b"a.b.c",
    ],
)
def test_garbage_refused(authority: TokenAuthority, garbage: Any) -> None:
    error = _refused(authority, garbage)
    assert error.reason in ("malformed", "algorithm", "kid")


@settings(max_examples=200, deadline=None)
@given(st.text() | st.lists(st.text(alphabet='AZaz09-_=.{}"', max_size=40), max_size=4).map(".".join))
def test_anything_raises_only_token_error(garbage: str) -> None:
    authority = TokenAuthority(HMACKeyring([SECRET_1]), ISSUER, _clock())
    with pytest.raises(TokenError):
        authority.verify(garbage, EPHEMERAL)


# -- key files, reload, rotation ---------------------------------------------------


def _mode(path: str | Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.mark.parametrize("umask", [0o022, 0o277])
def test_key_file_and_directory_modes(tmp_path: Path, umask: int) -> None:
    """
    The modes do not depend on the umask, even one that takes away the
    owner's own write permission.
    """
    data_dir = tmp_path / "data"
    old_umask = os.umask(umask)
    try:
        load_keyring(str(data_dir))
    finally:
        os.umask(old_umask)
    assert _mode(data_dir) == 0o700
    assert _mode(data_dir / "keys") == 0o700
    files = os.listdir(data_dir / "keys")
    assert len(files) == 1 and files[0].endswith(".pem")
    assert _mode(data_dir / "keys" / files[0]) == 0o600


def test_data_dir_parents_created(tmp_path: Path) -> None:
    data_dir = tmp_path / "var" / "lib" / "netbore"
    load_keyring(str(data_dir))
    assert _mode(data_dir) == 0o700
    assert len(read_keys(str(data_dir))) == 1


def test_keys_survive_reload(rsa_dir: str, clock: Clock) -> None:
    first = TokenAuthority(load_keyring(rsa_dir), ISSUER, clock)
    token = _issue(first, MANAGEMENT)
    again = load_keyring(rsa_dir)
    assert TokenAuthority(again, ISSUER, clock).verify(token, MANAGEMENT).sub == "alice"
    assert len(os.listdir(os.path.join(rsa_dir, "keys"))) == 1


def test_kid_is_rfc7638_thumbprint() -> None:
    n = (
        "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECP"
        "ebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY3"
        "68QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4l"
        "Fd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw"
    )
    modulus = int.from_bytes(base64.urlsafe_b64decode(n + "=" * (-len(n) % 4)), "big")
    public = rsa.RSAPublicNumbers(65537, modulus).public_key()
    assert rsa_kid(public) == "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"


def test_rotate_then_retire(tmp_path: Path, clock: Clock, capsys: pytest.CaptureFixture[str]) -> None:
    data_dir = str(tmp_path)
    keyring = load_keyring(data_dir)
    old = TokenAuthority(keyring, ISSUER, clock)
    old_kid = keyring.signing_key()[0]
    old_token = _issue(old, EPHEMERAL)

    assert keys.main(["rotate", "--data-dir", data_dir]) == 0
    rotated = TokenAuthority(load_keyring(data_dir), ISSUER, clock)
    new_token = _issue(rotated, EPHEMERAL)
    new_kid = jwt.get_unverified_header(new_token)["kid"]
    assert new_kid != old_kid
    assert rotated.verify(old_token, EPHEMERAL).sub == "tun-1"
    assert [k["kid"] for k in rotated.jwks()["keys"]] == [old_kid, new_kid]

    assert keys.main(["retire", "--data-dir", data_dir, "--", old_kid]) == 0
    retired = TokenAuthority(load_keyring(data_dir), ISSUER, clock)
    assert _refused(retired, old_token).reason == "kid"
    assert retired.verify(new_token, EPHEMERAL).sub == "tun-1"
    assert f"retired {old_kid}" in capsys.readouterr().out


def test_retire_refuses_last_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    keyring = load_keyring(str(tmp_path))
    kid = keyring.signing_key()[0]
    assert keys.main(["retire", "--data-dir", str(tmp_path), "--", kid]) == 1
    assert "last key" in capsys.readouterr().err
    assert [k.kid for k in read_keys(str(tmp_path))] == [kid]


def test_retire_unknown_kid(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    load_keyring(str(tmp_path))
    generate_key(str(tmp_path))
    assert keys.main(["retire", "--data-dir", str(tmp_path), "nope"]) == 1
    assert "no key with kid nope" in capsys.readouterr().err
    assert len(read_keys(str(tmp_path))) == 2


def test_list_marks_signing_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    first = generate_key(str(tmp_path), now=lambda: NOW)
    second = generate_key(str(tmp_path), now=lambda: NOW + 1)
    assert keys.main(["list", "--data-dir", str(tmp_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines == [
        f"{first.kid}  2023-11-14T22:13:20+00:00  verifying",
        f"{second.kid}  2023-11-14T22:13:21+00:00  signing",
    ]


def test_newest_key_signs_even_if_clock_went_back(tmp_path: Path) -> None:
    generate_key(str(tmp_path), now=lambda: NOW)
    newest = generate_key(str(tmp_path), now=lambda: NOW - 3600)
    assert load_keyring(str(tmp_path)).signing_key()[0] == newest.kid


def test_unusable_key_file_named(tmp_path: Path) -> None:
    load_keyring(str(tmp_path))
    bad = tmp_path / "keys" / "99999999999999999999-bad.pem"
    bad.write_text("not a key")
    with pytest.raises(KeyringError, match=str(bad)):
        load_keyring(str(tmp_path))


def test_short_rsa_key_refused(tmp_path: Path) -> None:
    (tmp_path / "keys").mkdir()
    small = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    path = tmp_path / "keys" / "small.pem"
    path.write_bytes(
        small.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    with pytest.raises(KeyringError, match="1024-bit"):
        load_keyring(str(tmp_path))


def test_data_dir_is_a_file(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("")
    with pytest.raises(KeyringError, match="not a directory"):
        load_keyring(str(tmp_path / "f"))


# -- HS256 --------------------------------------------------------------------------


def test_hs256_two_secrets_both_verify(tmp_path: Path, clock: Clock) -> None:
    secret_file = tmp_path / "secrets"
    secret_file.write_bytes(b"# current first\n\n" + SECRET_1 + b"\n  " + SECRET_2 + b"  \n")
    edge = TokenAuthority(load_keyring(str(tmp_path), str(secret_file)), ISSUER, clock)
    by_first = _issue(edge, EPHEMERAL)
    by_second = _issue(TokenAuthority(HMACKeyring([SECRET_2]), ISSUER, clock), EPHEMERAL)
    stranger = _issue(TokenAuthority(HMACKeyring([b"x" * 32]), ISSUER, clock), EPHEMERAL)
    assert jwt.get_unverified_header(by_first)["kid"] == hmac_kid(SECRET_1)
    assert edge.verify(by_first, EPHEMERAL).sub == "tun-1"
    assert edge.verify(by_second, EPHEMERAL).sub == "tun-1"
    assert _refused(edge, stranger).reason == "kid"


def test_hs256_kid_does_not_reveal_secret() -> None:
    kid = hmac_kid(SECRET_1)
    assert SECRET_1.decode() not in kid and _b64(SECRET_1) not in kid
    assert kid != hmac_kid(SECRET_2)


def test_hs256_short_secret_refused(tmp_path: Path) -> None:
    secret_file = tmp_path / "secrets"
    secret_file.write_bytes(b"# comment\n" + b"short-secret\n")
    with pytest.raises(KeyringError) as info:
        load_keyring(str(tmp_path), str(secret_file))
    assert f"{secret_file} line 2" in str(info.value)
    assert "at least 32" in str(info.value)
    assert "short-secret" not in str(info.value)


@pytest.mark.parametrize("content", [b"", b"# only a comment\n\n"])
def test_hs256_empty_secret_file_refused(tmp_path: Path, content: bytes) -> None:
    secret_file = tmp_path / "secrets"
    secret_file.write_bytes(content)
    with pytest.raises(KeyringError, match="holds no secret"):
        load_keyring(str(tmp_path), str(secret_file))


def test_hs256_missing_secret_file(tmp_path: Path) -> None:
    with pytest.raises(KeyringError, match="cannot read JWT secret file"):
        load_keyring(str(tmp_path), str(tmp_path / "absent"))


# -- JWKS -----------------------------------------------------------------------------


def test_jwks_contents_verify_token(authority: TokenAuthority) -> None:
    token = _issue(authority, EPHEMERAL)
    (jwk,) = authority.jwks()["keys"]
    assert set(jwk) == {"kty", "n", "e", "kid", "alg", "use"}
    assert (jwk["kty"], jwk["alg"], jwk["use"], jwk["e"]) == ("RSA", "RS256", "sig", "AQAB")
    assert jwk["kid"] == jwt.get_unverified_header(token)["kid"]
    public = jwt.PyJWK(jwk)
    payload = jwt.decode(
        token,
        public,
        algorithms=["RS256"],
        options={"verify_exp": False, "verify_iat": False, "verify_nbf": False},
    )
    assert payload["sub"] == "tun-1"
    assert rsa_kid(public.key) == jwk["kid"]


def test_jwks_has_no_private_material(authority: TokenAuthority) -> None:
    text = json.dumps(authority.jwks())
    assert '"d"' not in text and '"p"' not in text


def test_jwks_empty_for_hs256(clock: Clock) -> None:
    assert TokenAuthority(HMACKeyring([SECRET_1]), ISSUER, clock).jwks() == {"keys": []}


def test_rsa_keyring_needs_a_key() -> None:
    with pytest.raises(KeyringError):
        RSAKeyring([])


# -- the package ----------------------------------------------------------------


def test_package_exports_resolve_to_their_modules() -> None:
    import netbore.auth as auth
    from netbore.auth import apikeys as apikeys_module
    from netbore.auth import keyrings, keystore, tokens

    homes = {"ApiKeys": apikeys_module, "RSAKeyring": keyrings, "read_keys": keystore, "TokenAuthority": tokens}
    for name, module in homes.items():
        assert getattr(auth, name) is getattr(module, name)
    for name in auth.__all__:
        assert getattr(auth, name) is not None
    with pytest.raises(AttributeError):
        auth.not_a_name  # noqa: B018


def test_reading_an_api_key_does_not_import_pyjwt(tmp_path: Path) -> None:
    """
    The agent reads its key file through L{netbore.auth}; PyJWT (about
    2 MB resident) stays out of its process.
    """
    import subprocess
    import sys

    key_file = tmp_path / "key"
    key_file.write_text("k-123\n")
    code = (
        "import sys; from netbore.auth import read_api_key_file; "
        f"assert read_api_key_file({str(key_file)!r}) == 'k-123'; "
        "print('jwt' in sys.modules, 'netbore.auth.tokens' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_load_keyring_creates_one_key_once(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    first = load_keyring(str(data_dir))
    assert stat.S_IMODE(os.stat(data_dir / "keys").st_mode) == 0o700
    again = load_keyring(str(data_dir))
    assert first.signing_key()[0] == again.signing_key()[0]
    assert len(read_keys(str(data_dir))) == 1


def test_extra_claims_are_signed_and_cannot_replace_the_standard_ones(authority: TokenAuthority) -> None:
    """
    A TCP tunnel's recreate token carries its protocol and port (issue 11,
    TCP tunnels); extra claims never stand in for a standard one.
    """
    token, _ = authority.issue(RECREATE, "tid", 600, name="db", extra={"protocol": "tcp", "port": 20000})
    claims = authority.verify(token, RECREATE)
    assert (claims.raw["protocol"], claims.raw["port"], claims.sub, claims.name) == ("tcp", 20000, "tid", "db")
    for claim in ("sub", "name", "token_use", "exp", "iss", "role"):
        with pytest.raises(ValueError, match="extra claims"):
            authority.issue(RECREATE, "tid", 600, name="db", extra={claim: "x"})
