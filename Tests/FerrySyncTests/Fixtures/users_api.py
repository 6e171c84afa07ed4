#!/usr/bin/env python3
"""A plain Flask + Flask-SQLAlchemy users API: the test fixture of Ferry's REST
connector (and the source of bench/rest.sh).

Usage: users_api.py --db PATH [--port 0] [--seed N] [--token T]

  --db PATH   SQLite file (created if missing, WAL journal).
  --port P    port on 127.0.0.1; 0 (the default) picks a free one.
  --seed N    bulk-insert users 1..N at start (username userI, age I%90+10,
              address "I Main Street", all the same updated_at); the users
              table must be empty.
  --token T   require credentials on every non-admin request: `Authorization:
              Bearer T`, `X-API-Key: T`, `?api_key=T`, or Basic auth with
              password T (any user); otherwise 401.

Prints one line, `listening on http://127.0.0.1:PORT`, once the socket is
bound, then serves (werkzeug's threaded server; its request log is off).

A user is {"id": 1, "username": "a", "age": 3, "address": "x",
"updated_at": "2026-11-29T06:30:00Z"}: updated_at is UTC with second resolution,
set by the server on every create and update.

Routes (errors are always {"error": "..."}; a bad parameter is a 400):

  GET    /users?page=1&per_page=50[&updated_since=TS]
             -> {"data": [...], "page": p, "per_page": n, "total": t}
  GET    /offset/users?offset=0&limit=50[&updated_since=TS]   -> [...]
  GET    /cursor/users?limit=50[&cursor=C][&updated_since=TS]
             -> {"items": [...], "next_cursor": "C" | null}
  GET    /link/users?page=1&per_page=50[&updated_since=TS]
             -> [...] with `Link: <absolute URL>; rel="next"` unless last page
  GET    /next/users?page=1&per_page=50[&updated_since=TS]
             -> {"results": [...], "next": "absolute URL" | null}
  GET    /all/users[?updated_since=TS]                        -> [...] (every user)
  GET    /users/<id>         -> 200 user | 404
  POST   /users              -> 201 user | 400 | 409 (id exists, username taken)
  PUT    /users/<id>         -> 200 user | 400 | 404 | 409   (full replace)
  PATCH  /users/<id>         -> 200 user | 400 | 404 | 409   (partial update)
  DELETE /users/<id>         -> 204 | 404

  Page sizes (per_page, limit) are 1..1000. Without updated_since users come in
  id order; with it (inclusive: updated_at >= TS) in (updated_at, id) order.
  The cursor is opaque (base64 JSON of the last sort key and the filter); a
  cursor carries its updated_since, so the next request needs only the cursor.

Admin routes (paths starting with /_ are never faulted nor counted):

  POST /_admin/clock  {"now": "2026-01-01T00:00:00Z"} freezes the clock used for
                      updated_at; {"now": null} goes back to real time.
  GET  /_admin/users  every user as one array (never faulted, no credentials).
  POST /_faults       {"mode": "none"|"500"|"429"|"slow"|"drop"|"drop-after", "every": N,
                       "retry_after": 1, "delay": 0.5}
                      From then on every Nth non-admin request (N, 2N, ...;
                      counting restarts here) is faulted: 500 -> a 500 error;
                      429 -> a 429 with Retry-After: retry_after; slow -> sleep
                      `delay` seconds, then served normally; drop -> the TCP
                      connection is closed with no answer at all; drop-after ->
                      the request is served (a write commits) and then the
                      connection is closed before the answer (a lost response).
                      500, 429 and drop never reach the handler (no data changes).
  GET  /_faults       {"mode", "every", "retry_after", "delay",
                       "requests": non-admin requests since the last POST,
                       "faulted": how many of them were faulted}
  GET  /_stats        {"count": users, "requests": {"GET": n, "POST": n, "PUT": n,
                       "PATCH": n, "DELETE": n}, "max_in_flight": n} non-admin
                      requests served since start (slow ones included; 500/429/drop
                      not), and the most handled at once.
"""
import argparse
import base64
import binascii
import json
import logging
import os
import socket
import sys
import threading
import time
from datetime import datetime, timezone

from flask import Flask, g, jsonify, request, url_for
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import Engine, and_, event, func, insert, or_, select
from sqlalchemy.exc import IntegrityError
from werkzeug.exceptions import HTTPException
from werkzeug.serving import make_server

MAX_PAGE_SIZE = 1000
DEFAULT_PAGE_SIZE = 50

