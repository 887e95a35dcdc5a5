"""Load a page in Debian's headless Chromium, as a person's browser would, and read it.

``render(url, ca_cert=...)`` starts ``/usr/bin/chromium --headless`` with a
throwaway HOME whose NSS database (``$HOME/.pki/nssdb``) trusts ``ca_cert`` (e.g.
a CA that mkcert made), so an HTTPS page signed by that CA loads with Chromium's
own certificate checks: no ``--ignore-certificate-errors``. It waits until the
page has loaded and, when asked, until an element reads a given text (the page's
JavaScript has rendered its data), then returns the texts of elements and of the
page and saves a PNG screenshot. Chromium is killed and its directories are
removed in every case, error or not.

Chromium is driven over the DevTools protocol on ``--remote-debugging-pipe``
(JSON messages ended by NUL on file descriptors 3 and 4): the standard library
is enough, no port is opened, and nothing but this process can drive it.

    page = render("https://app.localhost:8443/", ca_cert=caroot / "rootCA.pem",
                  wait_text=("status", "loaded"), texts=["version"],
                  screenshot=tmp_path / "page.png")
    page.texts["version"]   # textContent of #version, stripped
    page.body_text          # document.body.innerText

Errors: ``CertificateError`` when the page, or any request it makes, fails a TLS
check (the message names the URL and Chromium's error, e.g.
net::ERR_CERT_AUTHORITY_INVALID); ``BrowserTimeout`` when the page does not load
or the awaited text does not appear in time (with the last text seen, console
messages and failed requests); ``BrowserError`` for the rest (Chromium missing or
dead, navigation failed such as net::ERR_CONNECTION_REFUSED).

A page load that Chromium aborts with net::ERR_NETWORK_CHANGED (it aborts
in-flight requests when any interface's address changes, which Docker does
whenever another test makes a network) is loaded again, up to
``NETWORK_CHANGE_RELOADS`` times, as a person would press reload; ``Rendered.reloads``
says how often. Every other failure stays a failure.

Chromium resolves ``*.localhost`` to the loopback addresses itself, so
``https://app.localhost:<port>/`` reaches a server on 127.0.0.1 with no resolver
rule. Install Chromium, certutil and mkcert with `make setup` (scripts/system-tools.txt).
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import re
import select
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CHROMIUM = Path("/usr/bin/chromium")  # Debian's launcher (it reads /etc/chromium.d)

#: Chromium's network errors that are a failed TLS check (certificate or handshake).
_TLS_ERROR = re.compile(r"ERR_(CERT_|SSL_|BAD_SSL_)|ERR_CERTIFICATE_")

#: How often a load aborted by a change of this machine's network is tried again.
NETWORK_CHANGE_RELOADS = 3
_NETWORK_CHANGED = "net::ERR_NETWORK_CHANGED"


class BrowserError(RuntimeError):
    """Chromium could not load or read the page."""


class CertificateError(BrowserError):
    """A TLS check failed: the page's (or a request's) certificate is not trusted or valid."""


class BrowserTimeout(BrowserError):
    """The page did not load, or the awaited text did not appear, in time."""


class _NetworkChanged(BrowserError):
    """Chromium aborted a request of this load because the machine's network changed."""


@dataclass(frozen=True)
class Rendered:
    """What ``render`` saw once the page was rendered."""

    url: str  #: location.href at the end (after redirects)
    status: int | None  #: HTTP status of the main document (None if not seen)
    title: str  #: document.title
    texts: dict[str, str | None]  #: element id -> textContent stripped; None when absent
    body_text: str  #: document.body.innerText (the visible text)
    console: list[str] = field(default_factory=list)  #: console messages, uncaught errors
    screenshot: Path | None = None  #: the PNG written, when one was asked for
    seconds: float = 0.0  #: wall time of the whole call, Chromium's start and stop included
    reloads: int = 0  #: loads tried again after net::ERR_NETWORK_CHANGED


