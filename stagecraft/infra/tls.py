"""A certificate authority per environment, and the certificates it issues.

Hosts that no public CA can reach get the environment's own CA instead: made
once with the ``cryptography`` package, kept in ``.stagecraft/<env>/ca/``
(``ca.crt``, and ``ca.key`` readable by the owner only), and reused by every later
call. Hosts trust it the way they would trust a public CA (the bootstrap role puts
it in Docker's ``certs.d`` and the system trust store), so the registry and
Traefik's ``local`` TLS mode serve certificates that verify for real.

Keys are ECDSA P-256: small, fast to make, and accepted by Go (Docker, the
registry, Traefik), OpenSSL and curl.
"""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from stagecraft.errors import StateError
from stagecraft.fsutil import exclusive_lock, write_atomic
from stagecraft.render.state import TlsSettings

if TYPE_CHECKING:
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import ec

    from stagecraft.hosts.fleet import Fleet

# cryptography is imported where it is used: a deploy whose edge certificate is
# already issued never loads it.

#: Where the CA lives inside an environment's state directory.
CA_DIR = "ca"
CA_CERT_FILE = "ca.crt"
CA_KEY_FILE = "ca.key"

#: A CA outlives any certificate it issues; hosts keep trusting it across rebuilds.
CA_DAYS = 3650
#: Leaf certificates: the limit browsers accept for publicly trusted ones.
DEFAULT_LEAF_DAYS = 397
#: Certificates start a little in the past, so a host whose clock lags accepts them.
_BACKDATE = datetime.timedelta(minutes=5)


@dataclass(frozen=True)
class CertificateAuthority:
    """An environment's CA: its certificate and key, loaded from ``directory``."""

    directory: Path
    certificate: x509.Certificate = field(repr=False)
    private_key: ec.EllipticCurvePrivateKey = field(repr=False)

    @property
    def cert_path(self) -> Path:
        return self.directory / CA_CERT_FILE

    @property
    def key_path(self) -> Path:
        return self.directory / CA_KEY_FILE

    @property
    def cert_pem(self) -> str:
        """The CA certificate in PEM: what hosts and clients are given to trust."""
        from cryptography.hazmat.primitives import serialization

        return self.certificate.public_bytes(serialization.Encoding.PEM).decode()


def ca_directory(state_dir: Path) -> Path:
    """``<state_dir>/ca``: where the environment's CA is kept."""
    return Path(state_dir) / CA_DIR


def ensure_ca(state_dir: Path, common_name: str = "stagecraft local CA") -> CertificateAuthority:
    """The environment's CA: loaded from ``<state_dir>/ca/`` or, the first time, made there.

    Made under a file lock, so two processes never make two CAs; the key is written
    (0600) before the certificate, each atomically, so a crash leaves either nothing
    usable (made anew next time) or a complete pair. Raises StateError when the
    files are unreadable, do not belong together, or the key is gone while the
    certificate is still there (hosts may trust that certificate: it is not
    replaced silently).
    """
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    directory = ca_directory(state_dir)
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    with exclusive_lock(directory / ".lock", f"waiting for another process making the CA in "
                        f"{directory}", lambda _line: None):
        cert_path, key_path = directory / CA_CERT_FILE, directory / CA_KEY_FILE
        if cert_path.exists():
            if not key_path.exists():
                raise StateError(
                    f"the CA certificate {cert_path} exists but its key {key_path} is gone",
                    hint=f"restore {key_path}, or delete {directory} to make a new CA "
                    "(then run `stagecraft infra up` and `stagecraft bootstrap` so hosts "
                    "trust the new one)",
                )
            return load_ca(state_dir)
        key = ec.generate_private_key(ec.SECP256R1())
        certificate = _ca_certificate(key, common_name)
        write_atomic(key_path, _key_pem(key), mode=0o600)
        write_atomic(cert_path, certificate.public_bytes(serialization.Encoding.PEM).decode(),
                     mode=0o644)
        return CertificateAuthority(directory, certificate, key)


def load_ca(state_dir: Path) -> CertificateAuthority:
    """The CA kept in ``<state_dir>/ca/``; StateError when it is missing or broken."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    directory = ca_directory(state_dir)
    cert_path, key_path = directory / CA_CERT_FILE, directory / CA_KEY_FILE
    hint = (f"delete {directory} and run `stagecraft infra up` to make a new CA, then "
            "`stagecraft bootstrap` so hosts trust it")
    try:
        certificate = x509.load_pem_x509_certificate(cert_path.read_bytes())
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    except FileNotFoundError as exc:
        raise StateError(f"the environment has no CA yet ({exc.filename} is missing)",
                         hint="run `stagecraft infra up` to make it") from exc
    except (OSError, ValueError) as exc:
        raise StateError(f"cannot read the CA in {directory}: {exc}", hint=hint) from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise StateError(f"{key_path} is not an EC private key", hint=hint)
    if certificate.public_key().public_numbers() != key.public_key().public_numbers():
        raise StateError(f"{cert_path} and {key_path} do not belong together", hint=hint)
    return CertificateAuthority(directory, certificate, key)


def issue(
    ca: CertificateAuthority,
    dns_names: Iterable[str] = (),
    ip_addresses: Iterable[str] = (),
    days: int = DEFAULT_LEAF_DAYS,
) -> tuple[str, str]:
    """A server certificate signed by ``ca`` for these names and addresses.

    Returns ``(cert_pem, key_pem)``: the certificate followed by nothing else (the
    CA is distributed separately), and a fresh unencrypted P-256 key (PKCS#8).
    The first DNS name (else the first address) is the subject's common name. The
    certificate never outlives the CA. Raises ValueError when no name is given,
    an address does not parse, or ``days`` is not positive.
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    names = [n.strip() for n in dns_names if n.strip()]
    addresses = [ipaddress.ip_address(a) for a in ip_addresses]
    if not names and not addresses:
        raise ValueError("a certificate needs at least one DNS name or IP address")
    if days <= 0:
        raise ValueError(f"days must be positive, not {days}")
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    not_after = min(now + datetime.timedelta(days=days), ca.certificate.not_valid_after_utc)
    subject_name = names[0] if names else str(addresses[0])
    alternatives: list[x509.GeneralName] = [x509.DNSName(n) for n in names]
    alternatives += [x509.IPAddress(a) for a in addresses]
    certificate = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject_name[:64])]))
        .issuer_name(ca.certificate.subject)
        .public_key(key.public_key())
        .serial_number(_serial())
        .not_valid_before(now - _BACKDATE)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(certificate_signing=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(alternatives), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                       critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.private_key.public_key()),
            critical=False)
        .sign(ca.private_key, hashes.SHA256())
    )
    return certificate.public_bytes(serialization.Encoding.PEM).decode(), _key_pem(key)


