"""TLS between hosts: which services speak it, and the certificates they present.

configc keeps a private CA under ``conf/tls/`` (``ca.key`` 0600, ``ca.crt``), created by
the first build that needs it, and issues each TLS service one server certificate whose
subject alternative names are the addresses and names of the service's hosts in the
topology. Issued certificates are kept beside the CA and reused while they still name the
same hosts and have more than ``RENEW_BEFORE`` left, so a rebuild writes the same bytes.
An operator may bring their own instead: ``tls.ca_cert`` and, per service, ``cert`` and
``key`` (files; paths relative to the conf directory), and configc then issues nothing.

In vault mode every private key configc writes under ``conf/tls/`` is ansible-vault
encrypted (a plaintext one found there is encrypted in place), and an encrypted key, its
own or an operator's, is decrypted when read; without the vault password it is an error.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from .schema import TLS_SERVICES as SERVICES
from .vault import Vault, is_encrypted, unseal

TLS_DIR = "tls"
"""configc's CA and issued certificates, under the conf directory (ignored by git)."""
LOOPBACK = ("127.", "::1", "localhost")
CA_DAYS = 3650
CERT_DAYS = 825
RENEW_BEFORE = datetime.timedelta(days=30)


class TlsError(Exception):
    """A certificate or key configc cannot use: its message says which file and why."""

    def __init__(self, message: str, *path: str) -> None:
        super().__init__(message)
        self.path = path  # the conf key that named the file, if the operator did


@dataclass(frozen=True)
class ServerTls:
    """What one service presents: its certificate and key (PEM)."""

    cert: bytes
    key: bytes


@dataclass(frozen=True)
class TlsMaterial:
    """The CA every client verifies against, and the certificate of each TLS service."""

    ca_cert: bytes
    servers: dict[str, ServerTls]


def tls_services(doc: dict[str, Any]) -> list[str]:
    """The services that speak TLS: ``tls.mode`` on, every service in the topology; auto,
    those with a host off loopback (a single host keeps plain loopback connections)."""
    mode = (doc.get("tls") or {}).get("mode", "auto")
    if mode == "off":
        return []
    out = []
    for service in SERVICES:
        hosts = service_hosts(doc, service)
        if hosts and (mode == "on" or any(not _loopback(h["address"]) for h in hosts)):
            out.append(service)
    return out


def service_hosts(doc: dict[str, Any], service: str) -> list[dict[str, Any]]:
    """The hosts that present *service*'s certificate: Redis's sentinels present Redis's."""
    roles = {service, "sentinel"} if service == "redis" else {service}
    return [h for h in doc["hosts"] if roles & set(h["roles"])]


def _loopback(address: str) -> bool:
    return address.startswith(LOOPBACK)


def subject_names(hosts: list[dict[str, Any]]) -> list[str]:
    """The SANs of a service's certificate: each host's address and name, in topology order."""
    names: list[str] = []
    for host in hosts:
        for name in (host["address"], host["name"]):
            if name not in names:
                names.append(name)
    return names


def prepare_tls(
    conf_dir: Path, doc: dict[str, Any], persist: bool = True, vault: Vault | None = None
) -> TlsMaterial | None:
    """The TLS material of *doc*'s services (keys in plaintext), or None when none speaks
    TLS. configc's own CA and certificates are created (or renewed) under *conf_dir*/tls as
    needed, keys encrypted with *vault* if given; with *persist* False (``check``,
    ``diff``), what is missing is made in memory only and nothing written."""
    services = tls_services(doc)
    if not services:
        return None
    section = doc.get("tls") or {}
    if section.get("ca_cert"):
        return _supplied(conf_dir, section, services, doc, vault)
    store = _Store(conf_dir / TLS_DIR, persist, vault)
    ca_key, ca_cert = _ensure_ca(store)
    servers = {
        service: _ensure_server(
            store, service, subject_names(service_hosts(doc, service)), ca_key, ca_cert
        )
        for service in services
    }
    return TlsMaterial(_pem(ca_cert), servers)


def _supplied(
    conf_dir: Path,
    section: dict[str, Any],
    services: list[str],
    doc: dict[str, Any],
    vault: Vault | None,
) -> TlsMaterial:
    """An operator's CA and certificates, each checked: a certificate must match its key and
    name every host of its service, or the executors would refuse it at run time."""
    ca = _read(conf_dir, section["ca_cert"], "tls", "ca_cert")
    _load_cert(ca, "tls", "ca_cert")
    servers = {}
    for service in services:
        given = section.get(service) or {}
        if not given.get("cert") or not given.get("key"):
            raise TlsError(
                f"tls.ca_cert is set, so {service} needs its own cert and key (configc "
                "cannot sign with a CA whose key it does not have)",
                "tls",
                service,
            )
        cert = _read(conf_dir, given["cert"], "tls", service, "cert")
        key_file = conf_dir / given["key"]
        key = _unseal(
            key_file, _read(conf_dir, given["key"], "tls", service, "key"), vault, service
        )
        certificate = _load_cert(cert, "tls", service, "cert")
        private = _load_key(key, "tls", service, "key")
        if certificate.public_key() != private.public_key():
            raise TlsError(f"is not the key of tls.{service}.cert", "tls", service, "key")
        named = set(_names_of(certificate))
        # The executors dial each host by its topology address: that is what must match.
        missing = [h["address"] for h in service_hosts(doc, service) if h["address"] not in named]
        if missing:
            raise TlsError(
                f"does not name {', '.join(missing)} (it names: {', '.join(sorted(named))}): "
                "the executors verify the address they connect to",
                "tls",
                service,
                "cert",
            )
        servers[service] = ServerTls(cert, key)
    return TlsMaterial(ca, servers)


