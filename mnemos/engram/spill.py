"""Ray object spilling into ENGRAM's object store."""

from __future__ import annotations

import json
from typing import Any

from mnemos.errors import UnavailableError, ValidationError

__all__ = ["spilling_config", "spilling_env"]


def spilling_config(uri: str, storage_options: dict[str, Any] | None = None) -> dict[str, str]:
    """The ``_system_config`` entries that make Ray spill objects to ``uri``.

    An ``s3://bucket/prefix`` URI spills through smart_open; the bucket is checked first,
    because Ray would otherwise hang retrying ``NoSuchBucket`` on the first spill. A local
    path spills to that folder. Of ``storage_options`` (s3fs style: ``endpoint_url``, ``key``,
    ``secret``, ``client_kwargs.region_name``) the endpoint and the region go to the S3 client of
    the spill workers; the credentials never do: Ray puts its system config on the command line of
    every Ray process (``ps`` shows it to anyone on the node) and keeps it in the GCS. Spill workers
    take credentials from their environment like any AWS client: give the nodes'
    ``ray start`` the variables of :func:`spilling_env`, or an instance role (IRSA on EKS).
    """
    opts = dict(storage_options or {})
    if uri.startswith("s3://"):
        import s3fs
        from fsspec.asyn import sync

        from mnemos.engram.keys import bucket_problem
        from mnemos.engram.store import _without_userinfo

        bucket = uri[5:].split("/", 1)[0]
        if (why := bucket_problem(uri)) is not None:  # (not botocore's message of two regular expressions)
            raise ValidationError(f"spill URI {_without_userinfo(uri)!r}: {why}", param="uri")

        fs = s3fs.S3FileSystem(**opts)
        endpoint = str(opts.get("endpoint_url") or "")
        at = f" at {_without_userinfo(endpoint)}" if endpoint else ""
        try:  # not fs.exists(): it answers False when the endpoint does not answer
            sync(fs.loop, fs._call_s3, "head_bucket", Bucket=bucket)
        except FileNotFoundError:
            raise UnavailableError(
                f"spill bucket {bucket!r} does not exist{at}: create it before starting Ray"
            ) from None
        except Exception as exc:  # noqa: BLE001 - any client failure means unreachable
            # its type only: botocore's message repeats the endpoint URL, a user:password@ in it included
            raise UnavailableError(f"cannot reach the spill bucket {bucket!r}{at} ({type(exc).__name__})") from None
        client: dict[str, Any] = {}
        if opts.get("endpoint_url"):
            client["endpoint_url"] = opts["endpoint_url"]
        region = (opts.get("client_kwargs") or {}).get("region_name")
        if region:
            client["region_name"] = region
        params: dict[str, Any] = {"uri": uri.rstrip("/")}
        if client:
            params["override_transport_params"] = {"client_kwargs": {"S3.Client": client}}
        spec = {"type": "smart_open", "params": params}
    elif "://" not in uri or uri.startswith("file://"):
        spec = {"type": "filesystem", "params": {"directory_path": uri.removeprefix("file://")}}
    else:
        raise ValidationError(f"spill URI {uri!r}: use s3://bucket/prefix or a local folder", param="uri")
    return {"object_spilling_config": json.dumps(spec)}


def spilling_env(storage_options: dict[str, Any] | None = None) -> dict[str, str]:
    """The environment that gives Ray's spill workers the credentials of ``storage_options``
    (``key``, ``secret``, ``token``): set it in the environment of ``ray start`` (or of the
    process that calls ``ray.init`` for a local cluster), never in its system config."""
    opts = storage_options or {}
    names = {"key": "AWS_ACCESS_KEY_ID", "secret": "AWS_SECRET_ACCESS_KEY", "token": "AWS_SESSION_TOKEN"}
    return {var: str(opts[field]) for field, var in names.items() if opts.get(field)}