def certificate_covers(cert_pem: str, dns_names: Iterable[str], ip_addresses: Iterable[str],
                       ca: CertificateAuthority, *, min_days_left: int = 30) -> bool:
    """Whether ``cert_pem`` was issued by ``ca``, names exactly these names and addresses,
    and stays valid for ``min_days_left`` more days: if not, issue a new one."""
    from cryptography import x509
    from cryptography.exceptions import InvalidSignature

    try:
        certificate = x509.load_pem_x509_certificate(cert_pem.encode())
        certificate.verify_directly_issued_by(ca.certificate)
        san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (ValueError, TypeError, x509.ExtensionNotFound, InvalidSignature):
        return False
    wanted_names = {n.strip() for n in dns_names if n.strip()}
    wanted_addresses = {ipaddress.ip_address(a) for a in ip_addresses}
    left = certificate.not_valid_after_utc - datetime.datetime.now(datetime.timezone.utc)
    return (set(san.get_values_for_type(x509.DNSName)) == wanted_names
            and set(san.get_values_for_type(x509.IPAddress)) == wanted_addresses
            and left > datetime.timedelta(days=min_days_left))


def _ca_certificate(key: ec.EllipticCurvePrivateKey, common_name: str) -> x509.Certificate:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    name = x509.Name([
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "stagecraft"),
        x509.NameAttribute(NameOID.COMMON_NAME, common_name[:64]),
    ])
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(_serial())
        .not_valid_before(now - _BACKDATE)
        .not_valid_after(now + datetime.timedelta(days=CA_DAYS))
        # path_length=0: this CA signs server certificates, never another CA.
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(certificate_signing=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                       critical=False)
        .sign(key, hashes.SHA256())
    )


def _key_usage(*, certificate_signing: bool) -> x509.KeyUsage:
    from cryptography import x509

    return x509.KeyUsage(
        digital_signature=not certificate_signing, content_commitment=False,
        key_encipherment=False, data_encipherment=False, key_agreement=False,
        key_cert_sign=certificate_signing, crl_sign=certificate_signing,
        encipher_only=False, decipher_only=False,
    )


def _serial() -> int:
    # Positive and at most 20 octets (RFC 5280), with 159 random bits.
    return secrets.randbits(159) | 1


def _key_pem(key: ec.EllipticCurvePrivateKey) -> str:
    from cryptography.hazmat.primitives import serialization

    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


# ------------------------------------------------------------------ the edge


def edge_tls(fleet: Fleet) -> TlsSettings:
    """The edge's TLS: ACME, off, or a certificate from the environment's local CA
    (kept in the state dir). Without ``tls.mode`` in stagecraft.yml, the cloud's
    default (:attr:`CloudCapabilities.default_tls`)."""
    env, state_dir = fleet.env, fleet.state_dir
    mode = env.tls.mode or fleet.cloud.capabilities.default_tls
    if mode == "acme" or mode == "off":
        return TlsSettings(mode=mode, email=env.tls.email)
    names = sorted({env.route_host(route) for s in env.services.values() for route in s.routes})
    if not names:  # an edge without routes still serves TLS: a name of its own
        names = [env.domain or f"{env.project.name}-{env.name}.localhost"]
    certificate, key = _edge_certificate(state_dir, names)
    return TlsSettings(mode="local", email=env.tls.email, certificate=certificate, key=key)


def _edge_certificate(state_dir: Path, names: list[str]) -> tuple[str, str]:
    """The edge's certificate for ``names`` from the environment's CA, issued once and
    kept (a new key every deploy would change the Traefik files every deploy)."""
    digest = hashlib.sha256("\n".join(names).encode()).hexdigest()[:12]
    cert_path = ca_directory(state_dir) / f"edge-{digest}.crt"
    key_path = cert_path.with_suffix(".key")
    if cert_path.is_file() and key_path.is_file():
        return cert_path.read_text(), key_path.read_text()
    certificate, key = issue(ensure_ca(state_dir), names, [])
    write_atomic(key_path, key, mode=0o600)
    write_atomic(cert_path, certificate, mode=0o644)
    return certificate, key