app = Flask(__name__)
app.json.sort_keys = False  # keep id, username, age, address, updated_at in order
db = SQLAlchemy()


@event.listens_for(Engine, "connect")
def _sqlite_pragmas(dbapi_connection, _record):
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


class User(db.Model):
    __tablename__ = "users"
    id = db.Column(db.Integer, primary_key=True)
    username = db.Column(db.String, unique=True, nullable=False)
    age = db.Column(db.Integer, nullable=True)
    address = db.Column(db.String, nullable=True)
    updated_at = db.Column(db.String, nullable=False)
    # AUTOINCREMENT: an id is never handed out again after a delete (SQLite's
    # default would reuse the highest one), so a new user is never an old one.
    __table_args__ = (db.Index("users_updated_at_id", "updated_at", "id"),
                      {"sqlite_autoincrement": True})

    def to_dict(self):
        return {"id": self.id, "username": self.username, "age": self.age,
                "address": self.address, "updated_at": self.updated_at}


# ---- clock ------------------------------------------------------------------

TS_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
_frozen_now = None  # a datetime, or None for real time


def parse_ts(text, round_up=False):
    """An ISO-8601 time as the stored form (UTC, seconds, `Z`); None if invalid.
    A time without an offset is taken as UTC. Fractions of a second are dropped,
    or rounded up with round_up (so that `>= TS` stays exact at second resolution)."""
    if not isinstance(text, str):
        return None
    try:
        dt = datetime.fromisoformat(text)
    except ValueError:
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    dt = dt.astimezone(timezone.utc)
    if dt.microsecond:
        whole = dt.replace(microsecond=0)
        dt = datetime.fromtimestamp(whole.timestamp() + 1, timezone.utc) if round_up else whole
    return dt.strftime(TS_FORMAT)


def now():
    dt = _frozen_now or datetime.now(timezone.utc)
    return dt.strftime(TS_FORMAT)


# ---- faults and counters ----------------------------------------------------

_lock = threading.Lock()
faults = {"mode": "none", "every": 1, "retry_after": 1, "delay": 0.5, "requests": 0, "faulted": 0}
served = {"GET": 0, "POST": 0, "PUT": 0, "PATCH": 0, "DELETE": 0}
in_flight = {"now": 0, "max": 0}  # non-admin requests being handled at once


def error(status, message, headers=None):
    response = jsonify(error=message)
    response.status_code = status
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def drop_connection():
    """Close the client's TCP connection without a byte of answer. The request
    body is read first, so the close is a clean FIN (the client sees an empty
    reply) rather than a reset caused by unread data. werkzeug then fails to
    write the response (BrokenPipeError) and, as for any client that went away,
    drops it silently."""
    request.get_data()
    sock = request.environ.get("werkzeug.socket")
    if sock is None:  # not werkzeug's server: nothing to close
        raise RuntimeError("drop fault needs werkzeug's development server")
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


def authorized():
    token = app.config.get("API_TOKEN")
    if not token:
        return True
    auth = request.authorization
    return (request.headers.get("Authorization") == f"Bearer {token}"
            or request.headers.get("X-API-Key") == token
            or request.args.get("api_key") == token
            or (auth is not None and auth.type == "basic" and auth.password == token))


@app.before_request
def inject_faults():
    if request.path.startswith("/_"):
        return None
    if not authorized():
        return error(401, "missing or wrong credentials", {"WWW-Authenticate": "Bearer"})
    with _lock:
        in_flight["now"] += 1
        in_flight["max"] = max(in_flight["max"], in_flight["now"])
        g.counted = True
        faults["requests"] += 1
        mode = faults["mode"]
        hit = mode != "none" and faults["requests"] % faults["every"] == 0
        if hit:
            faults["faulted"] += 1
        else:
            mode = "none"
        retry_after, delay = faults["retry_after"], faults["delay"]
        if mode in ("none", "slow", "drop-after"):
            served[request.method] = served.get(request.method, 0) + 1
    if mode == "500":
        return error(500, "injected fault: internal server error")
    if mode == "429":
        return error(429, "injected fault: too many requests", {"Retry-After": str(retry_after)})
    if mode == "drop":
        drop_connection()
        return error(500, "dropped")  # never reaches the client
    if mode == "slow":
        time.sleep(delay)
    if mode == "drop-after":
        g.drop_after = True
    return None


@app.teardown_request
def leave(_exc):
    if g.get("counted"):
        with _lock:
            in_flight["now"] -= 1


