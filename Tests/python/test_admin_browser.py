"""The /admin pages in a real browser (headless Chromium driven by Selenium, set up as in
test_browser.py): sign in, create a bucket, a collection and a record through the forms, edit
it with a stale version and see the conflict, send bad JSON and a bad id and see the error with
nothing changed, and watch a change made through the API appear on the live page.

Screenshots of each step go to the test's tmp_path (pytest keeps the last runs' folders).
The assertions read the page's text and the server's data through the API, never pixels.
"""

import re
import time
import uuid

import pytest
import requests

from test_browser import browser  # noqa: F401  (the fixture: Debian's Chromium, skipped without it)


def _admin(server_url):
    return server_url[: -len("/v1")] + "/admin"


def _fill(driver, name, value, form=None):
    from selenium.webdriver.common.by import By

    scope = form if form is not None else driver
    field = scope.find_element(By.NAME, name)
    field.clear()
    field.send_keys(value)
    return field


def _form(driver, action_suffix):
    from selenium.webdriver.common.by import By

    for form in driver.find_elements(By.TAG_NAME, "form"):
        if (form.get_attribute("action") or "").endswith(action_suffix):
            return form
    raise AssertionError(f"no form posting to …{action_suffix} on {driver.current_url}")


def _submit(form):
    """Clicks the form's button and waits for the next page: a click returns before the browser
    has navigated, and reading the old page's body then fails as stale (it did, under load).

    The old page is told apart by a mark on its window object, which a navigation replaces; an
    element reference is not used, because Chromium can answer a question about an element of a
    page being torn down with "Node with given id does not belong to the document" (a generic
    error, not a stale-element one), which failed a CI run. Any error while the browser is between
    pages means "not yet"."""
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver = form.parent
    driver.execute_script("window.__ferryOldPage = true;")
    form.find_element(By.TAG_NAME, "button").click()

    def on_the_next_page(d):
        try:
            return d.execute_script(
                "return window.__ferryOldPage === undefined && document.readyState === 'complete'")
        except WebDriverException:
            return False

    WebDriverWait(driver, 60).until(on_the_next_page)


def _text(driver):
    from selenium.webdriver.common.by import By

    return driver.find_element(By.TAG_NAME, "body").text


def _set_textarea(driver, form, text, name="data"):
    from selenium.webdriver.common.by import By

    area = form.find_element(By.NAME, name)
    # send_keys types through the page's key handling; setting the value is what a paste does.
    driver.execute_script("arguments[0].value = arguments[1];", area, text)


def _sign_in(driver, admin, user, password, shot=None):
    driver.get(admin)
    assert "Sign in" in _text(driver)
    _fill(driver, "user", user)
    _fill(driver, "password", password)
    if shot:
        shot("sign-in")
    _submit(_form(driver, "/admin/signin"))
    assert "Buckets" in _text(driver) and "Sign out" in _text(driver)


def _signed_in_session(admin, user, password):
    """A requests session signed in as a browser does: the form (its token and cookie), then the post."""
    session = requests.Session()
    form = session.get(admin, timeout=10)
    token = re.search(r'name="signin" value="([0-9a-f]{64})"', form.text).group(1)
    signed_in = session.post(f"{admin}/signin", data={"signin": token, "user": user, "password": password},
                             allow_redirects=False, timeout=10)
    assert signed_in.status_code == 303 and "ferry_admin" in session.cookies
    return session


