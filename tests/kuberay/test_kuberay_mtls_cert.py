"""The init container's script (mnemos/kuberay/_ray_tls_cert.py), run as the pods run it (`python -c`):
against a throwaway CA it writes a key and a certificate that chain to the CA and carry the pod's IP;
Ray's own gRPC helpers then accept them for mutual TLS, and refuse a peer of another CA."""

from __future__ import annotations

import datetime
import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from .support import CHART, helm_template, one
from .test_kuberay_mtls import KEDA, SCRIPT, cluster_specs, env_of

POD_IP = "10.42.0.7"
# What KubeRay sets on the init containers of a RayService's head (its cluster is <RayService>-<suffix>).
KUBERAY_HEAD_ENV = {
    "RAY_IP": "mnemos-mnemos-x7k2p-head-svc",
    "FQ_RAY_IP": "mnemos-mnemos-x7k2p-head-svc.mnemos.svc.cluster.local",
}


def make_ca(
    folder: Path, *, cert_name: str = "tls.crt", key_name: str = "tls.key", ca: bool = True
) -> x509.Certificate:
    """A self-signed CA (EC, quick to make) written as a Secret's files into ``folder``."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "throwaway ca")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    folder.mkdir(parents=True, exist_ok=True)
    (folder / cert_name).write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (folder / key_name).write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert


def run_script(role: str, ca_dir: Path, out_dir: Path, *, script: str | None = None, **env: str) -> Any:
    out_dir.mkdir(parents=True, exist_ok=True)
    full = {
        "PATH": os.environ.get("PATH", ""),
        "MNEMOS_RAY_CA_DIR": str(ca_dir),
        "MNEMOS_RAY_TLS_DIR": str(out_dir),
        "POD_IP": POD_IP,
        "POD_NAMESPACE": "mnemos",
        **env,
    }
    return subprocess.run(
        [sys.executable, "-c", script or SCRIPT.read_text(), role], env=full, capture_output=True, text=True, timeout=60
    )


def written(out_dir: Path) -> tuple[x509.Certificate, list[x509.Certificate], x509.Certificate]:
    """(the pod's certificate, the chain in tls.crt, the root in ca.crt); tls.key matches the certificate."""
    chain = x509.load_pem_x509_certificates((out_dir / "tls.crt").read_bytes())
    key = serialization.load_pem_private_key((out_dir / "tls.key").read_bytes(), password=None)
    spki = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    assert key.public_key().public_bytes(*spki) == chain[0].public_key().public_bytes(*spki)
    assert stat.S_IMODE((out_dir / "tls.key").stat().st_mode) == 0o600
    return chain[0], chain, x509.load_pem_x509_certificate((out_dir / "ca.crt").read_bytes())


def sans(cert: x509.Certificate) -> tuple[set[str], set[str]]:
    ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return set(ext.get_values_for_type(x509.DNSName)), {str(ip) for ip in ext.get_values_for_type(x509.IPAddress)}


def assert_signed_for_mtls(cert: x509.Certificate, ca: x509.Certificate) -> None:
    cert.verify_directly_issued_by(ca)
    now = datetime.datetime.now(datetime.timezone.utc)
    assert cert.not_valid_before_utc <= now < cert.not_valid_after_utc <= ca.not_valid_after_utc
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    usages = set(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)
    assert usages == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}  # each process serves and dials


def documented_ca_command() -> str:
    """The openssl command values.yaml gives for making the CA (its line continuation joined)."""
    text = (CHART / "values.yaml").read_text()
    match = re.search(r"#\s+(openssl req .*?)\\\n\s*#\s+(.*?)\n", text)
    assert match, "values.yaml no longer documents how to make the CA with openssl"
    return f"{match.group(1)} {match.group(2)}"


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is not installed")
def test_the_documented_ca_signs_a_head_certificate_for_its_ip_and_services(tmp_path: Path) -> None:
    """values.yaml's openssl command, the Secret `kubectl create secret tls` makes of it, the head's run."""
    command = documented_ca_command().replace("rsa:4096", "rsa:2048")  # the same CA, made faster
    subprocess.run(command, shell=True, cwd=tmp_path, check=True, capture_output=True, timeout=120)
    secret = tmp_path / "secret"  # kubectl create secret tls … --cert=ca.crt --key=ca.key: keys tls.crt, tls.key
    secret.mkdir()
    shutil.copy(tmp_path / "ca.crt", secret / "tls.crt")
    shutil.copy(tmp_path / "ca.key", secret / "tls.key")
    proc = run_script(
        "head", secret, tmp_path / "out", MNEMOS_RAY_TLS_SERVICES="mnemos-mnemos-head-svc", **KUBERAY_HEAD_ENV
    )
    assert proc.returncode == 0, proc.stderr
    cert, chain, root = written(tmp_path / "out")
    ca = x509.load_pem_x509_certificate((tmp_path / "ca.crt").read_bytes())
    assert root == ca and chain == [cert]
    assert_signed_for_mtls(cert, ca)
    dns, ips = sans(cert)
    assert ips == {"127.0.0.1", POD_IP}
    assert {"localhost", KUBERAY_HEAD_ENV["FQ_RAY_IP"], KUBERAY_HEAD_ENV["RAY_IP"]} <= dns
    assert {"mnemos-mnemos-head-svc", "mnemos-mnemos-head-svc.mnemos.svc.cluster.local"} <= dns
    verify = subprocess.run(
        ["openssl", "verify", "-CAfile", str(tmp_path / "out" / "ca.crt"), str(tmp_path / "out" / "tls.crt")],
        capture_output=True,
        text=True,
    )
    assert verify.returncode == 0 and ": OK" in verify.stdout, verify.stdout + verify.stderr