@app.after_request
def drop_after(response):
    """drop-after: the handler ran (and committed); the client never hears of it."""
    if g.get("drop_after"):
        drop_connection()
    return response


@app.errorhandler(HTTPException)
def http_error(exc):
    message = "not found" if exc.code == 404 else (exc.description or exc.name)
    # Keep the exception's own headers (Allow on a 405), not its HTML content type.
    headers = {k: v for k, v in exc.get_headers() if k.lower() != "content-type"}
    return error(exc.code, message, headers)


@app.post("/_admin/clock")
def set_clock():
    global _frozen_now
    body = request.get_json(force=True, silent=True)
    if not isinstance(body, dict) or "now" not in body:
        return error(400, 'body must be {"now": "ISO-8601 time" | null}')
    if body["now"] is None:
        _frozen_now = None
    else:
        ts = parse_ts(body["now"])
        if ts is None:
            return error(400, f"now: not an ISO-8601 time: {body['now']!r}")
        _frozen_now = datetime.strptime(ts, TS_FORMAT).replace(tzinfo=timezone.utc)
    return jsonify(now=now(), frozen=_frozen_now is not None)


def fault_state():
    with _lock:
        return dict(faults)


@app.get("/_faults")
def get_faults():
    return jsonify(fault_state())


@app.post("/_faults")
def set_faults():
    body = request.get_json(force=True, silent=True)
    if not isinstance(body, dict):
        return error(400, "body must be a JSON object")
    unknown = set(body) - {"mode", "every", "retry_after", "delay"}
    if unknown:
        return error(400, f"unknown field(s): {', '.join(sorted(unknown))}")
    mode = body.get("mode", "none")
    every = body.get("every", 1)
    retry_after = body.get("retry_after", 1)
    delay = body.get("delay", 0.5)
    if mode not in ("none", "500", "429", "slow", "drop", "drop-after"):
        return error(400, 'mode must be one of "none", "500", "429", "slow", "drop", "drop-after"')
    if not is_int(every) or every < 1:
        return error(400, "every must be an integer >= 1")
    if not is_int(retry_after) or retry_after < 0:
        return error(400, "retry_after must be an integer >= 0")
    if not isinstance(delay, (int, float)) or isinstance(delay, bool) or delay < 0:
        return error(400, "delay must be a number >= 0")
    with _lock:
        faults.update(mode=mode, every=every, retry_after=retry_after, delay=delay,
                      requests=0, faulted=0)
    return jsonify(fault_state())


@app.get("/_admin/users")
def admin_users():
    users = db.session.execute(select(User).order_by(User.id)).scalars()
    return jsonify([u.to_dict() for u in users])


@app.get("/_stats")
def stats():
    count = db.session.execute(select(func.count()).select_from(User)).scalar_one()
    with _lock:
        requests = dict(served)
        most = in_flight["max"]
    return jsonify(count=count, requests=requests, max_in_flight=most)


# ---- listing ----------------------------------------------------------------

class BadParameter(Exception):
    pass


@app.errorhandler(BadParameter)
def bad_parameter(exc):
    return error(400, str(exc))


def int_arg(name, default, minimum, maximum=None):
    raw = request.args.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise BadParameter(f"{name} must be an integer, not {raw!r}") from None
    if value < minimum:
        raise BadParameter(f"{name} must be >= {minimum}")
    if maximum is not None and value > maximum:
        raise BadParameter(f"{name} must be <= {maximum}")
    return value


def since_arg():
    raw = request.args.get("updated_since")
    if raw is None:
        return None
    ts = parse_ts(raw, round_up=True)
    if ts is None:
        raise BadParameter(f"updated_since: not an ISO-8601 time: {raw!r}")
    return ts


def users_query(since):
    """select(User) filtered on updated_since and in the listing order."""
    query = select(User)
    if since is None:
        return query.order_by(User.id)
    return query.where(User.updated_at >= since).order_by(User.updated_at, User.id)


def page_args():
    return int_arg("page", 1, 1), int_arg("per_page", DEFAULT_PAGE_SIZE, 1, MAX_PAGE_SIZE)


def page_with_more(page, per_page, since):
    """One page of users, and whether another page follows (one extra row read)."""
    query = users_query(since).offset((page - 1) * per_page).limit(per_page + 1)
    users = db.session.execute(query).scalars().all()
    return [u.to_dict() for u in users[:per_page]], len(users) > per_page