def test_admin_pages_in_a_browser(server_url, browser, tmp_path):  # noqa: F811
    from selenium.webdriver.common.by import By

    driver = browser
    admin = _admin(server_url)
    user, password = f"admin-{uuid.uuid4().hex[:8]}", "a long test password"
    auth = (user, password)
    bucket, collection = "shop", "items"
    step = iter(range(100))

    def shot(name):
        driver.save_screenshot(str(tmp_path / f"{next(step):02d}-{name}.png"))

    # Sign in (Basic credentials through the form; any name and password with basicauth).
    _sign_in(driver, admin, user, password, shot)
    cookie = driver.get_cookie("ferry_admin")
    assert cookie and cookie["httpOnly"] and cookie.get("sameSite") == "Strict"

    # A bucket and a collection through the forms.
    form = _form(driver, "/admin/buckets")
    _fill(driver, "id", bucket, form)
    _submit(form)
    assert driver.current_url.endswith(f"/admin/buckets/{bucket}")
    form = _form(driver, f"/admin/buckets/{bucket}/collections")
    _fill(driver, "id", collection, form)
    _submit(form)
    assert driver.current_url.endswith(f"/collections/{collection}")
    shot("collection")

    # A bad id, then bad JSON: the error on the page, nothing created.
    records_url = f"{server_url}/buckets/{bucket}/collections/{collection}/records"
    form = _form(driver, "/records")
    _fill(driver, "id", "no/slashes", form)
    _set_textarea(driver, form, '{"name": "Kettle"}')
    _submit(form)
    assert "is not an id" in _text(driver) and "Nothing was created" in _text(driver)
    shot("bad-id")
    form = _form(driver, "/records")
    _fill(driver, "id", "kettle", form)
    _set_textarea(driver, form, '{"name": "Kettle",')
    _submit(form)
    assert "not valid JSON" in _text(driver) and "Nothing was created" in _text(driver)
    shot("bad-json")
    assert requests.get(records_url, auth=auth, timeout=10).json()["data"] == []

    # Create it.
    form = _form(driver, "/records")
    _fill(driver, "id", "kettle", form)
    _set_textarea(driver, form, '{"name": "Kettle", "price": 30}')
    _submit(form)
    assert driver.current_url.endswith("/records/kettle")
    assert "Kettle" in _text(driver)
    shot("record")
    record = requests.get(f"{records_url}/kettle", auth=auth, timeout=10).json()["data"]
    assert record["name"] == "Kettle" and record["price"] == 30

    # Someone else changes it through the API while the edit form is open: saving is a conflict.
    edit = _form(driver, "/records/kettle")
    changed = requests.patch(f"{records_url}/kettle", json={"data": {"price": 35}}, auth=auth, timeout=10)
    assert changed.status_code == 200
    _set_textarea(driver, edit, '{"name": "Kettle", "price": 25}')
    _submit(edit)
    page = _text(driver)
    assert "Conflict" in page and "changed by someone else" in page
    shot("conflict")
    assert requests.get(f"{records_url}/kettle", auth=auth, timeout=10).json()["data"]["price"] == 35

    def edit_freshly(text):
        driver.get(f"{admin}/buckets/{bucket}/collections/{collection}/records/kettle")
        form = _form(driver, "/records/kettle")
        _set_textarea(driver, form, text)
        _submit(form)
        return requests.get(f"{records_url}/kettle", auth=auth, timeout=10).json()["data"]["price"]

    # Bad JSON in the edit form: the error, and the record as it was.
    assert edit_freshly("[not json") == 35
    assert "not valid JSON" in _text(driver) and "Nothing was changed" in _text(driver)
    shot("edit-bad-json")

    # A good edit goes through.
    assert edit_freshly('{"name": "Kettle", "price": 32}') == 32

    # The live view: a change made through the API shows up without reloading.
    driver.get(f"{admin}/buckets/{bucket}/collections/{collection}/live")
    deadline = time.monotonic() + 20
    while "listening" not in driver.find_element(By.ID, "live-state").text and time.monotonic() < deadline:
        time.sleep(0.1)
    assert "listening" in driver.find_element(By.ID, "live-state").text
    assert requests.put(f"{records_url}/teapot", json={"data": {"name": "Teapot"}}, auth=auth, timeout=10).status_code == 201
    deadline = time.monotonic() + 20
    while "teapot" not in driver.find_element(By.ID, "live").text and time.monotonic() < deadline:
        time.sleep(0.1)
    shot("live")
    assert "teapot" in driver.find_element(By.ID, "live").text

    # The page's policy stops inline script: nothing injected through data runs.
    requests.put(f"{records_url}/evil", json={"data": {"name": "<img src=x onerror=\"window.pwned=1\">"}}, auth=auth, timeout=10)
    driver.get(f"{admin}/buckets/{bucket}/collections/{collection}")
    assert "<img src=x" in _text(driver)
    assert driver.execute_script("return window.pwned === undefined")
    shot("escaped")

    # The server's own figures: inline SVG charts, which the page's script refreshes in place.
    driver.get(f"{admin}/server")
    assert "requests answered" in _text(driver)
    assert len(driver.find_elements(By.CSS_SELECTOR, "#figures svg[role=img]")) == 4
    deadline = time.monotonic() + 60
    while not driver.find_element(By.ID, "figures").get_attribute("data-updated") and time.monotonic() < deadline:
        time.sleep(0.2)
    assert driver.find_element(By.ID, "figures").get_attribute("data-updated"), "the figures were fetched again"
    assert len(driver.find_elements(By.CSS_SELECTOR, "#figures svg[role=img]")) == 4
    shot("server")


@pytest.fixture(scope="module")
def hooked_server_url():
    """A server whose webhooks may reach this machine (the test's receiver listens on loopback)."""
    from conftest import serve

    with serve(extra_env={"FERRY_WEBHOOK_ALLOW_HOSTS": "127.0.0.1"}) as url:
        yield url