def test_a_worker_certificate_names_only_its_pod(tmp_path: Path) -> None:
    """KubeRay sets FQ_RAY_IP on a worker's init containers too; only a head may answer for the head's name."""
    ca = make_ca(tmp_path / "ca")
    proc = run_script("worker", tmp_path / "ca", tmp_path / "out", **KUBERAY_HEAD_ENV)
    assert proc.returncode == 0, proc.stderr
    cert, _, root = written(tmp_path / "out")
    assert root == ca
    assert_signed_for_mtls(cert, ca)
    assert sans(cert) == ({"localhost"}, {"127.0.0.1", POD_IP})


def test_a_ca_in_kuberays_layout_works_too(tmp_path: Path) -> None:
    """KubeRay's TLS guide keeps the CA as ca.crt + ca.key."""
    ca = make_ca(tmp_path / "ca", cert_name="ca.crt", key_name="ca.key")
    assert run_script("worker", tmp_path / "ca", tmp_path / "out").returncode == 0
    cert, _, root = written(tmp_path / "out")
    assert root == ca
    assert_signed_for_mtls(cert, ca)


def test_an_intermediate_ca_is_sent_in_the_chain(tmp_path: Path) -> None:
    """cert-manager's Secret of a CA issued by another: tls.crt the intermediate, ca.crt the root to trust."""
    root = make_ca(tmp_path / "root")
    root_key = serialization.load_pem_private_key((tmp_path / "root" / "tls.key").read_bytes(), password=None)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    now = datetime.datetime.now(datetime.timezone.utc)
    middle = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "intermediate")]))
        .issuer_name(root.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=10))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(root_key, hashes.SHA256())  # type: ignore[arg-type]
    )
    secret = tmp_path / "secret"
    secret.mkdir()
    (secret / "tls.crt").write_bytes(middle.public_bytes(serialization.Encoding.PEM))
    (secret / "tls.key").write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    (secret / "ca.crt").write_bytes(root.public_bytes(serialization.Encoding.PEM))
    assert run_script("worker", secret, tmp_path / "out").returncode == 0
    cert, chain, trusted = written(tmp_path / "out")
    assert trusted == root and chain == [cert, middle]
    cert.verify_directly_issued_by(middle)
    assert cert.not_valid_after_utc <= middle.not_valid_after_utc  # never outlives its issuer


def _unrelated_key(folder: Path) -> None:
    (folder / "tls.key").write_bytes(
        ec.generate_private_key(ec.SECP256R1()).private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )


@pytest.mark.parametrize(
    ("case", "says"),
    [
        ("no-ca", "no CA in"),
        ("not-a-ca", "the CA certificate lacks basicConstraints CA:TRUE"),
        ("wrong-key", "the CA's key does not belong to its certificate"),
        ("no-pod-ip", "POD_IP not set"),
        ("bad-role", "usage: python -c <script> head|worker"),
    ],
)
def test_a_bad_setup_fails_the_pod_with_a_message(tmp_path: Path, case: str, says: str) -> None:
    ca_dir = tmp_path / "ca"
    ca_dir.mkdir()
    if case != "no-ca":
        make_ca(ca_dir, ca=case != "not-a-ca")
    if case == "wrong-key":
        _unrelated_key(ca_dir)
    env = {"POD_IP": ""} if case == "no-pod-ip" else {}
    proc = run_script("leader" if case == "bad-role" else "head", ca_dir, tmp_path / "out", **env)
    assert proc.returncode == 1 and f"ray-tls: {says}" in proc.stderr, proc.stderr
    assert not (tmp_path / "out" / "tls.key").exists()


