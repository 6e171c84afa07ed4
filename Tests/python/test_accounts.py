"""Accounts, sharing and groups through the official `kinto-http` client, as a
Kinto user of the accounts plugin would use them: create an account, sign in,
share a collection with another account and with a group, and be refused where
Kinto refuses.
"""

import uuid

import pytest
from kinto_http import Client, KintoException


def _status(exc: KintoException) -> int:
    return exc.response.status_code


def _name(prefix: str) -> str:
    return prefix + uuid.uuid4().hex[:8]


def _create_account(server_url: str, user: str, password: str) -> dict:
    anonymous = Client(server_url=server_url)
    body, _ = anonymous.session.request("put", f"/accounts/{user}", payload={"data": {"password": password}})
    return body


def _signed_in(server_url: str, prefix: str, password: str) -> tuple[str, Client]:
    """A new account, and a client signed in to it."""
    name = _name(prefix)
    _create_account(server_url, name, password)
    return name, Client(server_url=server_url, auth=(name, password))


def test_create_an_account_and_sign_in(server_url):
    user, password = _name("bob"), "bob's long password"
    body = _create_account(server_url, user, password)
    assert body["data"]["id"] == user
    assert "password" not in body["data"], "the password (or its hash) must never be answered"
    assert body["permissions"]["write"] == [f"account:{user}"]

    bob = Client(server_url=server_url, auth=(user, password))
    assert bob.server_info()["user"]["id"] == f"account:{user}"
    assert "accounts" in bob.server_info()["capabilities"]

    # With an account, a wrong password is refused (no fallback to another policy).
    with pytest.raises(KintoException) as refused:
        Client(server_url=server_url, auth=(user, "not the password")).server_info()
    assert _status(refused.value) == 401

    # A short password is refused with a clear message.
    with pytest.raises(KintoException) as short:
        _create_account(server_url, _name("eve"), "short")
    assert _status(short.value) == 400


def test_share_a_collection_with_another_account(server_url):
    bob_name, bob = _signed_in(server_url, "bob", "bob password 1")
    alice_name, alice = _signed_in(server_url, "alice", "alice password 1")
    anonymous = Client(server_url=server_url)
    bid = _name("b")

    bob.create_bucket(id=bid)
    bob.create_collection(id="shared", bucket=bid, permissions={"read": [f"account:{alice_name}"]})
    bob.create_collection(id="private", bucket=bid)
    bob.create_record(data={"id": "r1", "title": "hello"}, bucket=bid, collection="shared")
    bob.create_record(data={"id": "r2", "title": "mine"}, bucket=bid, collection="private")

    # alice reads what is shared with her...
    assert [r["id"] for r in alice.get_records(bucket=bid, collection="shared")] == ["r1"]
    assert alice.get_record(id="r1", bucket=bid, collection="shared")["data"]["title"] == "hello"
    # ...and nothing else: no writes there, no reads elsewhere.
    for call in (
        lambda: alice.create_record(data={"title": "intruder"}, bucket=bid, collection="shared"),
        lambda: alice.update_record(data={"id": "r1", "title": "changed"}, bucket=bid, collection="shared"),
        lambda: alice.get_records(bucket=bid, collection="private"),
        lambda: alice.get_record(id="r2", bucket=bid, collection="private"),
    ):
        with pytest.raises(KintoException) as refused:
            call()
        assert _status(refused.value) == 403
    with pytest.raises(KintoException) as anon:
        anonymous.get_records(bucket=bid, collection="shared")
    assert _status(anon.value) == 401
    assert bob.get_record(id="r1", bucket=bid, collection="shared")["data"]["title"] == "hello"

    # A collection readable by system.Everyone needs no credentials to read.
    bob.create_collection(id="public", bucket=bid, permissions={"read": ["system.Everyone"]})
    bob.create_record(data={"id": "p1", "title": "for all"}, bucket=bid, collection="public")
    assert [r["id"] for r in anonymous.get_records(bucket=bid, collection="public")] == ["p1"]
    with pytest.raises(KintoException) as anon_write:
        anonymous.create_record(data={"title": "spam"}, bucket=bid, collection="public")
    assert _status(anon_write.value) == 401

    # GET /v1/permissions lists the shared collection for alice.
    body, _ = alice.session.request("get", "/permissions")
    entries = {e["uri"]: e["permissions"] for e in body["data"]}
    assert entries.get(f"/buckets/{bid}/collections/shared") == ["read"]
    assert f"/buckets/{bid}/collections/private" not in entries