def _read(conf_dir: Path, name: str, *path: str) -> bytes:
    try:
        return (conf_dir / name).read_bytes()
    except OSError as exc:
        raise TlsError(f"cannot read {conf_dir / name}: {exc.strerror}", *path) from None


def _unseal(file: Path, data: bytes, vault: Vault | None, service: str) -> bytes:
    """An operator's key file's PEM, decrypted if it is vault-encrypted (``ansible-vault``)."""
    try:
        return unseal(data, vault)
    except OSError as exc:
        raise TlsError(f"{file} {exc}", "tls", service, "key") from None


def _load_cert(pem: bytes, *path: str) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(pem)
    except ValueError:
        raise TlsError("not a PEM certificate", *path) from None


def _load_key(pem: bytes, *path: str) -> ec.EllipticCurvePrivateKey:
    try:
        return serialization.load_pem_private_key(pem, password=None)  # type: ignore[return-value]
    except (ValueError, TypeError):
        raise TlsError("not an unencrypted PEM private key", *path) from None


# -- configc's own CA --------------------------------------------------------------------------


@dataclass(frozen=True)
class _Store:
    """configc's CA directory; *persist* False: read, never written. With *vault*, its keys
    are ansible-vault files."""

    path: Path
    persist: bool
    vault: Vault | None = None

    def __truediv__(self, name: str) -> Path:
        return self.path / name

    def read_key(self, path: Path) -> bytes:
        """*path*'s key in plaintext; in vault mode a plaintext one is encrypted in place."""
        data = path.read_bytes()
        try:
            pem = unseal(data, self.vault)
        except OSError as exc:
            raise TlsError(f"{path} {exc}") from None
        _check_pem(path, pem)
        if self.vault and self.persist and not is_encrypted(data):
            self.write_key(path, pem)
        return pem

    def write_key(self, path: Path, pem: bytes) -> None:
        _write(path, self.vault.encrypt(pem.decode()) if self.vault else pem, 0o600)


def _ensure_ca(store: _Store) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key_path, cert_path = store / "ca.key", store / "ca.crt"
    if key_path.exists() and cert_path.exists():
        key = _load_key(store.read_key(key_path))
        cert = _load_cert(_read_stored(cert_path))
        if _fresh(cert):
            return key, cert
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ragfleet private CA")])
    cert = (
        _builder(name, name, key.public_key(), CA_DAYS)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_usage(cert_sign=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    if store.persist:
        store.write_key(key_path, _key_pem(key))
        _write(cert_path, _pem(cert), 0o644)
        for stale in store.path.glob("*.crt"):  # issued by the CA just replaced
            if stale.name != "ca.crt":
                stale.unlink()
    return key, cert


def _read_stored(path: Path) -> bytes:
    """A file of configc's own CA store; one that is not PEM is named, to be removed."""
    return _check_pem(path, path.read_bytes())


def _check_pem(path: Path, data: bytes) -> bytes:
    if b"-----BEGIN " not in data:
        raise TlsError(f"{path} is not PEM: remove it, and configc makes a new one")
    return data


def _ensure_server(
    store: _Store,
    service: str,
    names: list[str],
    ca_key: ec.EllipticCurvePrivateKey,
    ca_cert: x509.Certificate,
) -> ServerTls:
    key_path, cert_path = store / f"{service}.key", store / f"{service}.crt"
    if key_path.exists() and cert_path.exists():
        cert_pem = _read_stored(cert_path)
        cert = _load_cert(cert_pem)
        if _fresh(cert) and _names_of(cert) == names and _issued_by(cert, ca_cert):
            key_pem = store.read_key(key_path)
            if _load_key(key_pem).public_key() == cert.public_key():
                return ServerTls(cert_pem, key_pem)
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"ragfleet {service}")])
    cert = (
        _builder(subject, ca_cert.subject, key.public_key(), CERT_DAYS)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_usage(cert_sign=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(list(_general_names(names))), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    server = ServerTls(_pem(cert), _key_pem(key))
    if store.persist:
        store.write_key(key_path, server.key)
        _write(cert_path, server.cert, 0o644)
    return server


def _builder(
    subject: x509.Name, issuer: x509.Name, public_key: Any, days: int
) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))  # hosts' clocks differ a little
        .not_valid_after(now + datetime.timedelta(days=days))
    )


def _usage(cert_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=not cert_sign,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


def _general_names(names: list[str]) -> Iterator[x509.GeneralName]:
    for name in names:
        try:
            yield x509.IPAddress(ipaddress.ip_address(name))
        except ValueError:
            yield x509.DNSName(name)


def _names_of(cert: x509.Certificate) -> list[str]:
    """A certificate's SANs as text, in its order."""
    try:
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return [str(name.value) for name in sans]


def _issued_by(cert: x509.Certificate, ca_cert: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(ca_cert)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _fresh(cert: x509.Certificate) -> bool:
    now = datetime.datetime.now(datetime.UTC)
    return cert.not_valid_after_utc - now > RENEW_BEFORE


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _write(path: Path, data: bytes, mode: int) -> None:
    """Write *path* atomically with *mode* (a key is never readable by others, even briefly)."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, mode)
        os.write(fd, data)
    finally:
        os.close(fd)
    os.replace(temp, path)