def test_the_script_bounds_its_own_run_time(tmp_path: Path) -> None:
    """A `cryptography` that never finishes importing stands for anything that hangs: the pod must fail, not wait."""
    fake = tmp_path / "site" / "cryptography"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("import time\ntime.sleep(600)\n")
    make_ca(tmp_path / "ca")
    proc = run_script(
        "worker", tmp_path / "ca", tmp_path / "out", PYTHONPATH=str(tmp_path / "site"), MNEMOS_RAY_TLS_TIMEOUT_S="1"
    )
    assert proc.returncode == 1 and "ray-tls: gave up after 1 s" in proc.stderr, proc.stderr


def test_the_head_certificate_answers_for_the_address_keda_workers_dial(tmp_path: Path) -> None:
    """The chart's own init container (command, args, env) on the RayService head: its certificate names
    the Service KEDA's worker Deployments join (<RayService>-head-svc) and the one KubeRay's workers dial."""
    objects = helm_template(sets=KEDA)
    head = cluster_specs(one(objects, "RayService"))["headGroupSpec"]["template"]["spec"]
    init = head["initContainers"][0]  # then relay.highThroughput's haproxy
    dirs = ("MNEMOS_RAY_CA_DIR", "MNEMOS_RAY_TLS_DIR")  # the pod's mounts: run_script points them at tmp_path
    env = {k: v for k, v in env_of(init).items() if isinstance(v, str) and k not in dirs}
    make_ca(tmp_path / "ca")
    proc = run_script(
        init["args"][0], tmp_path / "ca", tmp_path / "out", script=init["command"][2], **env, **KUBERAY_HEAD_ENV
    )
    assert proc.returncode == 0, proc.stderr
    dns, _ = sans(written(tmp_path / "out")[0])
    for deployment in [o for o in objects if o["kind"] == "Deployment"]:
        args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
        (address,) = [a.removeprefix("--address=") for a in args if a.startswith("--address=")]
        assert address.rsplit(":", 1)[0] in dns, (address, dns)
    assert KUBERAY_HEAD_ENV["FQ_RAY_IP"] in dns  # KubeRay's wait-gcs-ready and workers dial this one


@pytest.fixture
def pods(tmp_path: Path) -> dict[str, Path]:
    """TLS folders of a head on 127.0.0.2 (its pod IP), a worker, and a stranger of another CA."""
    make_ca(tmp_path / "ca")
    make_ca(tmp_path / "other-ca")
    out = {}
    for name, role, ca, ip in [
        ("head", "head", "ca", "127.0.0.2"),
        ("worker", "worker", "ca", "127.0.0.3"),
        ("stranger", "worker", "other-ca", "127.0.0.4"),
    ]:
        proc = run_script(
            role, tmp_path / ca, tmp_path / name, POD_IP=ip, MNEMOS_RAY_TLS_SERVICES="mnemos-mnemos-head-svc"
        )
        assert proc.returncode == 0, proc.stderr
        out[name] = tmp_path / name
    return out


def test_rays_grpc_accepts_the_pods_certificates_and_refuses_others(
    pods: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ray's own helpers read RAY_USE_TLS and RAY_TLS_* as every Ray process does: a server that demands
    client certificates, a channel that checks the server's name (here its pod IP, not 127.0.0.1)."""
    from concurrent import futures

    import grpc
    from ray._common.tls_utils import add_port_to_grpc_server
    from ray._private.grpc_utils import init_grpc_channel

    def as_pod(folder: Path) -> None:
        for var, name in (
            ("RAY_TLS_SERVER_CERT", "tls.crt"),
            ("RAY_TLS_SERVER_KEY", "tls.key"),
            ("RAY_TLS_CA_CERT", "ca.crt"),
        ):
            monkeypatch.setenv(var, str(folder / name))
        monkeypatch.setenv("RAY_USE_TLS", "1")

    as_pod(pods["head"])
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    echo = grpc.unary_unary_rpc_method_handler(lambda request, context: request)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("mnemos.Echo", {"Echo": echo}),))
    port = add_port_to_grpc_server(server, "127.0.0.2:0")
    if not port:
        pytest.skip("cannot listen on 127.0.0.2 here")
    server.start()
    try:

        def call(folder: Path, name: str | None = None) -> bytes:
            as_pod(folder)
            options = [("grpc.ssl_target_name_override", name)] if name else None
            channel = init_grpc_channel(f"127.0.0.2:{port}", options=options)
            try:
                return channel.unary_unary("/mnemos.Echo/Echo")(b"ping", timeout=10)
            finally:
                channel.close()

        assert call(pods["worker"]) == b"ping"  # by the head's pod IP
        assert call(pods["worker"], "mnemos-mnemos-head-svc") == b"ping"  # by its Service
        with pytest.raises(grpc.RpcError):
            call(pods["worker"], "some-other-svc")  # a name the head's certificate does not carry
        with pytest.raises(grpc.RpcError):
            call(pods["stranger"])  # a client of another CA: mutual TLS refuses it
    finally:
        server.stop(None)
