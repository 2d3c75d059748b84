"""
Squatting limits of the control API (issue 10, item 9), on a L{Clock}: live
and held tunnels per account and per anonymous address, a create rate per
address, pending tunnels released when their candidates lapse, dropped
tunnels held for C{--grace} or their recreate token, whichever is longer;
and random-name exhaustion answered with its own documented code.
"""

from __future__ import annotations

from typing import Any

import pytest_twisted

from netbore.edge.apirequest import load_schema

from .test_control_api import assert_valid, error_of, make_edge


@pytest_twisted.ensureDeferred
async def test_anonymous_tunnels_per_address_are_limited(tmp_path: Any) -> None:
    edge = make_edge(tmp_path, max_tunnels_per_address=3, ephemeral_ttl=60)
    made = [(await edge.create())[2] for _ in range(3)]
    assert all("tunnel_id" in body for body in made)
    status, headers, body = await edge.create({"requested_name": "one-more"})
    assert (status, body["error"]) == (403, "quota_exceeded")
    assert "3 tunnels" in body["message"]
    assert_valid(load_schema("error.json"), body)
    # an account's tunnels count against the account, not the address
    status, _, _ = await edge.create({"requested_name": "alices"}, token=edge.management("alice"))
    assert status == 201
    # a delete makes room
    first = made[0]
    status, _, _ = await edge.call(
        "POST", "/tunnels/delete", {"tunnel_id": first["tunnel_id"], "recreate_token": first["recreate_token"]}
    )
    assert status == 200
    assert (await edge.create())[0] == 201
    assert error_of(await edge.create()) == (403, "quota_exceeded")
    # and so does a released (lapsed) one: no agent ever connected
    edge.clock.advance(60)
    assert (await edge.create())[0] == 201


@pytest_twisted.ensureDeferred
async def test_tunnels_per_account_are_limited_and_held_ones_count(tmp_path: Any) -> None:
    edge = make_edge(tmp_path, max_tunnels_per_account=2, grace=30)
    alice = edge.management("alice")
    _, _, one = await edge.create({"requested_name": "one"}, token=alice)
    _, _, two = await edge.create({"requested_name": "two"}, token=alice)
    # "two" goes down: still held (grace, recreate token), still counted
    tunnel = edge.registry.get(two["tunnel_id"])
    session = object()
    edge.registry.attach_session(tunnel, session)
    edge.registry.detach_session(tunnel, session)
    assert error_of(await edge.create({"requested_name": "three"}, token=alice)) == (403, "quota_exceeded")
    assert error_of(await edge.create(token=alice)) == (403, "quota_exceeded")
    # what alice holds already she may still renew, by name or recreate token
    status, _, again = await edge.create({"requested_name": "one"}, token=alice)
    assert (status, again["tunnel_id"]) == (201, one["tunnel_id"])
    status, _, again = await edge.create({"recreate_token": two["recreate_token"]})
    assert (status, again["tunnel_id"]) == (201, two["tunnel_id"])
    # other accounts and anonymous callers are not affected
    assert (await edge.create({"requested_name": "bobs"}, token=edge.management("bob")))[0] == 201
    assert (await edge.create({"requested_name": "anon"}))[0] == 201


@pytest_twisted.ensureDeferred
async def test_create_rate_per_address(tmp_path: Any) -> None:
    edge = make_edge(tmp_path, creates_per_minute=5)
    alice = edge.management("alice")
    for _ in range(5):
        assert (await edge.create(token=alice))[0] == 201
    status, headers, body = await edge.create(token=alice)
    assert (status, body["error"]) == (429, "rate_limited")
    assert "tunnel creates" in body["message"]
    assert headers.getRawHeaders("retry-after") == ["60"]
    # refused before any signature is made or credential looked at
    assert error_of(await edge.create(token="not-a-token")) == (429, "rate_limited")
    assert len(edge.limiter) == 0
    edge.clock.advance(60)
    assert (await edge.create(token=alice))[0] == 201


