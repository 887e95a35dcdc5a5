"""tests/browser.py loads an HTTPS page as a person's Chromium would, and tells apart a
CA it trusts from one it does not.

A throwaway CA and a certificate for app.localhost come from mkcert with a
temporary CAROOT (never `mkcert -install`: the machine's trust store is not
touched). A tiny HTTPS server on 127.0.0.1 serves a page whose JavaScript fetches
a JSON document from the same server and only then sets #status to "loaded".
Chromium resolves *.localhost to loopback by itself: no resolver rule is given,
and the server checks that the requests came for app.localhost.

Needs chromium, certutil and mkcert (`make setup` installs them from scripts/system-tools.txt): skipped when
one is missing, failed instead under CI=true.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import ssl
import struct
import subprocess
import threading
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.browser import CHROMIUM, BrowserTimeout, CertificateError, render

pytestmark = pytest.mark.slow

HOSTNAME = "app.localhost"


@pytest.fixture(scope="module", autouse=True)
def _tools() -> None:
    missing = [tool for tool in ("certutil", "mkcert", "ip") if shutil.which(tool) is None]
    if not CHROMIUM.exists():
        missing.insert(0, str(CHROMIUM))
    if not missing:
        return
    message = f"{', '.join(missing)} missing: run `make setup` (scripts/system-tools.txt)"
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"CI=true but {message}", pytrace=False)
    pytest.skip(message)


@dataclass
class Ca:
    root: Path  # the CA's certificate (rootCA.pem in its CAROOT)
    cert: Path  # a server certificate it signed for app.localhost
    key: Path


def _mkcert(caroot: Path) -> Ca:
    """A new CA in ``caroot`` and a certificate for app.localhost signed by it."""
    caroot.mkdir()
    cert, key = caroot / f"{HOSTNAME}.pem", caroot / f"{HOSTNAME}-key.pem"
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(caroot),
           "CAROOT": str(caroot)}
    subprocess.run(["mkcert", "-cert-file", str(cert), "-key-file", str(key), HOSTNAME],
                   env=env, capture_output=True, text=True, check=True, timeout=60)
    return Ca(root=caroot / "rootCA.pem", cert=cert, key=key)


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> Ca:
    return _mkcert(tmp_path_factory.mktemp("mkcert") / "caroot")


@pytest.fixture(scope="module")
def other_ca(tmp_path_factory: pytest.TempPathFactory) -> Ca:
    return _mkcert(tmp_path_factory.mktemp("mkcert-other") / "caroot")


PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>stagecraft release</title></head>
<body>
<h1>Release</h1>
<p id="status">loading</p>
<p>version <span id="version"></span></p>
<ul id="hosts"></ul>
<script>
fetch("/api/release.json")
  .then(response => response.json())
  .then(release => {
    document.getElementById("version").textContent = release.version;
    for (const host of release.hosts) {
      const item = document.createElement("li");
      item.textContent = host;
      document.getElementById("hosts").appendChild(item);
    }
    document.getElementById("status").textContent = "loaded";
  })
  .catch(error => { document.getElementById("status").textContent = "failed: " + error; });
</script>
</body></html>
"""


@dataclass
class Site:
    port: int
    version: str  # what the JSON says, new for each server: only a real fetch shows it
    requests: list[tuple[str, str]] = field(default_factory=list)  # (Host header, path)
    tls_errors: list[str] = field(default_factory=list)
    # Data requests still to answer only after changing this machine's network.
    network_changes: int = 0
    changed_links: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"https://{HOSTNAME}:{self.port}/"


class _TlsServer(ThreadingHTTPServer):
    """HTTPS with the TLS handshake in each request's thread, not in the accept loop."""

    daemon_threads = True

    def __init__(self, context: ssl.SSLContext, site: Site, handler: type) -> None:
        super().__init__(("127.0.0.1", 0), handler)
        self.context = context
        self.site = site

    def get_request(self):  # type: ignore[no-untyped-def]
        sock, address = self.socket.accept()
        return self.context.wrap_socket(sock, server_side=True,
                                        do_handshake_on_connect=False), address

    def handle_error(self, request, client_address) -> None:  # type: ignore[no-untyped-def]
        # A browser that does not trust the certificate aborts the handshake.
        import sys

        self.site.tls_errors.append(repr(sys.exc_info()[1]))


class _Handler(BaseHTTPRequestHandler):
    server: _TlsServer

    def setup(self) -> None:
        self.request.settimeout(15)
        site = self.server.site
        if site.network_changes > 0 and any(path == "/" for _, path in site.requests):
            # The page came: its data request's connection sees the network change
            # during its TLS handshake, where Chromium aborts it.
            site.network_changes -= 1
            _change_the_network(site)
            time.sleep(2)
        self.request.do_handshake()
        super().setup()

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        site = self.server.site
        site.requests.append((self.headers.get("Host", ""), self.path))
        if self.path == "/":
            self._send(200, "text/html; charset=utf-8", PAGE.encode())
        elif self.path == "/api/release.json":
            time.sleep(0.5)  # the data comes well after the load event
            body = {"version": site.version, "hosts": ["web-1", "web-2"]}
            self._send(200, "application/json", json.dumps(body).encode())
        else:
            self._send(404, "text/plain", b"not found")

    def _send(self, status: int, content_type: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


def _change_the_network(site: Site) -> None:
    """Add a link with an address, as Docker does when it makes a network."""
    link = f"stgcnc{secrets.token_hex(3)}"
    site.changed_links.append(link)
    for command in (["ip", "link", "add", link, "type", "veth", "peer", "name", f"{link}p"],
                    ["ip", "link", "set", f"{link}p", "up"],
                    ["ip", "link", "set", link, "up"],
                    ["ip", "addr", "add", "198.18.251.1/30", "dev", link]):
        subprocess.run(command, check=True, capture_output=True, timeout=10)


@pytest.fixture(scope="module")
def site(ca: Ca) -> Iterator[Site]:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(ca.cert, ca.key)
    site = Site(port=0, version=f"v1.4.2-{secrets.token_hex(4)}")
    server = _TlsServer(context, site, _Handler)
    site.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, name="https-site", daemon=True)
    thread.start()
    try:
        yield site
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
        for link in site.changed_links:
            subprocess.run(["ip", "link", "del", link], capture_output=True, timeout=10)