def next_page_url(endpoint, page, per_page, since):
    args = {"page": page + 1, "per_page": per_page}
    if since is not None:
        args["updated_since"] = since
    return url_for(endpoint, _external=True, **args)


@app.get("/users")
def list_users():
    page, per_page = page_args()
    since = since_arg()
    result = db.paginate(users_query(since), page=page, per_page=per_page,
                         max_per_page=MAX_PAGE_SIZE, error_out=False)
    return jsonify(data=[u.to_dict() for u in result.items], page=page, per_page=per_page,
                   total=result.total)


@app.get("/offset/users")
def list_users_offset():
    offset = int_arg("offset", 0, 0)
    limit = int_arg("limit", DEFAULT_PAGE_SIZE, 1, MAX_PAGE_SIZE)
    users = db.session.execute(users_query(since_arg()).offset(offset).limit(limit)).scalars()
    return jsonify([u.to_dict() for u in users])


def encode_cursor(since, last):
    state = {"since": since, "after": [last.updated_at, last.id] if since else last.id}
    return base64.urlsafe_b64encode(json.dumps(state, separators=(",", ":")).encode()).decode()


def decode_cursor(cursor):
    try:
        state = json.loads(base64.urlsafe_b64decode(cursor.encode()))
        since, after = state["since"], state["after"]
        if since is None:
            assert is_int(after)
        else:
            assert parse_ts(since) == since and isinstance(after, list) and len(after) == 2
            assert isinstance(after[0], str) and is_int(after[1])
        return since, after
    except (ValueError, KeyError, TypeError, AssertionError, binascii.Error, UnicodeError):
        raise BadParameter("cursor: not a cursor this API gave") from None


@app.get("/cursor/users")
def list_users_cursor():
    limit = int_arg("limit", DEFAULT_PAGE_SIZE, 1, MAX_PAGE_SIZE)
    since = since_arg()
    query = users_query(since)
    cursor = request.args.get("cursor")
    if cursor:
        cursor_since, after = decode_cursor(cursor)
        if "updated_since" in request.args and cursor_since != since:
            raise BadParameter("cursor was made for another updated_since")
        since = cursor_since
        query = users_query(since)
        if since is None:
            query = query.where(User.id > after)
        else:
            query = query.where(or_(User.updated_at > after[0],
                                    and_(User.updated_at == after[0], User.id > after[1])))
    users = db.session.execute(query.limit(limit + 1)).scalars().all()
    page = users[:limit]
    next_cursor = encode_cursor(since, page[-1]) if len(users) > limit else None
    return jsonify(items=[u.to_dict() for u in page], next_cursor=next_cursor)


@app.get("/link/users")
def list_users_link():
    page, per_page = page_args()
    since = since_arg()
    users, more = page_with_more(page, per_page, since)
    response = jsonify(users)
    if more:
        response.headers["Link"] = f'<{next_page_url("list_users_link", page, per_page, since)}>; rel="next"'
    return response


@app.get("/next/users")
def list_users_next():
    page, per_page = page_args()
    since = since_arg()
    users, more = page_with_more(page, per_page, since)
    return jsonify(results=users,
                   next=next_page_url("list_users_next", page, per_page, since) if more else None)


@app.get("/all/users")
def list_all_users():
    users = db.session.execute(users_query(since_arg())).scalars()
    return jsonify([u.to_dict() for u in users])


# ---- one user -----------------------------------------------------------------

def is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def validated_body(partial, url_id=None):
    """The JSON body as {field: value} for username/age/address (and id on create),
    or a 400 response. `updated_at` is accepted and ignored."""
    body = request.get_json(force=True, silent=True)
    if not isinstance(body, dict):
        return None, error(400, "the body must be a JSON object")
    unknown = set(body) - {"id", "username", "age", "address", "updated_at"}
    if unknown:
        return None, error(400, f"unknown field(s): {', '.join(sorted(unknown))}")
    fields = {}
    if "id" in body:
        if not is_int(body["id"]) or body["id"] < 1:
            return None, error(400, "id must be an integer >= 1")
        if url_id is not None and body["id"] != url_id:
            return None, error(400, f"id {body['id']} in the body does not match the URL ({url_id})")
        if url_id is None:
            fields["id"] = body["id"]
    if "username" in body:
        if not isinstance(body["username"], str) or not body["username"]:
            return None, error(400, "username must be a non-empty string")
        fields["username"] = body["username"]
    elif not partial:
        return None, error(400, "username is required")
    if "age" in body:
        if body["age"] is not None and (not is_int(body["age"]) or body["age"] < 0):
            return None, error(400, "age must be an integer >= 0 or null")
        fields["age"] = body["age"]
    elif not partial:
        fields["age"] = None
    if "address" in body:
        if body["address"] is not None and not isinstance(body["address"], str):
            return None, error(400, "address must be a string or null")
        fields["address"] = body["address"]
    elif not partial:
        fields["address"] = None
    return fields, None


