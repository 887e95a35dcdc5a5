"""The environment CA (stagecraft.infra.tls): made once, reused, and its certificates verify
in a real TLS handshake."""

from __future__ import annotations

import datetime
import ipaddress
import socket
import ssl
import stat
import threading
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from stagecraft.errors import StateError
from stagecraft.infra.tls import (
    ca_directory,
    certificate_covers,
    ensure_ca,
    issue,
    load_ca,
)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_ca_is_made_once_with_a_private_key_only_its_owner_reads(tmp_path):
    ca = ensure_ca(tmp_path / "env")
    assert ca.cert_path == tmp_path / "env" / "ca" / "ca.crt"
    assert mode(ca.key_path) == 0o600
    assert mode(ca.cert_path) == 0o644
    assert mode(ca_directory(tmp_path / "env")) == 0o700
    constraints = ca.certificate.extensions.get_extension_for_class(x509.BasicConstraints)
    assert constraints.critical and constraints.value.ca and constraints.value.path_length == 0
    assert ca.certificate.extensions.get_extension_for_class(x509.KeyUsage).value.key_cert_sign

    again = ensure_ca(tmp_path / "env")
    assert again.cert_pem == ca.cert_pem
    assert again.cert_path.read_text() == ca.cert_pem
    assert load_ca(tmp_path / "env").cert_pem == ca.cert_pem
    # Another environment gets another CA.
    assert ensure_ca(tmp_path / "other").cert_pem != ca.cert_pem


def test_leaf_is_signed_by_the_ca_and_names_exactly_what_was_asked(tmp_path):
    ca = ensure_ca(tmp_path)
    cert_pem, key_pem = issue(ca, ["registry", "localhost"], ["10.200.3.128", "127.0.0.1"],
                              days=30)
    cert = x509.load_pem_x509_certificate(cert_pem.encode())
    cert.verify_directly_issued_by(ca.certificate)  # raises when the signature is wrong
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["registry", "localhost"]
    assert san.get_values_for_type(x509.IPAddress) == [
        ipaddress.ip_address("10.200.3.128"), ipaddress.ip_address("127.0.0.1")]
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    lifetime = cert.not_valid_after_utc - datetime.datetime.now(datetime.timezone.utc)
    assert datetime.timedelta(days=29) < lifetime <= datetime.timedelta(days=30)
    key = serialization.load_pem_private_key(key_pem.encode(), password=None)
    assert key.public_key().public_numbers() == cert.public_key().public_numbers()
    # Each certificate has its own key.
    assert issue(ca, ["registry"])[1] != key_pem


def test_certificate_never_outlives_its_ca(tmp_path):
    ca = ensure_ca(tmp_path)
    cert_pem, _ = issue(ca, ["far.example"], days=100_000)
    cert = x509.load_pem_x509_certificate(cert_pem.encode())
    assert cert.not_valid_after_utc <= ca.certificate.not_valid_after_utc


def test_a_real_tls_handshake_verifies_the_chain_and_the_names(tmp_path):
    ca = ensure_ca(tmp_path)
    cert_pem, key_pem = issue(ca, ["registry.test"], ["127.0.0.1"])
    (tmp_path / "leaf.crt").write_text(cert_pem)
    (tmp_path / "leaf.key").write_text(key_pem)
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(tmp_path / "leaf.crt", tmp_path / "leaf.key")

    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
        listener.settimeout(10)

        def serve(times: int) -> None:
            for _ in range(times):
                try:
                    conn, _addr = listener.accept()
                except OSError:
                    return
                conn.settimeout(10)
                try:
                    with server_context.wrap_socket(conn, server_side=True) as tls:
                        tls.sendall(b"ok")
                except (ssl.SSLError, OSError):
                    pass  # the client refused us: that is what some cases expect

        server = threading.Thread(target=serve, args=(4,), daemon=True)
        server.start()

        def handshake(server_name: str, cafile: Path | None) -> bytes:
            context = ssl.create_default_context(cafile=str(cafile) if cafile else None)
            with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
                with context.wrap_socket(raw, server_hostname=server_name) as tls:
                    return tls.recv(2)

        assert handshake("registry.test", ca.cert_path) == b"ok"
        assert handshake("127.0.0.1", ca.cert_path) == b"ok"
        with pytest.raises(ssl.SSLCertVerificationError, match="mismatch|match"):
            handshake("other.test", ca.cert_path)
        other_ca = ensure_ca(tmp_path / "elsewhere")
        with pytest.raises(ssl.SSLCertVerificationError):
            handshake("registry.test", other_ca.cert_path)
        server.join(timeout=10)


def test_certificate_covers_spots_changed_names_other_cas_and_near_expiry(tmp_path):
    ca = ensure_ca(tmp_path)
    cert_pem, _ = issue(ca, ["registry"], ["10.0.0.1"], days=90)
    assert certificate_covers(cert_pem, ["registry"], ["10.0.0.1"], ca)
    assert not certificate_covers(cert_pem, ["registry"], ["10.0.0.2"], ca)
    assert not certificate_covers(cert_pem, ["registry", "x"], ["10.0.0.1"], ca)
    assert not certificate_covers(cert_pem, ["registry"], ["10.0.0.1"], ca, min_days_left=100)
    assert not certificate_covers(cert_pem, ["registry"], ["10.0.0.1"],
                                  ensure_ca(tmp_path / "other"))
    assert not certificate_covers("not a certificate", ["registry"], ["10.0.0.1"], ca)


def test_a_lost_ca_key_is_an_error_not_a_silent_new_ca(tmp_path):
    ca = ensure_ca(tmp_path)
    ca.key_path.unlink()
    with pytest.raises(StateError, match="key .* is gone") as info:
        ensure_ca(tmp_path)
    assert str(ca_directory(tmp_path)) in info.value.hint
    assert ca.cert_path.read_text() == ca.cert_pem  # left as it was


def test_a_key_without_certificate_is_an_interrupted_creation_and_is_redone(tmp_path):
    ca = ensure_ca(tmp_path)
    ca.cert_path.unlink()
    again = ensure_ca(tmp_path)
    assert again.cert_pem != ca.cert_pem
    load_ca(tmp_path)  # the new pair belongs together


def test_mismatched_or_missing_files_are_state_errors(tmp_path):
    ensure_ca(tmp_path / "a")
    ensure_ca(tmp_path / "b")
    (tmp_path / "a" / "ca" / "ca.key").write_bytes((tmp_path / "b" / "ca" / "ca.key").read_bytes())
    with pytest.raises(StateError, match="do not belong together"):
        load_ca(tmp_path / "a")
    with pytest.raises(StateError, match="no CA yet"):
        load_ca(tmp_path / "none")
    (tmp_path / "b" / "ca" / "ca.crt").write_text("garbage")
    with pytest.raises(StateError, match="cannot read the CA"):
        load_ca(tmp_path / "b")


def test_issue_refuses_nameless_certificates_and_bad_input(tmp_path):
    ca = ensure_ca(tmp_path)
    with pytest.raises(ValueError, match="at least one"):
        issue(ca, [], [])
    with pytest.raises(ValueError):
        issue(ca, [], ["not-an-ip"])
    with pytest.raises(ValueError, match="positive"):
        issue(ca, ["x"], days=0)