@pytest.fixture
def receiver():
    """A webhook receiver on loopback that answers 200 and keeps each delivery's body."""
    import http.server
    import threading

    received = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            received.append(self.rfile.read(int(self.headers.get("Content-Length", 0))))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/in", received
    finally:
        server.shutdown()
        server.server_close()


def test_admin_groups_schema_and_webhooks_in_a_browser(hooked_server_url, browser, receiver, tmp_path):  # noqa: F811
    """Groups with their members, a collection's schema (a bad one refused with the API's message),
    and a webhook with its delivery log; each bad form leaves the data as it was."""
    server_url = hooked_server_url
    driver = browser
    admin = _admin(server_url)
    user, password = f"owner-{uuid.uuid4().hex[:8]}", "a long test password"
    auth = (user, password)
    hook_url, received = receiver
    secret = "a webhook secret long enough"
    step = iter(range(100))

    def shot(name):
        driver.save_screenshot(str(tmp_path / f"{next(step):02d}-{name}.png"))

    def api(path):
        return requests.get(f"{server_url}{path}", auth=auth, timeout=10)

    _sign_in(driver, admin, user, password)
    form = _form(driver, "/admin/buckets")
    _fill(driver, "id", "team", form)
    _submit(form)
    assert driver.current_url.endswith("/admin/buckets/team")

    # A group: a bad id first (nothing created), then the group and its members.
    form = _form(driver, "/admin/buckets/team/groups")
    _fill(driver, "id", "no good", form)
    _set_textarea(driver, form, "account:ada", name="members")
    _submit(form)
    assert "is not an id" in _text(driver) and "Nothing was created" in _text(driver)
    assert api("/buckets/team/groups").json()["data"] == []
    form = _form(driver, "/admin/buckets/team/groups")
    _fill(driver, "id", "editors", form)
    _set_textarea(driver, form, "account:ada\nsystem.Authenticated", name="members")
    _submit(form)
    assert driver.current_url.endswith("/admin/buckets/team/groups/editors")
    assert "account:ada" in _text(driver)
    shot("group")
    assert api("/buckets/team/groups/editors").json()["data"]["members"] == ["account:ada", "system.Authenticated"]

    # Edit the members; then a stale edit (changed through the API meanwhile) is refused.
    form = _form(driver, "/groups/editors")
    _set_textarea(driver, form, "account:ada\naccount:bob", name="members")
    _submit(form)
    assert api("/buckets/team/groups/editors").json()["data"]["members"] == ["account:ada", "account:bob"]
    form = _form(driver, "/groups/editors")
    patched = requests.patch(f"{server_url}/buckets/team/groups/editors", json={"data": {"members": ["account:eve"]}}, auth=auth, timeout=10)
    assert patched.status_code == 200
    _set_textarea(driver, form, "account:mallory", name="members")
    _submit(form)
    assert "changed by someone else" in _text(driver)
    shot("group-conflict")
    assert api("/buckets/team/groups/editors").json()["data"]["members"] == ["account:eve"]

    # A collection (made through the API: its form is the first test's) and its schema: a bad
    # schema shows the API's message and changes nothing.
    assert requests.put(f"{server_url}/buckets/team/collections/items", json={"data": {}}, auth=auth, timeout=10).status_code == 201
    driver.get(f"{admin}/buckets/team/collections/items")
    form = _form(driver, "/collections/items/schema")
    _set_textarea(driver, form, '{"type": 5}', name="schema")
    _submit(form)
    page = _text(driver)
    assert "data.schema" in page and "Nothing was changed" in page
    shot("schema-refused")
    form = _form(driver, "/collections/items/schema")
    _set_textarea(driver, form, '{"type": "object",', name="schema")
    _submit(form)
    assert "The schema is not valid JSON" in _text(driver)
    assert "schema" not in api("/buckets/team/collections/items").json()["data"]
    form = _form(driver, "/collections/items/schema")
    _set_textarea(driver, form, '{"type": "object", "properties": {"sku": {"type": "string"}}, "required": ["sku"]}', name="schema")
    _fill(driver, "unique_fields", "sku", form)
    _submit(form)
    data = api("/buckets/team/collections/items").json()["data"]
    assert data["schema"]["required"] == ["sku"] and data["unique_fields"] == ["sku"]
    assert "Unique fields: sku" in _text(driver)
    shot("schema")

    # A webhook: a short secret is refused (nothing registered), then it is registered.
    form = _form(driver, "/collections/items/webhooks")
    _fill(driver, "id", "hook", form)
    _fill(driver, "url", hook_url, form)
    _fill(driver, "secret", "short", form)
    _submit(form)
    assert "secret is required" in _text(driver) and "Nothing was registered" in _text(driver)
    assert api("/buckets/team/collections/items/webhooks").json()["data"] == []
    form = _form(driver, "/collections/items/webhooks")
    _fill(driver, "id", "hook", form)
    _fill(driver, "url", hook_url, form)
    _fill(driver, "secret", secret, form)
    _submit(form)
    assert driver.current_url.endswith("/collections/items/webhooks/hook")
    assert "No delivery yet" in _text(driver)

    # A record written through the API is delivered; the log shows the delivery.
    assert requests.put(f"{server_url}/buckets/team/collections/items/records/kettle",
                        json={"data": {"sku": "K-1"}}, auth=auth, timeout=10).status_code == 201
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        driver.get(f"{admin}/buckets/team/collections/items/webhooks/hook")
        if "No delivery yet" not in _text(driver):
            break
        time.sleep(0.5)
    page = _text(driver)
    assert "Delivery log" in page and "No delivery yet" not in page, page
    assert received and b"kettle" in received[0]
    assert re.search(r"changes delivered\s+1\b", page), page
    assert secret not in driver.page_source
    shot("webhook-log")