def username_taken(username, own_id=None):
    query = select(User.id).where(User.username == username)
    if own_id is not None:
        query = query.where(User.id != own_id)
    return db.session.execute(query.limit(1)).first() is not None


def commit_or_conflict(user):
    """Commit; a unique-constraint race lost to another request is a 409 too."""
    try:
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        if user.id is not None and db.session.get(User, user.id) is not None:
            return error(409, f"user {user.id} already exists")
        return error(409, f"username {user.username!r} is taken")
    return None


@app.get("/users/<int:user_id>")
def get_user(user_id):
    user = db.session.get(User, user_id)
    if user is None:
        return error(404, "not found")
    return jsonify(user.to_dict())


@app.post("/users")
def create_user():
    fields, problem = validated_body(partial=False)
    if problem:
        return problem
    if "id" in fields and db.session.get(User, fields["id"]) is not None:
        return error(409, f"user {fields['id']} already exists")
    if username_taken(fields["username"]):
        return error(409, f"username {fields['username']!r} is taken")
    user = User(**fields, updated_at=now())
    db.session.add(user)
    problem = commit_or_conflict(user)
    if problem:
        return problem
    return jsonify(user.to_dict()), 201


def update_user(user_id, partial):
    user = db.session.get(User, user_id)
    if user is None:
        return error(404, "not found")
    fields, problem = validated_body(partial=partial, url_id=user_id)
    if problem:
        return problem
    if "username" in fields and username_taken(fields["username"], own_id=user_id):
        return error(409, f"username {fields['username']!r} is taken")
    for name, value in fields.items():
        setattr(user, name, value)
    user.updated_at = now()
    problem = commit_or_conflict(user)
    if problem:
        return problem
    return jsonify(user.to_dict())


@app.put("/users/<int:user_id>")
def replace_user(user_id):
    return update_user(user_id, partial=False)


@app.patch("/users/<int:user_id>")
def patch_user(user_id):
    return update_user(user_id, partial=True)


@app.delete("/users/<int:user_id>")
def delete_user(user_id):
    user = db.session.get(User, user_id)
    if user is None:
        return error(404, "not found")
    db.session.delete(user)
    db.session.commit()
    response = app.response_class(status=204)
    del response.headers["Content-Type"]
    return response


# ---- start-up -----------------------------------------------------------------

def seed(count):
    """Users 1..count in one executemany (not one ORM object at a time)."""
    if db.session.execute(select(func.count()).select_from(User)).scalar_one():
        sys.exit("--seed needs an empty users table; this database already has users")
    stamp = now()
    chunk = 10_000
    for start in range(1, count + 1, chunk):
        rows = [{"id": i, "username": f"user{i}", "age": i % 90 + 10,
                 "address": f"{i} Main Street", "updated_at": stamp}
                for i in range(start, min(start + chunk, count + 1))]
        db.session.execute(insert(User.__table__), rows)
    db.session.commit()


def main():
    parser = argparse.ArgumentParser(description="Users CRUD API (Flask + SQLite), Ferry's REST test fixture.")
    parser.add_argument("--db", required=True, help="SQLite file")
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0: a free one)")
    parser.add_argument("--seed", type=int, default=0, metavar="N", help="insert users 1..N at start")
    parser.add_argument("--token", default=None, metavar="T", help="require this token (see the docstring)")
    args = parser.parse_args()
    app.config["API_TOKEN"] = args.token

    # Absolute: Flask-SQLAlchemy would take a relative SQLite path as relative
    # to the app's instance folder, not to the working directory.
    app.config["SQLALCHEMY_DATABASE_URI"] = "sqlite:///" + os.path.abspath(args.db)
    db.init_app(app)
    with app.app_context():
        db.create_all()
        if args.seed > 0:
            seed(args.seed)

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no line per request
    server = make_server("127.0.0.1", args.port, app, threaded=True)
    print(f"listening on http://127.0.0.1:{server.server_port}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
