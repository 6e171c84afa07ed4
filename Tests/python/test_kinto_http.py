"""Ferry against the official `kinto-http` Python client.

A real `ferry serve` process (conftest.py's `server_url`) is started once for
the module on a free port with a throw-away data folder, and every test talks to it
through `kinto_http.Client` exactly as a Kinto user would. Nothing here works
around server behaviour: a failing call is a server bug to fix.

Run:  pip install -r Tests/python/requirements.txt && pytest Tests/python
"""

import uuid

import pytest
from kinto_http import Client, KintoException
from kinto_http.exceptions import KintoBatchException
from kinto_http.patch_type import BasicPatch, JSONPatch, MergePatch

ALICE = ("alice", "alice-secret")
BOB = ("bob", "bob-secret")


@pytest.fixture(scope="module")
def alice(server_url):
    return Client(server_url=server_url, auth=ALICE)


@pytest.fixture
def collection(alice):
    """A fresh bucket + collection owned by alice; the client is bound to it."""
    bid = "b-" + uuid.uuid4().hex[:10]
    alice.create_bucket(id=bid)
    alice.create_collection(id="users", bucket=bid)
    return Client(session=alice.session, bucket=bid, collection="users")


def _status(exc: KintoException) -> int:
    return exc.response.status_code


def test_server_info(alice):
    info = alice.server_info()
    assert info["http_api_version"].startswith("1.")
    assert info["settings"]["batch_max_requests"] >= 25
    assert isinstance(info["capabilities"], dict)
    # With Basic credentials the hello view says who we are (Kinto's basicauth ids).
    assert info["user"]["id"].startswith("basicauth:")
    assert "system.Authenticated" in info["user"]["principals"]


def test_create_bucket_and_collection(alice):
    bid = "b-" + uuid.uuid4().hex[:10]
    bucket = alice.create_bucket(id=bid, data={"title": "mine"})
    assert bucket["data"]["id"] == bid
    assert bucket["data"]["title"] == "mine"
    me = alice.server_info()["user"]["id"]
    assert me in bucket["permissions"]["write"]  # the creator gets write
    # safe=True sends If-None-Match: *, so creating it twice is a 412.
    with pytest.raises(KintoException) as exc:
        alice.create_bucket(id=bid)
    assert _status(exc.value) == 412
    # ... unless if_not_exists is asked for.
    assert alice.create_bucket(id=bid, if_not_exists=True)["data"]["id"] == bid

    coll = alice.create_collection(id="tasks", bucket=bid, data={"kind": "todo"})
    assert coll["data"]["id"] == "tasks"
    assert coll["data"]["kind"] == "todo"
    assert [c["id"] for c in alice.get_collections(bucket=bid)] == ["tasks"]
    assert alice.get_collection(id="tasks", bucket=bid)["data"]["kind"] == "todo"


def test_record_crud(collection):
    c = collection
    # With an explicit id (kinto-http PUTs with If-None-Match: *).
    created = c.create_record(id="rec1", data={"username": "ann", "age": 30})
    assert created["data"]["id"] == "rec1"
    assert created["data"]["username"] == "ann"
    ts1 = created["data"]["last_modified"]
    assert isinstance(ts1, int)

    # Without id: kinto-http makes a UUID and PUTs it.
    auto = c.create_record(data={"username": "bob", "age": 40})
    uuid.UUID(auto["data"]["id"])

    # Without id through a plain POST on the plural endpoint: the server makes the id.
    posted, _ = c.session.request("post", c.get_endpoint("records", bucket=c.bucket_name, collection="users"),
                                  data={"username": "cid"})
    assert posted["data"]["id"] and posted["data"]["username"] == "cid"

    got = c.get_record(id="rec1")
    assert got["data"] == created["data"]

    # PUT replaces the whole record.
    updated = c.update_record(id="rec1", data={"username": "ann", "city": "Paris"})
    assert "age" not in updated["data"]
    assert updated["data"]["city"] == "Paris"
    assert updated["data"]["last_modified"] > ts1

    # PATCH (plain JSON) merges the given fields.
    patched = c.patch_record(id="rec1", data={"age": 31})
    assert patched["data"]["age"] == 31 and patched["data"]["city"] == "Paris"
    patched = c.patch_record(id="rec1", changes=BasicPatch(data={"age": 32}))
    assert patched["data"]["age"] == 32
    # JSON merge patch: null removes a field.
    patched = c.patch_record(id="rec1", changes=MergePatch(data={"city": None, "tags": ["a"]}))
    assert "city" not in patched["data"] and patched["data"]["tags"] == ["a"]
    # JSON Patch operations.
    patched = c.patch_record(id="rec1", changes=JSONPatch([{"op": "add", "path": "/data/tags/-", "value": "b"}]))
    assert patched["data"]["tags"] == ["a", "b"]

    deleted = c.delete_record(id="rec1")  # kinto-http returns the tombstone itself
    assert deleted["id"] == "rec1"
    assert deleted["deleted"] is True
    assert deleted["last_modified"] > patched["data"]["last_modified"]
    with pytest.raises(KintoException) as exc:
        c.get_record(id="rec1")
    assert _status(exc.value) == 404
    assert {r["id"] for r in c.get_records()} == {auto["data"]["id"], posted["data"]["id"]}


