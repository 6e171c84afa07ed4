"""A real browser (headless Chromium driven by Selenium) runs a page served from a second
origin against `ferry serve`: CORS preflights, exposed headers (ETag, Next-Page,
Total-Objects), sign-up and sign-in, create, conditional edit, delete, paging and a change
received over the event stream (read with fetch, which can send credentials).

Chromium and its driver come from Debian (`chromium`, `chromium-driver`; `.ci/run` installs
them). Without them the test is skipped, unless FERRY_REQUIRE_BROWSER=1 (CI) makes that a
failure. Nothing is downloaded at test time (Selenium is given the driver's path).
"""

import functools
import http.server
import os
import shutil
import threading
import time
import uuid
from pathlib import Path
from urllib.parse import urlencode

import pytest
import requests

PAGE_DIR = Path(__file__).resolve().parent / "browser"


def _chromium():
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if browser and driver:
        return browser, driver
    reason = "headless Chromium and chromedriver are not installed (Debian: apt-get install chromium chromium-driver)"
    if os.environ.get("FERRY_REQUIRE_BROWSER") == "1":
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.fixture(scope="module")
def page_origin():
    """The app's own origin: a static file server on another port than Ferry's."""
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(PAGE_DIR))
    handler.log_message = lambda *args: None
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()


@pytest.fixture
def browser():
    binary, driver_path = _chromium()
    os.environ.setdefault("SE_OFFLINE", "true")  # Selenium Manager must not try to download
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def _wait(driver, condition, seconds=60):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        results = driver.execute_script("return window.results")
        if results and (results.get("error") or condition(results)):
            return results
        time.sleep(0.1)
    return driver.execute_script("return window.results")


def test_a_page_on_another_origin_uses_the_api(server_url, page_origin, browser):
    user, password = "web" + uuid.uuid4().hex[:8], "a long browser password"
    query = urlencode({"server": server_url, "user": user, "password": password})
    browser.get(f"{page_origin}/app.html?{query}")

    # Once the page listens to the stream, a change made elsewhere must reach it.
    results = _wait(browser, lambda r: any(name == "stream-open" for name, _ in r["steps"]))
    assert results["error"] is None, results
    steps = dict(results["steps"])
    assert steps["stream-open"] == 200, results
    notes = f"{server_url}/buckets/app/collections/notes/records"
    outside = requests.post(notes, json={"data": {"title": "from outside"}}, auth=(user, password), timeout=10)
    assert outside.status_code == 201, outside.text

    results = _wait(browser, lambda r: r["done"])
    assert results["error"] is None, results
    steps = dict(results["steps"])
    assert steps["signup"] == 201
    assert steps["hello-user"] == f"account:{user}"
    assert steps["bucket"] == 201 and steps["collection"] == 201
    assert steps["created"] == ["one", "two", "three", "four", "five"]
    assert steps["edited"] == [200, "one, edited"]
    assert steps["stale"] == [412, 114], "a stale If-Match must be refused"
    assert steps["deleted"] == [200, True]
    # Next-Page and Total-Objects are readable from another origin only when exposed.
    assert steps["pages"] == {"pages": 2, "titles": ["five", "four", "one, edited", "three"], "total": "4"}
    assert steps["streamed"] == 1

    # What the page did is what the server holds.
    held = requests.get(notes, params={"_sort": "title"}, auth=(user, password), timeout=10).json()["data"]
    assert [r["title"] for r in held] == ["five", "four", "from outside", "one, edited", "three"]


def test_a_page_from_an_origin_not_allowed_is_refused(tmp_path, page_origin, browser):
    """With `cors_origins` naming another origin, the browser refuses the page's calls, and the
    server changes nothing."""
    import subprocess
    import socket

    binary = Path(os.environ.get("FERRY_BIN", Path(__file__).resolve().parents[2] / ".build" / "debug" / "ferry"))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [str(binary), "serve", "--host", "127.0.0.1", "--port", str(port), "--data", str(tmp_path),
         "--log-level", "warning", "--cors-origins", "https://app.example.com"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, "FERRY_PASSWORD_ROUNDS": "1000"},
    )
    try:
        url = f"http://127.0.0.1:{port}/v1"
        deadline = time.monotonic() + 30
        while True:
            try:
                if requests.get(f"{url}/__heartbeat__", timeout=1).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            assert time.monotonic() < deadline and proc.poll() is None, "ferry did not start"
            time.sleep(0.1)
        user = "web" + uuid.uuid4().hex[:8]
        browser.get(f"{page_origin}/app.html?" + urlencode({"server": url, "user": user, "password": "a long browser password"}))
        results = _wait(browser, lambda r: r["done"], seconds=30)
        assert results["error"] and "Failed to fetch" in results["error"], results
        # The sign-up was refused, not only hidden from the page: the account does not exist yet.
        created = requests.put(f"{url}/accounts/{user}", json={"data": {"password": "another password"}},
                               headers={"If-None-Match": "*"}, timeout=10)
        assert created.status_code == 201, created.text
    finally:
        proc.terminate()
        proc.wait(timeout=10)
