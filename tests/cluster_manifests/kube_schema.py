"""Validate ray.io objects offline against the KubeRay CRDs' openAPIV3Schema.

What the API server does and plain Draft 7 does not, handled here:
- unknown fields: `kubectl apply` validates strictly by default ("field not
  declared in schema"); Draft 7 allows any extra key. Every object schema with
  `properties` and no `additionalProperties` (and no
  `x-kubernetes-preserve-unknown-fields`) is closed before validating.
- integers: JSON Schema counts 8.0 as an integer; the API server's decoder
  refuses it for int32/int64 fields. `integer` here means a Python int.
- `format: int32` / `int64`: range-checked (Draft 7 ignores these formats).
- `x-kubernetes-list-type: map` (+ `x-kubernetes-list-map-keys`): entries must
  be unique by their keys (e.g. two env vars or containers with one name);
  `set`: items unique. A missing key counts as its schema default.
- `x-kubernetes-int-or-string: true` comes with `anyOf: [integer, string]`
  (and for quantities a `pattern`, which JSON Schema applies to strings only),
  so Draft 7 handles it as written.
- `nullable: true` (OpenAPI 3, only under status here) becomes `type: [T, "null"]`.
- `x-kubernetes-validations` (CEL) cannot run offline: `cel_guarded_paths`
  lists where they sit so a test can keep the manifests away from them.
Other `x-kubernetes-*` keys only steer merging and are ignored.
"""

from __future__ import annotations

import os
from functools import cache
from pathlib import Path

import jsonschema
import yaml
from jsonschema import Draft7Validator, FormatChecker
from jsonschema.exceptions import ValidationError

REPO_ROOT = Path(__file__).resolve().parents[2]
CRD_DIR_ENV = "IRGPT_KUBERAY_CRDS"
CRD_FILES = {"RayCluster": "ray.io_rayclusters.yaml", "RayJob": "ray.io_rayjobs.yaml"}
# The C loader parses the 1-2 MB CRDs in well under a second; pure Python ~7 s.
LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def crd_dir() -> Path:
    """`$IRGPT_KUBERAY_CRDS` (another KubeRay version), else the copy in `crds/` beside this file."""
    override = os.environ.get(CRD_DIR_ENV)
    return Path(override) if override else Path(__file__).parent / "crds"


@cache
def load_crd(kind: str) -> dict:
    path = crd_dir() / CRD_FILES[kind]
    if not path.is_file():
        raise FileNotFoundError(
            f"KubeRay CRD for {kind} not found at {path}. The manifest tests need "
            f"tests/cluster_manifests/crds/ (or set {CRD_DIR_ENV} to a folder holding {CRD_FILES[kind]})."
        )
    with path.open("rb") as f:
        crd = yaml.load(f, Loader=LOADER)
    if crd.get("kind") != "CustomResourceDefinition" or crd["spec"]["names"]["kind"] != kind:
        raise ValueError(f"{path} is not the CustomResourceDefinition of {kind}")
    return crd


def version_schema(kind: str, api_version: str) -> dict:
    """The openAPIV3Schema of the served CRD version named by `api_version`."""
    group, _, version = api_version.rpartition("/")
    crd = load_crd(kind)
    if group != crd["spec"]["group"]:
        raise ValueError(f"{kind} belongs to {crd['spec']['group']}, not {group!r}")
    for entry in crd["spec"]["versions"]:
        if entry["name"] == version:
            if not entry.get("served", False):
                raise ValueError(f"{api_version} {kind} is not served by the CRD")
            return entry["schema"]["openAPIV3Schema"]
    names = [v["name"] for v in crd["spec"]["versions"]]
    raise ValueError(f"{kind} CRD has no version {version!r} (has {names})")


def api_server_schema(schema: dict) -> dict:
    """A copy of `schema`: declared-property objects reject others; `nullable` honoured."""
    out = dict(schema)
    if out.get("nullable") is True and isinstance(out.get("type"), str):
        out["type"] = [out["type"], "null"]
    if "properties" in out:
        out["properties"] = {k: api_server_schema(v) for k, v in out["properties"].items()}
        if "additionalProperties" not in out and not out.get(
            "x-kubernetes-preserve-unknown-fields"
        ):
            out["additionalProperties"] = False
    for key in ("items", "additionalProperties", "not"):
        if isinstance(out.get(key), dict):
            out[key] = api_server_schema(out[key])
    for key in ("anyOf", "allOf", "oneOf"):
        if key in out:
            out[key] = [api_server_schema(s) for s in out[key]]
    return out


def cel_guarded_paths(schema: dict, path: tuple = ()) -> dict[tuple, list[str]]:
    """{path (with '*' for list items / map values): [CEL rules]} for the whole schema."""
    found = {}
    if schema.get("x-kubernetes-validations"):
        found[path] = [rule["rule"] for rule in schema["x-kubernetes-validations"]]
    for name, sub in schema.get("properties", {}).items():
        found.update(cel_guarded_paths(sub, path + (name,)))
    for key in ("items", "additionalProperties"):
        if isinstance(schema.get(key), dict):
            found.update(cel_guarded_paths(schema[key], path + ("*",)))
    return found


# ------------------------------------------------------------ validator ----
FORMATS = FormatChecker(formats=())


@FORMATS.checks("int32")
def _int32(value) -> bool:
    return not isinstance(value, int) or -(2**31) <= value < 2**31


@FORMATS.checks("int64")
def _int64(value) -> bool:
    return not isinstance(value, int) or -(2**63) <= value < 2**63


def _is_int(_checker, instance) -> bool:
    return isinstance(instance, int) and not isinstance(instance, bool)


def _list_map_keys(validator, keys, instance, schema):
    if schema.get("x-kubernetes-list-type") != "map" or not validator.is_type(instance, "array"):
        return
    defaults = {
        k: schema.get("items", {}).get("properties", {}).get(k, {}).get("default") for k in keys
    }
    seen: dict[tuple, int] = {}
    for i, item in enumerate(instance):
        if not isinstance(item, dict):
            continue
        key = tuple(item.get(k, defaults[k]) for k in keys)
        if key in seen:
            shown = ", ".join(f"{k}={v!r}" for k, v in zip(keys, key))
            yield ValidationError(f"items [{seen[key]}] and [{i}] share the map key ({shown})")
        else:
            seen[key] = i


def _list_type(validator, list_type, instance, schema):
    if list_type != "set" or not validator.is_type(instance, "array"):
        return
    for i, item in enumerate(instance):
        if item in instance[:i]:
            yield ValidationError(f"item [{i}] {item!r} repeats in a list-type set")


KubeValidator = jsonschema.validators.extend(
    Draft7Validator,
    validators={"x-kubernetes-list-map-keys": _list_map_keys, "x-kubernetes-list-type": _list_type},
    type_checker=Draft7Validator.TYPE_CHECKER.redefine("integer", _is_int),
)


@cache
def validator_for(kind: str, api_version: str):
    return KubeValidator(
        api_server_schema(version_schema(kind, api_version)), format_checker=FORMATS
    )


def schema_errors(doc: dict) -> list[str]:
    """Readable errors of one RayCluster / RayJob document; [] when it is valid."""
    validator = validator_for(doc["kind"], doc["apiVersion"])
    out = []
    for err in validator.iter_errors(doc):
        where = ".".join(str(p) for p in err.absolute_path) or "<root>"
        out.append(f"{where}: {err.message[:300]}")
    return sorted(out)
