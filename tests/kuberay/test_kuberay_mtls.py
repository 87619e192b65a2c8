"""soul.policies.mTLS (the seed's "mTLS between services"): with it on, every Ray pod the chart or the
Python renderer makes (heads and workers of the RayCluster, RayService and RayJob, and KEDA's worker
Deployments) gets the init container that writes its certificate, Ray's TLS variables naming files
its mounts provide, and the CA's Secret, mounted into the init container only. Off, none of it.
The script itself is run in test_kuberay_mtls_cert.py."""

from __future__ import annotations

import copy
from functools import lru_cache
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from mnemos.errors import ValidationError
from mnemos.kuberay import load_values, render_all, strict_schema, validate_manifest

from .support import CHART, RAY_KINDS, REPO, by_kind, cluster_specs, crd_dir, helm_template, one, run_helm

ALL_KINDS = ("kuberay.rayCluster.enabled=true", "kuberay.rayJob.enabled=true")
KEDA = (*ALL_KINDS, "neuron.keda.enabled=true")
OFF = "soul.policies.mTLS=disabled"
CERT_MANAGER = "soul.policies.mTLSCA.certManager=true"
VALUE_FILES = [(), ("values-dev.yaml",)]
SCRIPT = REPO / "mnemos" / "kuberay" / "_ray_tls_cert.py"
CHART_SCRIPT = CHART / "files" / "ray-tls-cert.py"
TLS_ENV = {"RAY_USE_TLS", "RAY_TLS_SERVER_CERT", "RAY_TLS_SERVER_KEY", "RAY_TLS_CA_CERT"}
TLS_FILES = {"RAY_TLS_SERVER_CERT": "tls.crt", "RAY_TLS_SERVER_KEY": "tls.key", "RAY_TLS_CA_CERT": "ca.crt"}
CERTIFICATE_CRD = Path(__file__).parent / "crds" / "cert-manager.io_certificates.yaml"


def ray_pods(objects: list[dict[str, Any]]) -> list[tuple[str, str, dict[str, Any]]]:
    """(where, head|worker, pod spec) of every pod that runs Ray: not the RayJob's submitter."""
    out = []
    for obj in objects:
        where = f"{obj['kind']}/{obj['metadata']['name']}"
        if obj["kind"] in RAY_KINDS:
            cluster = cluster_specs(obj)
            out.append((where, "head", cluster["headGroupSpec"]["template"]["spec"]))
            for group in cluster.get("workerGroupSpecs") or []:
                out.append((f"{where}/{group['groupName']}", "worker", group["template"]["spec"]))
        elif obj["kind"] == "Deployment":
            out.append((where, "worker", obj["spec"]["template"]["spec"]))
    return out