def _png_size(data: bytes) -> tuple[int, int]:
    """(width, height) of a well-formed PNG: signature, every chunk's CRC, IHDR first,
    IEND last, and image data that inflates to exactly the rows the header says."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG signature"
    offset, chunks, idat = 8, [], b""
    while offset < len(data):
        (length,) = struct.unpack(">I", data[offset:offset + 4])
        kind = data[offset + 4:offset + 8]
        body = data[offset + 8:offset + 8 + length]
        (crc,) = struct.unpack(">I", data[offset + 8 + length:offset + 12 + length])
        assert zlib.crc32(kind + body) == crc, f"bad CRC in {kind!r}"
        chunks.append((kind, body))
        if kind == b"IDAT":
            idat += body
        offset += 12 + length
    assert chunks[0][0] == b"IHDR" and chunks[-1][0] == b"IEND", [k for k, _ in chunks]
    width, height, depth, color = struct.unpack(">IIBB", chunks[0][1][:10])
    channels = {2: 3, 6: 4, 0: 1, 4: 2}[color]
    assert depth == 8
    assert len(zlib.decompress(idat)) == height * (1 + width * channels)
    return width, height


def _processes_using(path: Path) -> list[str]:
    """Live processes whose command line names ``path`` (a Chromium left behind)."""
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if str(path) in cmdline and state != "Z":
            found.append(f"{proc.name}: {cmdline[:200]}")
    return found


def test_a_trusted_ca_loads_the_page_and_its_javascript_data(
        ca: Ca, site: Site, tmp_path: Path) -> None:
    workdir = tmp_path / "browser"
    workdir.mkdir()
    shot = tmp_path / "page.png"
    started = time.monotonic()
    page = render(site.url, ca_cert=ca.root, wait_text=("status", "loaded"),
                  texts=["version", "hosts", "no-such-id"], screenshot=shot, timeout=60,
                  workdir=workdir)
    took = time.monotonic() - started
    print(f"render took {took:.2f} s")

    assert page.texts == {"status": "loaded", "version": site.version,
                          "hosts": "web-1web-2", "no-such-id": None}
    assert page.status == 200
    assert page.title == "stagecraft release"
    assert page.url == site.url
    assert f"version {site.version}" in page.body_text
    assert "web-1\nweb-2" in page.body_text
    assert page.console == []
    assert page.screenshot == shot
    assert _png_size(shot.read_bytes()) == (1280, 800)
    # Chromium asked for app.localhost itself (no resolver rule), and fetched the data.
    assert (f"{HOSTNAME}:{site.port}", "/") in site.requests
    assert (f"{HOSTNAME}:{site.port}", "/api/release.json") in site.requests
    # Chromium is gone and its HOME and profile removed.
    assert _processes_using(workdir) == []
    assert list(workdir.iterdir()) == []


def test_a_ca_the_browser_does_not_trust_is_a_certificate_error(
        other_ca: Ca, site: Site, tmp_path: Path) -> None:
    workdir = tmp_path / "browser"
    workdir.mkdir()
    shot = tmp_path / "page.png"
    with pytest.raises(CertificateError) as raised:
        render(site.url, ca_cert=other_ca.root, wait_text=("status", "loaded"),
               screenshot=shot, timeout=60, workdir=workdir)
    message = str(raised.value)
    assert site.url in message
    assert "net::ERR_CERT_AUTHORITY_INVALID" in message
    assert not shot.exists()
    assert _processes_using(workdir) == []
    assert list(workdir.iterdir()) == []


def test_text_that_never_comes_times_out_saying_what_the_page_shows(
        ca: Ca, site: Site, tmp_path: Path) -> None:
    workdir = tmp_path / "browser"
    workdir.mkdir()
    started = time.monotonic()
    with pytest.raises(BrowserTimeout) as raised:
        render(site.url, ca_cert=ca.root, wait_text=("status", "never"), timeout=8,
               workdir=workdir)
    assert time.monotonic() - started < 8 + 8  # the timeout, and Chromium's stop
    message = str(raised.value)
    assert site.url in message
    assert "#status did not read 'never'" in message
    assert "it reads 'loaded'" in message
    assert _processes_using(workdir) == []
    assert list(workdir.iterdir()) == []


def test_a_load_aborted_by_a_network_change_is_loaded_again(
        ca: Ca, site: Site, tmp_path: Path) -> None:
    """Chromium aborts in-flight requests with net::ERR_NETWORK_CHANGED when an
    address appears on any link (Docker makes networks while other tests run): the
    harness loads the page again instead of failing, and says so."""
    if os.geteuid() != 0:
        pytest.skip("adding a link needs root")
    workdir = tmp_path / "browser"
    workdir.mkdir()
    site.requests.clear()
    site.network_changes = 1
    page = render(site.url, ca_cert=ca.root, wait_text=("status", "loaded"),
                  texts=["version"], timeout=60, workdir=workdir)
    assert site.network_changes == 0 and site.changed_links
    assert page.reloads == 1, page.console
    assert page.texts["version"] == site.version
    assert [path for _, path in site.requests].count("/") == 2  # loaded twice
    assert _processes_using(workdir) == []