def test_groups_share_and_unshare(server_url):
    _, bob = _signed_in(server_url, "bob", "bob password 2")
    carol_name, carol = _signed_in(server_url, "carol", "carol password 2")
    bid = _name("b")
    bob.create_bucket(id=bid)
    bob.create_group(id="readers", bucket=bid, data={"members": [f"account:{carol_name}"]})
    bob.create_collection(id="notes", bucket=bid, permissions={"read": [f"/buckets/{bid}/groups/readers"]})
    bob.create_record(data={"id": "n1", "text": "for readers"}, bucket=bid, collection="notes")

    assert carol.get_record(id="n1", bucket=bid, collection="notes")["data"]["text"] == "for readers"
    assert f"/buckets/{bid}/groups/readers" in carol.server_info()["user"]["principals"]

    # Out of the group: refused from the next request on.
    bob.update_group(id="readers", bucket=bid, data={"members": []})
    with pytest.raises(KintoException) as refused:
        carol.get_record(id="n1", bucket=bid, collection="notes")
    assert _status(refused.value) == 403


def test_change_password_and_delete_account(server_url):
    bob_name, bob = _signed_in(server_url, "bob", "first password")
    alice_name, _ = _signed_in(server_url, "alice", "alice password 3")
    bob.session.request("patch", f"/accounts/{bob_name}", payload={"data": {"password": "second password"}})

    with pytest.raises(KintoException) as old:
        Client(server_url=server_url, auth=(bob_name, "first password")).server_info()
    assert _status(old.value) == 401
    bob = Client(server_url=server_url, auth=(bob_name, "second password"))
    assert bob.server_info()["user"]["id"] == f"account:{bob_name}"

    # Nobody changes someone else's account.
    with pytest.raises(KintoException) as other:
        bob.session.request("patch", f"/accounts/{alice_name}", payload={"data": {"password": "taken over!"}})
    assert _status(other.value) == 403
    assert Client(server_url=server_url, auth=(alice_name, "alice password 3")).server_info()["user"]["id"] == f"account:{alice_name}"

    body, _ = bob.session.request("delete", f"/accounts/{bob_name}")
    assert body["data"]["deleted"] is True
    with pytest.raises(KintoException) as gone:
        bob.session.request("get", f"/accounts/{bob_name}")
    assert _status(gone.value) in (401, 403)


def test_account_endpoint_rules(server_url):
    anonymous = Client(server_url=server_url)
    assert "accounts" in anonymous.server_info()["capabilities"]

    # POST on the plural endpoint with data.id creates too, with the same answer as PUT.
    name = _name("dan")
    body, _ = anonymous.session.request("post", "/accounts", payload={"data": {"id": name, "password": "dan password"}})
    assert set(body["data"]) == {"id", "last_modified"} and body["data"]["id"] == name
    assert body["permissions"] == {"write": [f"account:{name}"]}
    # Creating it again with POST is a conflict. (Kinto answers 403 "already exists" here.)
    with pytest.raises(KintoException) as again:
        anonymous.session.request("post", "/accounts", payload={"data": {"id": name, "password": "dan password"}})
    assert _status(again.value) == 409
    # POST without data.id, and ids other than letters, digits, - and _, are refused.
    with pytest.raises(KintoException) as no_id:
        anonymous.session.request("post", "/accounts", payload={"data": {"password": "no id at all"}})
    assert _status(no_id.value) == 400
    for bad in ("with space", "semi;colon", "-leading-dash"):
        with pytest.raises(KintoException) as invalid:
            anonymous.session.request("put", f"/accounts/{bad}", payload={"data": {"password": "long enough"}})
        assert _status(invalid.value) == 400, bad
    assert _create_account(server_url, _name("x-y_Z9"), "long enough")["data"]["id"].startswith("x-y_Z9")

    # Signed in to an account, one cannot create another one (PUT or POST).
    dan = Client(server_url=server_url, auth=(name, "dan password"))
    other = _name("other")
    for method, path, data in (("put", f"/accounts/{other}", {"password": "other password"}),
                               ("post", "/accounts", {"id": other, "password": "other password"})):
        with pytest.raises(KintoException) as refused:
            dan.session.request(method, path, payload={"data": data})
        assert _status(refused.value) == 400, method

    # Anonymous cannot read accounts; a signed-in user sees only their own.
    for path in ("/accounts", f"/accounts/{name}"):
        with pytest.raises(KintoException) as anon:
            anonymous.session.request("get", path)
        assert _status(anon.value) == 401, path
    listed, _ = dan.session.request("get", "/accounts")
    assert [a["id"] for a in listed["data"]] == [name]

    # No answer ever holds the password or its hash: GET, list, PATCH.
    got, _ = dan.session.request("get", f"/accounts/{name}")
    patched, _ = dan.session.request("patch", f"/accounts/{name}", payload={"data": {"password": "dan password"}})
    for data in (got["data"], patched["data"], *listed["data"]):
        assert set(data) == {"id", "last_modified"}, data
    assert "dan password" not in repr((got, patched, listed))