def env_of(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env") or []}


def mount_of(container: dict[str, Any], path: str) -> dict[str, Any]:
    """The volume mount that provides the file ``path`` in ``container``."""
    found = [m for m in container.get("volumeMounts") or [] if path.startswith(m["mountPath"].rstrip("/") + "/")]
    assert len(found) == 1, f"{container['name']}: no mount provides {path}"
    return found[0]


def assert_tls_pod(where: str, role: str, spec: dict[str, Any], secret: str, service: str | None) -> None:
    """The init container writes what the Ray container's TLS variables name; the CA stays in the init container."""
    # KubeRay appends its wait-gcs-ready to workers, after this one (and relay.highThroughput's haproxy)
    init = spec["initContainers"][0]
    ray = spec["containers"][0]
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert init["name"] == "ray-tls", where
    assert init["command"] == ["python", "-c", SCRIPT.read_text()] and init["args"] == [role], where
    assert init["image"] == ray["image"] and init["securityContext"] == ray["securityContext"], where
    init_env = env_of(init)
    assert init_env["POD_IP"] == {"fieldRef": {"fieldPath": "status.podIP"}}, where
    assert init_env["POD_NAMESPACE"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}, where
    assert init_env.get("MNEMOS_RAY_TLS_SERVICES") == service, where
    ca_mount = mount_of(init, init_env["MNEMOS_RAY_CA_DIR"] + "/tls.crt")
    assert ca_mount["readOnly"] is True and volumes[ca_mount["name"]]["secret"]["secretName"] == secret, where
    out_dir = init_env["MNEMOS_RAY_TLS_DIR"]
    out_mount = mount_of(init, out_dir + "/tls.key")
    assert not out_mount.get("readOnly")
    assert volumes[out_mount["name"]]["emptyDir"]["medium"] == "Memory", where  # the key never on the node's disk

    env = env_of(ray)
    assert env["RAY_USE_TLS"] == "1", where
    for var, name in TLS_FILES.items():
        assert env[var] == f"{out_dir}/{name}", (where, var)
        mount = mount_of(ray, env[var])
        assert mount["name"] == out_mount["name"] and mount["readOnly"] is True, (where, var)
    assert ca_mount["name"] not in {m["name"] for m in ray["volumeMounts"]}, f"{where}: Ray must not see the CA's key"


def assert_autoscaler_speaks_tls(obj: dict[str, Any]) -> None:
    cluster = cluster_specs(obj)
    head = cluster["headGroupSpec"]["template"]["spec"]
    auto = cluster["autoscalerOptions"]
    ray_env = env_of(head["containers"][0])
    assert env_of(auto) == {name: ray_env[name] for name in TLS_ENV}
    for value in env_of(auto).values():
        if value.startswith("/"):
            assert mount_of(auto, value) == mount_of(head["containers"][0], value)  # the head pod's emptyDir


@pytest.mark.parametrize("files", VALUE_FILES, ids=["values", "values-dev"])
@pytest.mark.parametrize("sets", [ALL_KINDS, KEDA], ids=["kuberay", "keda"])
def test_every_ray_pod_gets_its_certificate_from_an_init_container(files: tuple[str, ...], sets: tuple) -> None:
    objects = helm_template(*files, sets=sets)
    pods = ray_pods(objects)
    heads = {where for where, role, _ in pods if role == "head"}
    assert heads == {"RayService/mnemos-mnemos", "RayCluster/mnemos-mnemos-cluster", "RayJob/mnemos-mnemos-job"}
    workers = [where for where, role, _ in pods if role == "worker"]
    assert any(w.startswith("RayCluster/") for w in workers) and any(w.startswith("RayJob/") for w in workers)
    if "neuron.keda.enabled=true" in sets:
        assert any(w.startswith("Deployment/") for w in workers)
    else:
        assert any(w.startswith("RayService/") for w in workers)
    for where, role, spec in pods:
        # A head's certificate names the Service its owner gets from KubeRay: <name>-head-svc.
        service = f"{where.split('/')[1]}-head-svc" if role == "head" else None
        assert_tls_pod(where, role, spec, "mnemos-mnemos-ray-ca", service)
    for obj in objects:
        if obj["kind"] in RAY_KINDS:
            assert_autoscaler_speaks_tls(obj)
            validate_manifest(obj, crd_dir())


def test_tls_adds_only_its_own_pieces_and_off_renders_none() -> None:
    """Off is what the chart rendered before mTLS existed: on, less the TLS pieces, is off."""
    on, off = helm_template(sets=KEDA), helm_template(sets=(*KEDA, OFF, CERT_MANAGER))
    assert not by_kind(off, "Certificate") and not by_kind(off, "Issuer")
    text = yaml.safe_dump(off)
    for word in ("ray-tls", "ray-ca", "RAY_USE_TLS", "RAY_TLS_"):  # initContainers: relay.highThroughput's
        assert word not in text, word
    kinds = RAY_KINDS | {"Deployment"}
    # (the settings differ, soul.policies.mTLS, and so does their digest in the pods' annotations)
    assert [without_tls(o) for o in on if o["kind"] in kinds] == [_no_digest(o) for o in off if o["kind"] in kinds]
    assert yaml.safe_load(one(off, "ConfigMap", "-settings")["data"]["mnemos.yaml"])["soul"]["policies"]["mTLS"] == (
        "disabled"
    )


def without_tls(obj: dict[str, Any]) -> dict[str, Any]:
    """``obj`` less the init container, Ray's TLS variables, the TLS mounts and volumes."""
    obj = copy.deepcopy(obj)
    for _, _, spec in ray_pods([obj]):
        spec["initContainers"] = [c for c in spec["initContainers"] if c["name"] != "ray-tls"]
        spec["volumes"] = [v for v in spec["volumes"] if v["name"] not in ("ray-tls", "ray-ca")]
        ray = spec["containers"][0]
        ray["env"] = [e for e in ray["env"] if e["name"] not in TLS_ENV]
        ray["volumeMounts"] = [m for m in ray["volumeMounts"] if m["name"] != "ray-tls"]
        for node, key in ((spec, "initContainers"), (spec, "volumes"), (ray, "volumeMounts")):
            if not node[key]:
                del node[key]  # the Python renderer leaves empty lists out
    if obj["kind"] in RAY_KINDS and "autoscalerOptions" in cluster_specs(obj):
        auto = cluster_specs(obj)["autoscalerOptions"]
        del auto["env"], auto["volumeMounts"]
    return _no_digest(obj)


def _no_digest(obj: Any) -> Any:
    """``obj`` less the settings' digest in its pod templates' annotations (``checksum/settings``)."""
    if isinstance(obj, dict):
        return {k: _no_digest(v) for k, v in obj.items() if k != "checksum/settings"}
    if isinstance(obj, list):
        return [_no_digest(v) for v in obj]
    return obj


def test_the_ca_secret_is_configurable() -> None:
    objects = helm_template(sets=(*ALL_KINDS, "soul.policies.mTLSCA.existingSecret=corp-ray-ca"))
    for where, role, spec in ray_pods(objects):
        service = f"{where.split('/')[1]}-head-svc" if role == "head" else None
        assert_tls_pod(where, role, spec, "corp-ray-ca", service)


@pytest.mark.parametrize("value", ["on", "Enabled", "true"])
def test_an_unknown_mode_is_refused_naming_it_and_the_valid_ones(value: str) -> None:
    sets = ["--set-string" if value == "true" else "--set", f"soul.policies.mTLS={value}"]
    proc = run_helm("template", "mnemos", str(CHART), *sets)
    assert proc.returncode != 0
    assert "'/soul/policies/mTLS': value must be one of 'enabled', 'disabled'" in proc.stderr, proc.stderr
    lint = run_helm("lint", str(CHART), *sets)  # lint ignores a template's `fail`, not the schema
    assert lint.returncode != 0 and "'/soul/policies/mTLS'" in lint.stdout + lint.stderr
    # Past the schema, the template's own check names the value, even with no Ray object to render.
    for extra in ((), ("--set", "kuberay.rayService.enabled=false")):
        proc = run_helm("template", "mnemos", str(CHART), "--skip-schema-validation", *sets, *extra)
        assert proc.returncode != 0
        assert f'soul.policies.mTLS="{value}": valid choices are enabled' in proc.stderr, proc.stderr
        assert "and disabled" in proc.stderr


def test_a_misspelt_ca_key_is_refused() -> None:
    proc = run_helm("template", "mnemos", str(CHART), "--set", "soul.policies.mTLSCA.certManger=true")
    assert proc.returncode != 0 and "additional properties 'certManger' not allowed" in proc.stderr, proc.stderr


@lru_cache(maxsize=1)
def certificate_schema() -> dict[str, Any]:
    crd = [d for d in yaml.safe_load_all(CERTIFICATE_CRD.read_text()) if d][0]
    (version,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1"]
    return strict_schema(version["schema"]["openAPIV3Schema"])


def validate_cert_manager(obj: dict[str, Any]) -> None:
    """A Certificate strictly against cert-manager's CRD; the Issuer is the one shape the chart renders."""
    assert obj["apiVersion"] == "cert-manager.io/v1"
    if obj["kind"] == "Certificate":
        jsonschema.Draft7Validator(certificate_schema()).validate(obj)
    else:
        assert obj["kind"] == "Issuer" and obj["spec"] == {"selfSigned": {}}


def test_cert_manager_objects_come_only_when_asked() -> None:
    assert not by_kind(helm_template(sets=ALL_KINDS), "Certificate")
    assert not by_kind(helm_template(sets=ALL_KINDS), "Issuer")
    for secret, named in (
        ("mnemos-mnemos-ray-ca", ()),
        ("corp-ray-ca", ("soul.policies.mTLSCA.existingSecret=corp-ray-ca",)),
    ):
        objects = helm_template(sets=(*ALL_KINDS, CERT_MANAGER, *named))
        certificate, issuer = one(objects, "Certificate"), one(objects, "Issuer")
        validate_cert_manager(certificate)
        validate_cert_manager(issuer)
        spec = certificate["spec"]
        assert spec["isCA"] is True and spec["secretName"] == secret
        assert spec["issuerRef"] == {"group": "cert-manager.io", "kind": "Issuer", "name": issuer["metadata"]["name"]}
        assert spec["privateKey"]["rotationPolicy"] == "Never"  # a renewed CA still verifies running pods
        for where, role, pod in ray_pods(objects):
            service = f"{where.split('/')[1]}-head-svc" if role == "head" else None
            assert_tls_pod(where, role, pod, secret, service)


def test_the_certificate_schema_is_strict() -> None:
    certificate = one(helm_template(sets=(CERT_MANAGER,)), "Certificate")
    certificate["spec"]["privateKey"]["rotationPolicy"] = "Sometimes"
    with pytest.raises(jsonschema.ValidationError):
        validate_cert_manager(certificate)
    certificate["spec"]["privateKey"]["rotationPolicy"] = "Never"
    certificate["spec"]["isCa"] = True
    with pytest.raises(jsonschema.ValidationError):
        validate_cert_manager(certificate)


@pytest.mark.parametrize(
    ("sets", "says"),
    [((), "kubectl -n mnemos create secret tls mnemos-mnemos-ray-ca --cert=ca.crt --key=ca.key"),
     ((CERT_MANAGER,), "cert-manager makes that CA (Certificate mnemos-mnemos-ray-ca)"),
     ((OFF,), "Ray's gRPC runs without TLS (soul.policies.mTLS=disabled)")],
    ids=["existing-secret", "cert-manager", "off"],
)  # fmt: skip
def test_notes_say_where_the_ca_comes_from(sets: tuple[str, ...], says: str) -> None:
    args = [a for s in sets for a in ("--set", s)]
    proc = run_helm("install", "mnemos", str(CHART), "--namespace", "mnemos", "--dry-run=client", *args)
    assert proc.returncode == 0, proc.stderr
    assert says in proc.stdout[proc.stdout.index("NOTES:") :]


def test_the_chart_ships_the_package_script() -> None:
    """The chart cannot read the package: it ships a copy. After editing mnemos/kuberay/_ray_tls_cert.py:
    cp mnemos/kuberay/_ray_tls_cert.py deployments/helm/mnemos/files/ray-tls-cert.py"""
    assert CHART_SCRIPT.read_text() == SCRIPT.read_text()


def test_python_renderer_gives_every_ray_pod_the_same_tls_pieces_as_the_chart() -> None:
    python = render_all()
    chart = {o["kind"]: o for o in helm_template(sets=ALL_KINDS) if o["kind"] in RAY_KINDS}
    for obj in python:
        validate_manifest(obj, crd_dir())
        assert_autoscaler_speaks_tls(obj)
        pods, chart_pods = ray_pods([obj]), ray_pods([chart[obj["kind"]]])
        assert [role for _, role, _ in pods] == [role for _, role, _ in chart_pods]
        for (where, role, spec), (_, _, chart_spec) in zip(pods, chart_pods, strict=True):
            service = f"{obj['metadata']['name']}-head-svc" if role == "head" else None
            assert_tls_pod(where, role, spec, "mnemos-ray-ca", service)
            # The same container, but for the names each renderer gives (image tag, Services, Secret).
            assert _comparable(spec) == _comparable(chart_spec), where
        autoscalers = [cluster_specs(o)["autoscalerOptions"] for o in (obj, chart[obj["kind"]])]
        assert env_of(autoscalers[0]) == env_of(autoscalers[1])


def _comparable(spec: dict[str, Any]) -> dict[str, Any]:
    init = copy.deepcopy(spec["initContainers"][0])
    del init["image"]
    init["env"] = [e for e in init["env"] if e["name"] != "MNEMOS_RAY_TLS_SERVICES"]
    volumes = copy.deepcopy([v for v in spec["volumes"] if v["name"] in ("ray-tls", "ray-ca")])
    del volumes[1]["secret"]["secretName"]
    ray = spec["containers"][0]
    return {
        "init": init,
        "volumes": volumes,
        "env": [e for e in ray["env"] if e["name"] in TLS_ENV],
        "mounts": [m for m in ray["volumeMounts"] if m["name"] == "ray-tls"],
    }


def test_python_renderer_without_tls_renders_none_of_it() -> None:
    off = render_all(load_values(data={"tls": {"enabled": False}}))
    assert [without_tls(o) for o in render_all()] == off
    assert "RAY_USE_TLS" not in yaml.safe_dump(off) and "ray-tls" not in yaml.safe_dump(off)
    named = render_all(load_values(sets=["tls.caSecret=corp-ray-ca"]), kinds=["RayCluster"])
    for where, role, spec in ray_pods(named):
        assert_tls_pod(where, role, spec, "corp-ray-ca", "mnemos-cluster-head-svc" if role == "head" else None)
    with pytest.raises(ValidationError, match="tls.caSecret"):
        load_values(sets=["tls.caSecret=Not_A_Secret"])
