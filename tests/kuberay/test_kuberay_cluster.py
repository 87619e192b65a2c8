"""apply / status / delete against the CustomObjectsApi: server-side apply as field manager `mnemos`.

Without an API server here, the unit tests record the calls on a stand-in with the same method
signatures; the `k8s` test does the real thing where a kubeconfig exists.
"""

from __future__ import annotations

import inspect
import os
import uuid
from pathlib import Path
from typing import Any

import pytest
from kubernetes.client import CustomObjectsApi
from kubernetes.client.exceptions import ApiException

from mnemos.errors import NotFoundError, PermissionDeniedError, UnavailableError, ValidationError
from mnemos.kuberay import apply, connect, delete, load_values, render_all, status

from .support import crd_dir


class RecordingApi:
    """Records calls; answers like an API server with KubeRay installed (or not)."""

    def __init__(self, stored: dict[tuple[str, str], dict[str, Any]] | None = None, fail: int | None = None) -> None:
        self.calls: list[tuple[str, tuple, dict]] = []
        self.stored = stored if stored is not None else {}
        self.fail = fail

    def _maybe_fail(self) -> None:
        if self.fail:
            raise ApiException(status=self.fail, reason="Forbidden" if self.fail == 403 else "Error")

    def patch_namespaced_custom_object(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        self.calls.append(("patch", args, kwargs))
        self._maybe_fail()
        group, version, namespace, plural, name, body = args
        self.stored[(plural, name)] = {**body, "status": {}}
        return self.stored[(plural, name)]

    def get_namespaced_custom_object(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        self.calls.append(("get", args, kwargs))
        self._maybe_fail()
        _, _, _, plural, name = args
        if (plural, name) not in self.stored:
            raise ApiException(status=404, reason="Not Found")
        return self.stored[(plural, name)]

    def delete_namespaced_custom_object(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        self.calls.append(("delete", args, kwargs))
        self._maybe_fail()
        _, _, _, plural, name = args
        if self.stored.pop((plural, name), None) is None:
            raise ApiException(status=404, reason="Not Found")
        return {"status": "Success"}


def test_stand_in_matches_the_real_client_signatures() -> None:
    import inspect

    for method in ("patch_namespaced_custom_object", "get_namespaced_custom_object", "delete_namespaced_custom_object"):
        params = inspect.signature(getattr(CustomObjectsApi, method)).parameters
        assert list(params)[1:6] == ["group", "version", "namespace", "plural", "name"]
    patch = inspect.signature(CustomObjectsApi.patch_namespaced_custom_object).parameters
    assert {"field_manager", "force", "field_validation", "_content_type"} <= set(patch)
    assert "propagation_policy" in inspect.signature(CustomObjectsApi.delete_namespaced_custom_object).parameters


def test_apply_is_forced_server_side_apply_as_mnemos() -> None:
    api = RecordingApi()
    objects = render_all()
    applied = apply(objects, api=api, crd_dir=crd_dir())
    assert [o["kind"] for o in applied] == ["RayCluster", "RayService", "RayJob"]
    plurals = []
    for verb, args, kwargs in api.calls:
        assert verb == "patch"
        group, version, namespace, plural, name, body = args
        assert (group, version, namespace) == ("ray.io", "v1", "mnemos")
        assert kwargs["field_manager"] == "mnemos" and kwargs["force"] is True
        assert kwargs["_content_type"] == "application/apply-patch+yaml"
        assert kwargs["field_validation"] == "Strict"
        assert body["metadata"]["name"] == name
        plurals.append(plural)
    assert plurals == ["rayclusters", "rayservices", "rayjobs"]


def test_apply_validates_before_sending() -> None:
    api = RecordingApi()
    objects = render_all(kinds=["RayCluster"])
    objects[0]["spec"]["workerGroupSpecs"][0]["replica"] = 2
    with pytest.raises(ValidationError, match="replica"):
        apply(objects, api=api, crd_dir=crd_dir())
    assert api.calls == []


def test_dry_run_touches_no_cluster(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "none"))
    objects = render_all(kinds=["RayJob"])
    assert apply(objects, dry_run=True, crd_dir=crd_dir()) == objects


def test_status_reads_dot_status_and_reports_absent() -> None:
    objects = render_all(load_values(data={"namespace": "ml"}))
    api = RecordingApi(
        stored={
            ("rayclusters", "mnemos-cluster"): {"status": {"state": "ready", "availableWorkerReplicas": 3}},
            ("rayservices", "mnemos"): {"status": {"serviceStatus": "Running"}},
        }
    )
    rows = {r["kind"]: r for r in status(objects, api=api)}
    assert rows["RayCluster"]["state"] == "ready" and rows["RayCluster"]["status"]["availableWorkerReplicas"] == 3
    assert rows["RayService"]["state"] == "Running"
    assert rows["RayJob"]["state"] == "absent"
    assert all(args[2] == "ml" for _, args, _ in api.calls)


def test_delete_is_idempotent() -> None:
    objects = render_all(kinds=["RayService", "RayJob"])
    api = RecordingApi(stored={("rayservices", "mnemos"): {}})
    assert [r["state"] for r in delete(objects, api=api)] == ["deleted", "absent"]
    assert api.calls[0][2]["propagation_policy"] == "Foreground"


@pytest.mark.parametrize(
    ("code", "error"), [(403, PermissionDeniedError), (404, NotFoundError), (500, UnavailableError)]
)
def test_api_errors_become_mnemos_errors(code: int, error: type) -> None:
    with pytest.raises(error):
        apply(render_all(kinds=["RayService"]), api=RecordingApi(fail=code), crd_dir=crd_dir())


def test_connect_without_configuration_is_unavailable(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    with pytest.raises(UnavailableError, match="no Kubernetes configuration"):
        connect(tmp_path / "missing-kubeconfig")


def _kubeconfig() -> str | None:
    path = os.environ.get("KUBECONFIG") or str(Path.home() / ".kube" / "config")
    return path if Path(path.split(os.pathsep)[0]).is_file() else None


@pytest.mark.k8s
@pytest.mark.skipif(
    _kubeconfig() is None, reason="no kubeconfig ($KUBECONFIG or ~/.kube/config): no cluster to apply to"
)
def test_live_apply_status_delete() -> None:
    """Needs a cluster with the KubeRay operator; uses namespace $MNEMOS_K8S_NAMESPACE (default: default)."""
    namespace = os.environ.get("MNEMOS_K8S_NAMESPACE", "default")
    name = f"mnemos-t{uuid.uuid4().hex[:6]}"
    values = load_values(data={"name": name, "namespace": namespace}, sets=["workerGroups[1].replicas=0"])
    objects = render_all(values, kinds=["RayCluster"])
    api = connect(_kubeconfig())
    try:
        applied = apply(objects, api=api, crd_dir=crd_dir())
        assert applied[0]["metadata"]["name"] == f"{name}-cluster"
        again = apply(objects, api=api, crd_dir=crd_dir())  # server-side apply: idempotent
        assert again[0]["metadata"]["generation"] == applied[0]["metadata"]["generation"]
        (row,) = status(objects, api=api)
        assert row["state"] != "absent"
    finally:
        delete(objects, api=api)


class SecretsApi:
    """A ``CoreV1Api`` stand-in (no API server here) holding some Secrets; ``refuse``: answer 403."""

    def __init__(self, existing: set[tuple[str, str]], refuse: int | None = None) -> None:
        self.existing, self.refuse, self.asked = existing, refuse, []

    def read_namespaced_secret(self, name: str, namespace: str, **kwargs: Any) -> dict[str, Any]:
        self.asked.append((namespace, name))
        if self.refuse:
            raise ApiException(status=self.refuse, reason="Forbidden")
        if (namespace, name) not in self.existing:
            raise ApiException(status=404, reason="Not Found")
        return {"metadata": {"name": name}}


def test_the_secrets_the_pods_need_are_found_and_the_missing_ones_named() -> None:
    from kubernetes.client import CoreV1Api

    from mnemos.kuberay import missing_secrets, secrets_used

    assert set(inspect.signature(CoreV1Api.read_namespaced_secret).parameters) >= {"name", "namespace"}
    objects = render_all()
    used = secrets_used(objects)
    assert {("mnemos", "mnemos-master-key"), ("mnemos", "mnemos-ray-ca")} <= set(used)
    assert ("mnemos", "mnemos-s3") not in used  # referenced as optional: the pods start without it
    assert not any(name == "mnemos-ray-ca" for _, name in secrets_used(render_all(load_values(
        data={"tls": {"enabled": False}}))))  # fmt: skip
    core = SecretsApi({("mnemos", "mnemos-master-key")})
    assert ("mnemos", "mnemos-ray-ca") in missing_secrets(objects, core=core)
    assert ("mnemos", "mnemos-master-key") not in missing_secrets(objects, core=core)
    assert missing_secrets(objects, core=SecretsApi(set(), refuse=403)) == []  # may exist: not ours to read
    with pytest.raises(UnavailableError):
        missing_secrets(objects, core=SecretsApi(set(), refuse=500))


def test_apply_warns_of_each_missing_secret_and_applies(monkeypatch) -> None:
    """``mnemos kuberay apply`` over stand-ins for both APIs (no API server here)."""
    import kubernetes.client
    from typer.testing import CliRunner

    import mnemos.kuberay
    from mnemos.cli.kuberay import app

    api = RecordingApi()
    monkeypatch.setattr(mnemos.kuberay, "connect", lambda *a, **k: api)
    monkeypatch.setattr(kubernetes.client, "CoreV1Api", lambda: SecretsApi({("mnemos", "mnemos-master-key")}))
    monkeypatch.setenv("MNEMOS_KUBERAY_CRDS", str(crd_dir()))
    result = CliRunner().invoke(app, ["apply", "--kind", "RayService"])
    assert result.exit_code == 0, result.stderr
    assert "warning: Secret mnemos-ray-ca does not exist in namespace mnemos" in result.stderr
    assert "mnemos-master-key" not in result.stderr
    assert "rayservice/" in result.stdout and [c[0] for c in api.calls] == ["patch"]
