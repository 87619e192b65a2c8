"""Write this pod's key and certificate for Ray's mutual TLS, signed by the cluster's CA.

The init container ``ray-tls`` of every Ray pod runs it (``soul.policies.mTLS: enabled`` in the Helm
chart, ``tls.enabled`` in ``mnemos.kuberay``) as ``python -c <this file> head|worker``, before Ray
starts: Ray reads RAY_TLS_SERVER_CERT, RAY_TLS_SERVER_KEY and RAY_TLS_CA_CERT once, at start. It
needs only the standard library and ``cryptography`` (a dependency of mnemos, so in the image).
The chart ships a copy, deployments/helm/mnemos/files/ray-tls-cert.py; a test keeps the two equal.

Environment:
    MNEMOS_RAY_CA_DIR: the CA Secret's mount: tls.crt + tls.key (``kubectl create secret tls``,
        cert-manager, which also writes ca.crt), else ca.crt + ca.key (KubeRay's TLS guide).
    MNEMOS_RAY_TLS_DIR: where tls.key, tls.crt (this pod's chain) and ca.crt (the root) go. The
        Ray containers mount only this folder, never the CA's key.
    POD_IP: this pod's IP; peers dial Ray processes by it.
    POD_NAMESPACE, MNEMOS_RAY_TLS_SERVICES (comma-separated), and RAY_IP / FQ_RAY_IP (KubeRay sets
        them on init containers): a head's Services, which workers and clients dial by name.
    MNEMOS_RAY_TLS_TIMEOUT_S: the most seconds this may take (default 60).
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import signal
import socket
import sys
from pathlib import Path
from typing import Any, NoReturn

TIMEOUT_S = 60  # key generation takes well under a second: a hung init container must fail, not wait
VALID_DAYS = 365  # the pod's lifetime at most in practice: a new pod gets a new certificate


def _fail(message: str) -> NoReturn:
    sys.exit(f"ray-tls: {message}")


def _read_ca(ca_dir: Path) -> tuple[bytes, bytes, bytes | None]:
    """(signing certificate bundle, its key, the root to trust if the Secret names one)."""
    for cert_name, key_name in (("tls.crt", "tls.key"), ("ca.crt", "ca.key")):
        if (ca_dir / cert_name).is_file() and (ca_dir / key_name).is_file():
            root = ca_dir / "ca.crt"
            trust = root.read_bytes() if cert_name == "tls.crt" and root.is_file() else None
            return (ca_dir / cert_name).read_bytes(), (ca_dir / key_name).read_bytes(), trust
    _fail(f"no CA in {ca_dir}: expected tls.crt and tls.key (kubernetes.io/tls, cert-manager) or ca.crt and ca.key")


def _head_names() -> list[str]:
    """DNS names of a head: each Service, short and qualified, as KubeRay's FQ_RAY_IP spells it."""
    fqdn = os.environ.get("FQ_RAY_IP", "")
    domain = fqdn.split(".svc.", 1)[1] if ".svc." in fqdn else "cluster.local"
    namespace = os.environ.get("POD_NAMESPACE", "")
    services = [os.environ.get("RAY_IP", ""), *os.environ.get("MNEMOS_RAY_TLS_SERVICES", "").split(",")]
    names = [fqdn] if fqdn else []
    for service in filter(None, (s.strip() for s in services)):
        names.append(service)
        if namespace:
            names += [f"{service}.{namespace}", f"{service}.{namespace}.svc", f"{service}.{namespace}.svc.{domain}"]
    return names


def _write(path: Path, data: bytes, mode: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as out:
        out.write(data)


def main(argv: list[str]) -> None:
    timeout = int(os.environ.get("MNEMOS_RAY_TLS_TIMEOUT_S") or TIMEOUT_S)
    signal.signal(signal.SIGALRM, lambda *_: _fail(f"gave up after {timeout} s"))
    signal.alarm(timeout)
    if len(argv) != 1 or argv[0] not in ("head", "worker"):
        _fail(f"usage: python -c <script> head|worker (got {argv})")
    missing = [v for v in ("MNEMOS_RAY_CA_DIR", "MNEMOS_RAY_TLS_DIR", "POD_IP") if not os.environ.get(v)]
    if missing:
        _fail(f"{', '.join(missing)} not set")

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ed448, ed25519, rsa
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    bundle, ca_key_pem, trust = _read_ca(Path(os.environ["MNEMOS_RAY_CA_DIR"]))
    ca_cert = x509.load_pem_x509_certificates(bundle)[0]
    ca_key: Any = serialization.load_pem_private_key(ca_key_pem, password=None)
    try:
        is_ca = ca_cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        is_ca = False
    if not is_ca:
        _fail("the CA certificate lacks basicConstraints CA:TRUE: give the Secret a CA, not a server certificate")
    spki = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    if ca_key.public_key().public_bytes(*spki) != ca_cert.public_key().public_bytes(*spki):
        _fail("the CA's key does not belong to its certificate")

    role, pod_ip = argv[0], ipaddress.ip_address(os.environ["POD_IP"])
    names = ["localhost", *(_head_names() if role == "head" else [])]
    sans: list[x509.GeneralName] = [x509.DNSName(n) for n in dict.fromkeys(names)]
    sans += [x509.IPAddress(ip) for ip in dict.fromkeys([ipaddress.ip_address("127.0.0.1"), pod_ip])]
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    now = datetime.datetime.now(datetime.timezone.utc)
    usage = x509.KeyUsage(
        digital_signature=True,
        key_encipherment=True,
        content_commitment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=False,
        crl_sign=False,
        encipher_only=False,
        decipher_only=False,
    )
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"ray-{role} {socket.gethostname()}"[:64])])
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))  # nodes' clocks differ a little
        .not_valid_after(min(now + datetime.timedelta(days=VALID_DAYS), ca_cert.not_valid_after_utc))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(usage, critical=True)
        # Every Ray process both serves and dials: the same certificate is server and client.
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]), False)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
    )
    ed = isinstance(ca_key, (ed25519.Ed25519PrivateKey, ed448.Ed448PrivateKey))
    signed = cert.sign(ca_key, None if ed else hashes.SHA256())

    out = Path(os.environ["MNEMOS_RAY_TLS_DIR"])
    pem = serialization.Encoding.PEM
    key_pem = key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    _write(out / "tls.key", key_pem, 0o600)
    # The chain: this pod's certificate, then the signing CA when the root to trust is another one.
    chain = signed.public_bytes(pem) + (bundle if trust and trust.strip() != bundle.strip() else b"")
    _write(out / "tls.crt", chain, 0o644)
    _write(out / "ca.crt", trust or ca_cert.public_bytes(pem), 0o644)
    signal.alarm(0)
    print(f"ray-tls: {role} certificate for {', '.join(str(n.value) for n in sans)} in {out}")


if __name__ == "__main__":
    main(sys.argv[1:])
