"""The /admin pages in a real browser (headless Chromium driven by Selenium, set up as in
test_browser.py): sign in, create a bucket, a collection and a record through the forms, edit
it with a stale version and see the conflict, send bad JSON and a bad id and see the error with
nothing changed, and watch a change made through the API appear on the live page.

Screenshots of each step go to the test's tmp_path (pytest keeps the last runs' folders).
The assertions read the page's text and the server's data through the API, never pixels.
"""

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
    has navigated, and reading the old page's body then fails as stale (it did, under load)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    driver = form.parent
    old_page = driver.find_element(By.TAG_NAME, "html")
    form.find_element(By.TAG_NAME, "button").click()
    wait = WebDriverWait(driver, 60)
    wait.until(expected_conditions.staleness_of(old_page))
    wait.until(lambda d: d.execute_script("return document.readyState") == "complete")


def _text(driver):
    from selenium.webdriver.common.by import By

    return driver.find_element(By.TAG_NAME, "body").text


def _set_textarea(driver, form, text):
    from selenium.webdriver.common.by import By

    area = form.find_element(By.NAME, "data")
    # send_keys types through the page's key handling; setting the value is what a paste does.
    driver.execute_script("arguments[0].value = arguments[1];", area, text)


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
    driver.get(admin)
    assert "Sign in" in _text(driver)
    _fill(driver, "user", user)
    _fill(driver, "password", password)
    shot("sign-in")
    _submit(_form(driver, "/admin/signin"))
    assert "Buckets" in _text(driver) and "Sign out" in _text(driver)
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


def test_admin_refuses_a_forged_form(server_url):
    """A form posted without the session's token (what another site's page could send) is refused."""
    admin = _admin(server_url)
    session = requests.Session()
    user, password = f"forge-{uuid.uuid4().hex[:8]}", "a long test password"
    signed_in = session.post(f"{admin}/signin", data={"user": user, "password": password}, allow_redirects=False, timeout=10)
    assert signed_in.status_code == 303 and "ferry_admin" in session.cookies
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
    (work / "src.jsonl").write_text("".join(f'{{"id": "r{i}", "n": {i}}}\n' for i in range(7)))
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
        browser.save_screenshot(str(tmp_path / "job-page.png"))
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()
