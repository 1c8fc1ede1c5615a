"""``wss://`` with a local CA made by trustme (course.net.tls), in Python and in real Chromium.

The Python client verifies the server's certificate against the course's CA; another CA,
the system's CAs, or a name the certificate does not list fail with a clear
``SSLCertVerificationError``.  Chromium trusts exactly one server key
(``--ignore-certificate-errors-spki-list``): its page signs in over HTTPS and talks over
``wss://``; a server with another key, even from the same CA, is refused.
"""

from __future__ import annotations

import asyncio
import json
import ssl

import pytest
from websockets.asyncio.client import connect

from conftest import CHROMIUM_ARGS, chromium_path, missing
from course.net.private import COOKIE, start_private
from course.net.tls import chromium_trust_args, client_context, local_ca, server_context, spki_sha256
from test_messenger import LoopThread

TIMEOUT_MS = 10_000
SECRET = "SECRET: salaries are paid on the 25th"


@pytest.fixture(scope="module")
def loop():
    thread = LoopThread()
    try:
        yield thread
    finally:
        thread.stop()


@pytest.fixture(scope="module")
def pki():
    ca = local_ca()
    return {"ca": ca, "good": server_context(ca), "other-ca": server_context(local_ca()),
            "localhost-only": server_context(ca, "localhost")}


@pytest.fixture(scope="module")
def servers(loop, pki):
    async def start():
        return {name: await start_private(ssl_context=pki[name])
                for name in ("good", "other-ca", "localhost-only")}
    started = loop.run(start())
    try:
        yield started
    finally:
        async def stop():
            for server in started.values():
                server.close()
            await asyncio.gather(*(server.wait_closed() for server in started.values()))
        loop.run(stop())


async def welcome(url: str, context: ssl.SSLContext, cookie: str) -> dict:
    async with connect(url, ssl=context, open_timeout=5,
                       additional_headers={"Cookie": f"{COOKIE}={cookie}"}) as ws:
        async with asyncio.timeout(5):
            return json.loads(await ws.recv())


def test_python_client_verifies_the_certificate(loop, pki, servers):
    good = servers["good"]
    assert good.url.startswith("https://127.0.0.1:") and good.socket_url.startswith("wss://127.0.0.1:")
    cookie = good.session_for("ada")
    trusting = client_context(pki["ca"])
    assert loop.run(welcome(good.socket_url, trusting, cookie))["user"] == "ada"
    localhost = good.socket_url.replace("127.0.0.1", "localhost")
    assert loop.run(welcome(localhost, trusting, cookie))["user"] == "ada"

    cases = {
        "another CA": (servers["other-ca"].socket_url, trusting,
                       "certificate verify failed: unable to get local issuer certificate"),
        "the system's CAs only": (good.socket_url, ssl.create_default_context(),
                                  "certificate verify failed: unable to get local issuer certificate"),
        "a name not in the certificate": (servers["localhost-only"].socket_url, trusting,
                                          "certificate verify failed: IP address mismatch, "
                                          "certificate is not valid for '127.0.0.1'"),
    }
    for what, (url, context, text) in cases.items():
        with pytest.raises(ssl.SSLCertVerificationError) as info:
            loop.run(welcome(url, context, cookie))
        assert text in str(info.value), (what, str(info.value))


def test_spki_pin_is_the_certificate_key(pki):
    pins = {spki_sha256(pki[name].course_cert_pem) for name in ("good", "other-ca", "localhost-only")}
    assert len(pins) == 3 and all(len(pin) == 44 for pin in pins)  # base64 of 32 bytes
    assert chromium_trust_args(pki["good"]) == [
        f"--ignore-certificate-errors-spki-list={spki_sha256(pki['good'].course_cert_pem)}"]


@pytest.fixture(scope="module")
def tls_chromium(pki):
    """Chromium that trusts the "good" server's key, and no other (one launch for the file)."""
    path = chromium_path()
    if path is None:
        missing("Chromium (apt-get install chromium; `make test` does it as root on Debian)")
    from playwright.sync_api import sync_playwright
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=path, headless=True,
                                    args=CHROMIUM_ARGS + chromium_trust_args(pki["good"]))
        try:
            yield browser
        finally:
            browser.close()


@pytest.mark.browser
def test_chromium_page_over_https_and_wss(tls_chromium, servers):
    good = servers["good"]
    page = tls_chromium.new_page()
    try:
        page.goto(good.url)
        assert page.evaluate("location.protocol") == "https:"
        page.fill("#user", "ada")
        page.click("#login button")
        page.wait_for_function("document.getElementById('status').textContent.endsWith('connected')",
                               timeout=TIMEOUT_MS)
        page.fill("#room", "payroll")
        page.click("#rooms button")
        page.wait_for_function("t => document.getElementById('log').textContent.includes(t)",
                               arg=SECRET, timeout=TIMEOUT_MS)
        assert page.context.cookies()[0]["secure"] is True  # set over HTTPS: Secure
        # from the trusted page, wss:// to servers whose key is not pinned fails
        for name in ("other-ca", "localhost-only"):
            code = page.evaluate("""url => new Promise(done => {
                const ws = new WebSocket(url);
                ws.onopen = () => done("open");
                ws.onclose = (event) => done(event.code);
            })""", servers[name].socket_url.replace("127.0.0.1", "localhost"))
            assert code == 1006, name
    finally:
        page.close()


@pytest.mark.browser
def test_chromium_refuses_keys_it_was_not_told_to_trust(tls_chromium, servers):
    from playwright.sync_api import Error

    page = tls_chromium.new_page()
    try:
        for name in ("other-ca", "localhost-only"):
            url = servers[name].url.replace("127.0.0.1", "localhost")
            with pytest.raises(Error, match="net::ERR_CERT_AUTHORITY_INVALID"):
                page.goto(url)
    finally:
        page.close()