def test_get_records_since_includes_tombstones(collection):
    c = collection
    for i in range(5):
        c.create_record(id=f"r{i}", data={"n": i})
    ts = int(c.get_records_timestamp())
    assert ts == max(r["last_modified"] for r in c.get_records())
    c.update_record(id="r1", data={"n": 100})
    c.delete_record(id="r2")
    changes = c.get_records(_since=ts)
    by_id = {r["id"]: r for r in changes}
    assert set(by_id) == {"r1", "r2"}
    assert by_id["r1"]["n"] == 100
    assert by_id["r2"].get("deleted") is True
    assert all(r["last_modified"] > ts for r in changes)
    # Without _since, tombstones are not listed.
    assert "r2" not in {r["id"] for r in c.get_records()}


def test_get_records_sort_and_filters(collection):
    c = collection
    with c.batch() as b:
        for i in range(10):
            b.create_record(id=f"u{i}", data={"username": f"user{i}", "age": 20 + i, "team": "red" if i % 2 else "blue"})
    older = c.get_records(_sort="-age", min_age=25)
    assert [r["age"] for r in older] == [29, 28, 27, 26, 25]
    reds = c.get_records(_sort="username", team="red")
    assert [r["username"] for r in reds] == ["user1", "user3", "user5", "user7", "user9"]
    some = c.get_records(_sort="age", in_age=["21", "23"], _fields="age")
    assert some == [{"id": "u1", "age": 21, "last_modified": some[0]["last_modified"]},
                    {"id": "u3", "age": 23, "last_modified": some[1]["last_modified"]}]


def test_pagination_follows_next_page(collection):
    c = collection
    with c.batch() as b:  # 120 creates: kinto-http splits them into batches of batch_max_requests
        for i in range(120):
            b.create_record(id=f"p{i:03d}", data={"i": i})
    # kinto-http reads one page when _limit is given unless pages= says more;
    # it then follows the Next-Page header the server sends.
    everything = c.get_records(_limit=50, _sort="i", pages=float("inf"))
    assert [r["i"] for r in everything] == list(range(120))
    pages = list(c.get_paginated_records(_limit=50, _sort="-i"))
    assert [len(p["data"]) for p in pages] == [50, 50, 20]
    assert [r["i"] for p in pages for r in p["data"]] == list(range(119, -1, -1))
    assert len(c.get_records(_limit=50)) == 50


def test_batch(collection):
    c = collection
    with c.batch() as b:
        b.create_record(id="x1", data={"v": 1})
        b.create_record(id="x2", data={"v": 2})
        b.patch_record(id="x1", data={"w": 3})
        b.delete_record(id="x2")
    results = b.results()
    assert len(results) == 4
    assert results[0]["data"]["id"] == "x1"
    assert (results[2]["data"]["v"], results[2]["data"]["w"]) == (1, 3)
    assert results[3]["data"]["deleted"] is True
    assert c.get_record(id="x1")["data"]["w"] == 3
    # A failing sub-request makes kinto-http raise after the batch is sent.
    with pytest.raises(KintoBatchException) as exc:
        with c.batch() as b:
            b.create_record(id="x1", data={"v": 9})  # exists: If-None-Match: * -> 412
    assert [_status(e) for e in exc.value.exceptions] == [412]
    assert c.get_record(id="x1")["data"]["v"] == 1


def test_if_match_conflict(collection):
    c = collection
    first = c.create_record(id="doc", data={"v": 1})["data"]
    second = c.update_record(id="doc", data={"v": 2}, safe=True, if_match=first["last_modified"])["data"]
    assert second["last_modified"] > first["last_modified"]
    # Writing with the stale timestamp must be refused with 412 Precondition Failed.
    with pytest.raises(KintoException) as exc:
        c.update_record(data={**first, "v": 3}, safe=True)  # If-Match from data["last_modified"]
    assert _status(exc.value) == 412
    with pytest.raises(KintoException) as exc:
        c.patch_record(id="doc", data={"v": 4}, safe=True, if_match=first["last_modified"])
    assert _status(exc.value) == 412
    with pytest.raises(KintoException) as exc:
        c.delete_record(id="doc", safe=True, if_match=first["last_modified"])
    assert _status(exc.value) == 412
    assert c.get_record(id="doc")["data"]["v"] == 2
    # safe=False ignores the stale timestamp.
    assert c.update_record(data={**first, "v": 5}, safe=False)["data"]["v"] == 5


def test_other_user_is_forbidden(server_url, collection):
    c = collection
    c.create_record(id="secret", data={"v": 1})
    bob = Client(server_url=server_url, auth=BOB, bucket=c.bucket_name, collection="users")
    assert bob.server_info()["user"]["id"] != c.server_info()["user"]["id"]
    for call in (lambda: bob.get_records(),
                 lambda: bob.get_record(id="secret"),
                 lambda: bob.create_record(id="mine", data={"v": 2}),
                 lambda: bob.update_record(id="secret", data={"v": 3}),
                 lambda: bob.delete_record(id="secret")):
        with pytest.raises(KintoException) as exc:
            call()
        assert _status(exc.value) == 403, exc.value
    assert c.get_record(id="secret")["data"]["v"] == 1