def render(
    url: str,
    *,
    ca_cert: Path | None,
    wait_text: tuple[str, str] | None = None,
    texts: Sequence[str] = (),
    screenshot: Path | None = None,
    timeout: float = 60,
    viewport: tuple[int, int] = (1280, 800),
    workdir: Path | None = None,
) -> Rendered:
    """Load ``url`` in headless Chromium and return what it rendered.

    ``ca_cert``: a PEM CA certificate the browser trusts for TLS, on top of
    Chromium's own roots (None: trust nothing extra, e.g. for http:// pages).
    ``wait_text``: ``(element_id, text)``: after the load event, wait until that
    element's textContent, stripped, equals ``text``. ``texts``: element ids whose
    text to return (the ``wait_text`` element is always included). ``screenshot``:
    where to save a PNG of the viewport (``viewport`` = width, height in CSS px).
    ``timeout``: seconds for everything, Chromium's start included. ``workdir``:
    where the throwaway HOME and profile are made (default: the system's temp
    dir); they are removed before this returns.
    """
    started = time.monotonic()
    deadline = started + timeout
    if not CHROMIUM.exists():
        raise BrowserError(f"{CHROMIUM} is missing: run `make setup` (scripts/system-tools.txt)")
    if ca_cert is not None and not Path(ca_cert).is_file():
        raise BrowserError(f"CA certificate {ca_cert} does not exist")
    wanted = list(dict.fromkeys([*([wait_text[0]] if wait_text else []), *texts]))
    tmp = Path(tempfile.mkdtemp(prefix="stagecraft-browser-", dir=workdir))
    browser: _Chromium | None = None
    try:
        home = tmp / "home"
        _trusting_nssdb(home / ".pki" / "nssdb", ca_cert)
        browser = _Chromium.start(home, tmp / "profile", tmp / "chromium.log", viewport)
        page = _Page(browser.cdp, url, deadline)
        page.open(viewport)
        reloads = 0
        while True:
            try:
                page.navigate()
                if wait_text is not None:
                    page.wait_for_text(*wait_text)
                break
            except _NetworkChanged as changed:
                if reloads == NETWORK_CHANGE_RELOADS:
                    raise BrowserError(f"{changed} ({reloads} reloads)") from None
                reloads += 1
        seen = page.evaluate(_READ_PAGE % json.dumps(wanted))
        if screenshot is not None:
            shot = page.call("Page.captureScreenshot", {"format": "png"})
            screenshot.parent.mkdir(parents=True, exist_ok=True)
            screenshot.write_bytes(base64.b64decode(shot["data"]))
        page.raise_on_tls_failure()
        return Rendered(url=seen["href"], status=page.status, title=seen["title"],
                        texts=seen["texts"], body_text=seen["body"], console=page.console,
                        screenshot=screenshot, seconds=time.monotonic() - started,
                        reloads=reloads)
    except BrowserError as error:
        if browser is not None and browser.cdp.closed:
            raise BrowserError(f"{error}\nChromium's log ends:\n{browser.log_tail()}") from error
        raise
    finally:
        if browser is not None:
            browser.stop()
        shutil.rmtree(tmp, ignore_errors=True)


# Read the requested elements' texts and the page's in one round trip.
_READ_PAGE = """(() => {
  const texts = {};
  for (const id of %s) {
    const e = document.getElementById(id);
    texts[id] = e === null ? null : e.textContent.trim();
  }
  return {href: location.href, title: document.title, texts,
          body: document.body ? document.body.innerText : ""};
})()"""

_TEXT_OF = """(() => {
  const e = document.getElementById(%s);
  return e === null ? null : e.textContent.trim();
})()"""