def test_admin_refuses_a_forged_form(server_url):
    """A form posted without the session's token (what another site's page could send) is refused."""
    admin = _admin(server_url)
    user, password = f"forge-{uuid.uuid4().hex[:8]}", "a long test password"
    # The sign-in form itself, posted from elsewhere (no sign-in cookie): refused, no session.
    forged = requests.post(f"{admin}/signin", data={"signin": "0" * 64, "user": user, "password": password},
                           allow_redirects=False, timeout=10)
    assert forged.status_code == 403 and "not sent from a page of this server" in forged.text
    assert "ferry_admin=" not in forged.headers.get("Set-Cookie", "")
    session = _signed_in_session(admin, user, password)
    refused = session.post(f"{admin}/buckets", data={"id": "forged"}, timeout=10)
    assert refused.status_code == 403 and "CSRF" in refused.text
    assert requests.get(f"{server_url}/buckets/forged", auth=(user, password), timeout=10).status_code in (403, 404)


@pytest.mark.parametrize("path", ["/admin", "/admin/static/admin.css"])
def test_admin_pages_have_a_strict_policy(server_url, path):
    answer = requests.get(server_url[: -len("/v1")] + path, timeout=10)
    assert answer.status_code == 200
    policy = answer.headers["Content-Security-Policy"]
    assert "default-src 'none'" in policy and "unsafe-inline" not in policy and "frame-ancestors 'none'" in policy


def test_job_page_of_ferry_run_in_a_browser(browser, tmp_path):  # noqa: F811
    """`ferry run --status-port`'s page: the job's figures and its charts as inline SVG."""
    import os
    import re
    import subprocess
    from pathlib import Path

    from selenium.webdriver.common.by import By

    binary = Path(os.environ.get("FERRY_BIN", Path(__file__).resolve().parents[2] / ".build" / "debug" / "ferry"))
    work = tmp_path / "run"
    work.mkdir()
    # Seven good records and one without a key, which the file target refuses: a dead letter.
    (work / "src.jsonl").write_text("".join(f'{{"id": "r{i}", "n": {i}}}\n' for i in range(7)) + '{"name": "no key"}\n')
    (work / "ferry.yml").write_text(
        "jobs:\n  copy:\n    source: file:src.jsonl\n    target: file:copy.jsonl\n    schedule: every 1s\n")
    log = open(work / "stderr.log", "wb")
    proc = subprocess.Popen([str(binary), "run", "ferry.yml", "--status-port", "0", "--model-interval", "1s"],
                            cwd=work, stdout=subprocess.DEVNULL, stderr=log)
    try:
        port = None
        deadline = time.monotonic() + 30
        while port is None and time.monotonic() < deadline:
            found = re.search(r"status at http://127\.0\.0\.1:(\d+)/", (work / "stderr.log").read_text(errors="replace"))
            port = found and int(found.group(1))
            time.sleep(0.1)
        assert port, (work / "stderr.log").read_text(errors="replace")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            jobs = requests.get(f"http://127.0.0.1:{port}/status", timeout=5).json()["jobs"]
            if jobs[0]["runs"] >= 1:
                break
            time.sleep(0.2)
        browser.get(f"http://127.0.0.1:{port}/")
        page = _text(browser)
        assert "copy" in page and "records per run" in page and "Sync health" in page
        charts = browser.find_elements(By.CSS_SELECTOR, "svg[role=img]")
        assert len(charts) >= 2
        assert browser.find_elements(By.CSS_SELECTOR, "svg rect"), "the records-per-run bars"
        assert "Dead letters" in page and "no usable key" in page, page
        assert "lag over time" in page and "records per interval" in page
        browser.save_screenshot(str(tmp_path / "job-page.png"))
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()