@pytest_twisted.ensureDeferred
async def test_pending_tunnel_releases_its_name_when_the_ephemeral_token_lapses(tmp_path: Any) -> None:
    """
    200 anonymous creates used to hold 200 names for the recreate token's
    lifetime (30 days) with no agent ever connecting.
    """
    edge = make_edge(tmp_path, ephemeral_ttl=60, recreate_max_ttl=30 * 86400)
    _, _, first = await edge.create({"requested_name": "squat", "recreate_token_ttl_seconds": 30 * 86400})
    edge.clock.advance(59)
    assert error_of(await edge.create({"requested_name": "squat"})) == (409, "name_taken")
    edge.clock.advance(1)
    status, _, other = await edge.create({"requested_name": "squat"})
    assert status == 201 and other["tunnel_id"] != first["tunnel_id"]
    # the squatter's recreate token finds the name taken
    assert error_of(await edge.create({"recreate_token": first["recreate_token"]})) == (409, "name_taken")


@pytest_twisted.ensureDeferred
async def test_dropped_tunnel_held_for_grace_or_recreate_token_whichever_longer(tmp_path: Any) -> None:
    """
    --grace 3 with a 60 s recreate token: held 60 s after the create, not
    the ephemeral token's 600 s; an agent dropping after the recreate token
    ran out holds it for the grace alone.
    """
    edge = make_edge(tmp_path, grace=3, ephemeral_ttl=600)
    _, _, first = await edge.create({"requested_name": "myapp", "recreate_token_ttl_seconds": 60})
    tunnel = edge.registry.get(first["tunnel_id"])
    session = object()
    edge.registry.attach_session(tunnel, session)
    edge.clock.advance(10)
    edge.registry.detach_session(tunnel, session)
    edge.clock.advance(49)
    assert error_of(await edge.create({"requested_name": "myapp"})) == (409, "name_taken")
    edge.clock.advance(1)
    status, _, second = await edge.create({"requested_name": "myapp", "recreate_token_ttl_seconds": 60})
    assert status == 201 and second["tunnel_id"] != first["tunnel_id"]

    tunnel = edge.registry.get(second["tunnel_id"])
    edge.registry.attach_session(tunnel, session)
    edge.clock.advance(120)
    edge.registry.detach_session(tunnel, session)
    edge.clock.advance(2.9)
    assert error_of(await edge.create({"requested_name": "myapp"})) == (409, "name_taken")
    edge.clock.advance(0.1)
    assert (await edge.create({"requested_name": "myapp"}))[0] == 201


@pytest_twisted.ensureDeferred
async def test_random_name_exhaustion_has_its_own_documented_code(tmp_path: Any) -> None:
    edge = make_edge(tmp_path)
    assert (await edge.create({"requested_name": "alwaysthis"}))[0] == 201
    edge.api.random_name = lambda: "alwaysthis"
    status, headers, body = await edge.create()
    assert (status, body["error"]) == (503, "names_exhausted")
    assert headers.getRawHeaders("retry-after") == ["1"]
    assert_valid(load_schema("error.json"), body)


@pytest_twisted.ensureDeferred
async def test_a_forgotten_tunnel_can_be_deleted_with_its_recreate_token(tmp_path: Any) -> None:
    """
    A pending tunnel released when its candidates lapsed (or forgotten by a
    restart) would come back with its still-valid recreate token: deleting
    it with that token revokes the token all the same.
    """
    edge = make_edge(tmp_path, ephemeral_ttl=60)
    _, _, first = await edge.create({"requested_name": "myapp"})
    edge.clock.advance(60)
    assert edge.registry.get(first["tunnel_id"]) is None
    gone = {"tunnel_id": first["tunnel_id"]}
    # without the token it is just unknown
    assert error_of(await edge.call("POST", "/tunnels/delete", gone, token=edge.management("root", "admin"))) == (
        404,
        "not_found",
    )
    status, _, body = await edge.call("POST", "/tunnels/delete", {**gone, "recreate_token": first["recreate_token"]})
    assert (status, body) == (200, {"tunnel_id": first["tunnel_id"], "state": "DELETED"})
    assert error_of(await edge.create({"recreate_token": first["recreate_token"]})) == (410, "tunnel_deleted")
    # another tunnel's token does not delete it
    _, _, other = await edge.create({"requested_name": "other"})
    assert error_of(
        await edge.call("POST", "/tunnels/delete", {"tunnel_id": "nope", "recreate_token": other["recreate_token"]})
    ) == (404, "not_found")