def _trusting_nssdb(nssdb: Path, ca_cert: Path | None) -> None:
    """An NSS database, as Chromium on Linux reads from $HOME/.pki/nssdb, that trusts
    ``ca_cert`` to issue server certificates ("C,,")."""
    nssdb.mkdir(parents=True)
    create_argv = ["certutil", "-N", "-d", f"sql:{nssdb}", "--empty-password"]
    trust_argv = ["certutil", "-A", "-d", f"sql:{nssdb}", "-n", "stagecraft test CA",
                  "-t", "C,,", "-i", str(ca_cert)]
    for argv in [create_argv, trust_argv] if ca_cert is not None else [create_argv]:
        try:
            proc = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
        except FileNotFoundError:
            raise BrowserError("certutil is missing: run `make setup` (scripts/system-tools.txt)") from None
        if proc.returncode != 0:
            raise BrowserError(f"{' '.join(argv)} failed: {(proc.stderr or proc.stdout).strip()}")


class _Cdp:
    """The DevTools protocol over Chromium's pipe: commands and their replies, with
    every event kept (in order) for whoever waits on it."""

    def __init__(self, to_browser: int, from_browser: int) -> None:
        self._out = to_browser
        self._in = from_browser
        self._buffer = bytearray()
        self._next_id = 0
        self.closed = False  # Chromium closed its end of the pipe (it exited)
        self.events: list[dict[str, Any]] = []
        self.on_event: Callable[[dict[str, Any]], None] = lambda event: None

    def send(self, method: str, params: dict[str, Any] | None = None,
             session: str | None = None) -> int:
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if session is not None:
            message["sessionId"] = session
        data = json.dumps(message).encode() + b"\0"
        try:
            while data:
                data = data[os.write(self._out, data):]
        except BrokenPipeError:
            self.closed = True
            raise BrowserError(f"Chromium exited (while sending {method})") from None
        return self._next_id

    def call(self, method: str, params: dict[str, Any] | None = None, *,
             session: str | None = None, deadline: float) -> dict[str, Any]:
        sent = self.send(method, params, session)
        while True:
            message = self._receive(deadline, f"Chromium's reply to {method}")
            if message.get("id") == sent:
                if "error" in message:
                    raise BrowserError(f"{method} failed: {message['error'].get('message')}")
                return message.get("result", {})

    def wait_event(self, matches: Callable[[dict[str, Any]], bool], start: int, *,
                   deadline: float, what: str) -> dict[str, Any]:
        """The first event from index ``start`` on for which ``matches`` holds."""
        index = start
        while True:
            while index < len(self.events):
                if matches(self.events[index]):
                    return self.events[index]
                index += 1
            self._receive(deadline, what)

    def _receive(self, deadline: float, what: str) -> dict[str, Any]:
        while (end := self._buffer.find(b"\0")) < 0:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise BrowserTimeout(f"timed out waiting for {what}")
            ready, _, _ = select.select([self._in], [], [], min(remaining, 1.0))
            if ready:
                chunk = os.read(self._in, 1 << 20)
                if not chunk:
                    self.closed = True
                    raise BrowserError(f"Chromium exited (while waiting for {what})")
                self._buffer += chunk
        message = json.loads(self._buffer[:end])
        del self._buffer[:end + 1]
        if "method" in message:
            self.events.append(message)
            self.on_event(message)
        return message


class _Chromium:
    """A headless Chromium process (its own process group) and its DevTools pipe."""

    def __init__(self, pid: int, cdp: _Cdp, fds: list[int], log: Path) -> None:
        self.pid = pid
        self.cdp = cdp
        self._fds = fds
        self._log = log
        self._status: int | None = None

    @classmethod
    def start(cls, home: Path, profile: Path, log: Path,
              viewport: tuple[int, int]) -> _Chromium:
        argv = [
            "chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
            "--no-first-run", "--no-default-browser-check", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--disable-extensions",
            "--disable-default-apps", "--password-store=basic", "--use-mock-keychain",
            "--no-proxy-server", "--mute-audio", "--hide-scrollbars",
            f"--window-size={viewport[0]},{viewport[1]}",
            f"--user-data-dir={profile}", "--remote-debugging-pipe", "about:blank",
        ]
        env = {name: value for name, value in os.environ.items()
               if not name.startswith(("XDG_", "DISPLAY", "WAYLAND_", "CHROME", "CHROMIUM"))}
        env.update(HOME=str(home), XDG_CONFIG_HOME=str(home / ".config"),
                   XDG_CACHE_HOME=str(home / ".cache"), XDG_DATA_HOME=str(home / ".local/share"))
        # Chromium reads commands on fd 3 and writes replies on fd 4. Ours are moved
        # above 9 first, so that dup2 onto 3 and 4 never meets one of them.
        to_read, to_browser = (_high(fd) for fd in os.pipe())
        from_browser, to_write = (_high(fd) for fd in os.pipe())
        try:
            pid = os.posix_spawn(str(CHROMIUM), argv, env, setsid=True, file_actions=[
                (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
                (os.POSIX_SPAWN_OPEN, 1, str(log), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600),
                (os.POSIX_SPAWN_DUP2, 1, 2),
                (os.POSIX_SPAWN_DUP2, to_read, 3),
                (os.POSIX_SPAWN_DUP2, to_write, 4),
            ])
        except OSError as error:
            for fd in (to_read, to_browser, from_browser, to_write):
                os.close(fd)
            raise BrowserError(f"cannot start {CHROMIUM}: {error}") from error
        os.close(to_read)
        os.close(to_write)
        return cls(pid, _Cdp(to_browser, from_browser), [to_browser, from_browser], log)

    def exited(self) -> bool:
        if self._status is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self._status = status
        return self._status is not None

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self._log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        """Close the browser, kill whatever of its process group is left, reap it."""
        try:
            if not self.exited():
                try:
                    self.cdp.send("Browser.close")
                except BrowserError:
                    pass
                deadline = time.monotonic() + 5
                while not self.exited() and time.monotonic() < deadline:
                    time.sleep(0.05)
        finally:
            try:
                os.killpg(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            if self._status is None:
                os.waitpid(self.pid, 0)
                self._status = 0
            for fd in self._fds:
                os.close(fd)
            # The helpers (zygote, renderer) die with the group: wait until no live
            # process of it is left, so that removing the profile races nothing.
            deadline = time.monotonic() + 5
            while _group_alive(self.pid) and time.monotonic() < deadline:
                time.sleep(0.05)


def _high(fd: int) -> int:
    moved = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)
    os.close(fd)
    return moved


def _group_alive(pgid: int) -> bool:
    """Whether a process other than a zombie is left in process group ``pgid``."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if fields[0] != "Z" and int(fields[2]) == pgid:
            return True
    return False


class _Page:
    """One tab, attached over the browser's pipe, and what it did."""

    def __init__(self, cdp: _Cdp, url: str, deadline: float) -> None:
        self.cdp = cdp
        self.url = url
        self.deadline = deadline
        self.session = ""
        self.status: int | None = None
        self.console: list[str] = []
        self._loader = ""
        self._requests: dict[str, str] = {}
        self._failed: list[tuple[str, str]] = []  # (url, net error)
        self._load_failures = 0  # where the current load's entries of _failed start
        cdp.on_event = self._event

    def call(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        return self.cdp.call(method, params, session=self.session, deadline=self.deadline)

    def open(self, viewport: tuple[int, int]) -> None:
        target = self.cdp.call("Target.createTarget", {"url": "about:blank"},
                               deadline=self.deadline)["targetId"]
        self.session = self.cdp.call("Target.attachToTarget",
                                     {"targetId": target, "flatten": True},
                                     deadline=self.deadline)["sessionId"]
        for method in ("Page.enable", "Runtime.enable", "Network.enable"):
            self.call(method)
        self.call("Emulation.setDeviceMetricsOverride", {
            "width": viewport[0], "height": viewport[1], "deviceScaleFactor": 1,
            "mobile": False})

    def navigate(self) -> None:
        """Go to the URL and wait for its load event; a failed navigation raises
        (a certificate error as ``CertificateError``, never an interstitial)."""
        start = len(self.cdp.events)
        self._load_failures = len(self._failed)
        try:
            result = self.call("Page.navigate", {"url": self.url})
        except BrowserTimeout:
            raise BrowserTimeout(f"{self.url}: no response in time{self._diagnosis()}") from None
        error = result.get("errorText")
        if error and _NETWORK_CHANGED in error:
            raise _NetworkChanged(f"{self.url}: {error}{self._diagnosis()}")
        if error:
            kind = CertificateError if _TLS_ERROR.search(error) else BrowserError
            prefix = "TLS certificate check failed: " if kind is CertificateError else ""
            raise kind(f"{prefix}{self.url}: {error}{self._diagnosis()}")
        self._loader = result.get("loaderId", "")
        for event in self.cdp.events[start:]:  # the response came before its loader id
            params = event.get("params", {})
            if (event["method"] == "Network.responseReceived" and params.get("type") == "Document"
                    and params.get("loaderId") == self._loader):
                self.status = params["response"].get("status")
        try:
            self.cdp.wait_event(
                lambda e: e["method"] == "Page.loadEventFired"
                and e.get("sessionId") == self.session,
                start, deadline=self.deadline, what="the load event")
        except BrowserTimeout:
            raise BrowserTimeout(f"{self.url}: the page did not finish loading in time"
                                 f"{self._diagnosis()}") from None
        self.raise_on_tls_failure()

    def wait_for_text(self, element_id: str, text: str) -> None:
        last: str | None = None
        while True:
            self.raise_on_tls_failure()
            try:
                last = self.evaluate(_TEXT_OF % json.dumps(element_id))
            except BrowserTimeout:
                pass
            if last == text:
                return
            if any(_NETWORK_CHANGED in error for _, error in self._failed[self._load_failures:]):
                raise _NetworkChanged(f"{self.url}: #{element_id} reads {last!r} after a "
                                      f"request failed{self._diagnosis()}")
            if time.monotonic() + 0.1 >= self.deadline:
                seen = "no such element" if last is None else f"it reads {last!r}"
                raise BrowserTimeout(f"{self.url}: #{element_id} did not read {text!r} in "
                                     f"time ({seen}){self._diagnosis()}")
            # Reading the messages that came meanwhile is the pause between polls.
            try:
                self.cdp.wait_event(lambda e: False, len(self.cdp.events),
                                    deadline=time.monotonic() + 0.1, what="")
            except BrowserTimeout:
                pass

    def evaluate(self, expression: str) -> Any:
        result = self.call("Runtime.evaluate", {"expression": expression,
                                                "returnByValue": True})
        if "exceptionDetails" in result:
            details = result["exceptionDetails"]
            message = details.get("exception", {}).get("description") or details.get("text")
            raise BrowserError(f"{self.url}: script failed: {message}")
        return result["result"].get("value")

    def raise_on_tls_failure(self) -> None:
        for url, error in self._failed:
            if _TLS_ERROR.search(error):
                raise CertificateError(f"TLS certificate check failed: {url}: {error} "
                                       f"(a request of {self.url})")

    def _event(self, event: dict[str, Any]) -> None:
        method, params = event["method"], event.get("params", {})
        if method == "Network.requestWillBeSent":
            self._requests[params["requestId"]] = params["request"]["url"]
        elif method == "Network.responseReceived":
            if params.get("type") == "Document" and params.get("loaderId") == self._loader:
                self.status = params["response"].get("status")
        elif method == "Network.loadingFailed" and not params.get("canceled"):
            url = self._requests.get(params["requestId"], "?")
            self._failed.append((url, params.get("errorText", "")))
        elif method == "Runtime.consoleAPICalled":
            words = [str(arg.get("value", arg.get("description", ""))) for arg in params["args"]]
            self.console.append(f"console.{params['type']}: {' '.join(words)}")
        elif method == "Runtime.exceptionThrown":
            details = params["exceptionDetails"]
            message = details.get("exception", {}).get("description") or details.get("text")
            self.console.append(f"uncaught: {message}")

    def _diagnosis(self) -> str:
        lines = [f"failed request: {url}: {error}" for url, error in self._failed]
        lines += self.console[-10:]
        return "".join(f"\n  {line}" for line in lines)
