"""Model artefacts on disk, verified by hash before they score, and a champion/challenger registry.

An artefact is a directory:

    manifest.json   kind, format, sha256 of every file, the content hash, training-data fingerprint,
                    parameters, validation metrics, fit notes
    model.json      the scorecard points table, or the GBM's encodings and calibration map
    model.txt       (GBM only) LightGBM's own model text

The content hash is the sha256 of the canonical JSON of the manifest without its own `content_sha256`
and `model_id` fields — so it covers every file (through their hashes) and every manifest field. The model
id is `<kind>-<first 16 hex digits of the content hash>`. `load_model` refuses a directory that holds a
pickle/joblib file (by name or by the pickle magic bytes) and any artefact whose hashes do not match; this
module never imports `pickle`.

A registry is a directory with `registry.json` (the champion and challenger ids) and `models/<id>/`
artefact directories; `ModelRegistry.load("champion")` resolves, verifies and loads.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from creditstack import __version__
from creditstack.scoring.errors import (
    ModelFormatUnsupported,
    ModelIntegrityFailed,
    ModelNotFound,
    PickleRefused,
    RoleUnknown,
    UnknownModelKind,
)
from creditstack.scoring.gbm import GbmModel
from creditstack.scoring.scorecard import ScorecardModel

MANIFEST = "manifest.json"
MODEL_JSON = "model.json"
MODEL_TEXT = "model.txt"
REGISTRY_FILE = "registry.json"
MANIFEST_FORMAT = "creditstack.scoring.manifest"
MANIFEST_VERSION = 1
ROLES = ("champion", "challenger")
PICKLE_SUFFIXES = (".pkl", ".pickle", ".joblib", ".sav", ".dill", ".pck")
ARTEFACT_BYTES_MAX = 512 << 20
Model = ScorecardModel | GbmModel


def json_safe(value: Any) -> Any:
    """NaN and infinities become `null` (JSON has no such numbers); tuples become lists."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if hasattr(value, "item") and callable(value.item):  # numpy scalars
        return json_safe(value.item())
    return value


def canonical_json(value: Any) -> bytes:
    return json.dumps(
        json_safe(value), sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def content_hash(manifest: Mapping[str, Any]) -> str:
    body = {k: v for k, v in manifest.items() if k not in ("content_sha256", "model_id")}
    return sha256_bytes(canonical_json(body))


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def save_model(
    model: Model,
    directory: str | Path,
    *,
    training_data: Mapping[str, Any],
    metrics: Mapping[str, Any],
    notes: list[str] | None = None,
) -> dict[str, Any]:
    """Write the artefact and its manifest; returns the manifest (with `model_id` and `content_sha256`)."""
    target = Path(directory)
    target.mkdir(parents=True, exist_ok=True)
    files: dict[str, bytes] = {MODEL_JSON: json.dumps(json_safe(model.to_dict()), indent=1, sort_keys=True).encode()}
    if isinstance(model, GbmModel):
        files[MODEL_TEXT] = model.booster_text.encode("utf-8")
    for name, data in files.items():
        _write_atomic(target / name, data)
    manifest: dict[str, Any] = {
        "format": MANIFEST_FORMAT,
        "format_version": MANIFEST_VERSION,
        "kind": model.kind,
        "files": {name: sha256_bytes(data) for name, data in sorted(files.items())},
        "training_data": dict(training_data),
        "params": model.params,
        "scale": model.scale.to_dict(),
        "metrics": dict(metrics),
        "notes": list(notes or []),
        "created_with": f"creditstack {__version__}",
    }
    manifest = json_safe(manifest)
    manifest["content_sha256"] = content_hash(manifest)
    manifest["model_id"] = f"{model.kind}-{manifest['content_sha256'][:16]}"
    _write_atomic(target / MANIFEST, json.dumps(manifest, indent=1, sort_keys=True).encode())
    model.model_id = manifest["model_id"]
    return manifest


def refuse_pickles(directory: Path) -> None:
    for path in directory.iterdir():
        if not path.is_file():
            continue
        if path.suffix.lower() in PICKLE_SUFFIXES:
            raise PickleRefused(f"{path.name}: pickled models are never loaded", field="model")
        with path.open("rb") as stream:
            head = stream.read(2)
        if len(head) == 2 and head[0] == 0x80 and 2 <= head[1] <= 5:
            raise PickleRefused(f"{path.name} starts with the pickle header; it is never loaded", field="model")


def verify_model(directory: str | Path) -> dict[str, Any]:
    """Check the artefact against its manifest; returns the manifest. Raises before anything is parsed."""
    source = Path(directory)
    manifest_path = source / MANIFEST
    if not manifest_path.is_file():
        raise ModelNotFound(f"no {MANIFEST} in {source}", field="model")
    refuse_pickles(source)
    try:
        manifest = json.loads(manifest_path.read_text("utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ModelIntegrityFailed(f"{MANIFEST} is not valid JSON", field="model") from error
    if manifest.get("format") != MANIFEST_FORMAT or manifest.get("format_version") != MANIFEST_VERSION:
        raise ModelFormatUnsupported(f"{MANIFEST} is not a {MANIFEST_FORMAT} v{MANIFEST_VERSION} manifest")
    if manifest.get("kind") not in ("scorecard", "gbm"):
        raise UnknownModelKind(f"unknown model kind {manifest.get('kind')!r}")
    for name, expected in manifest.get("files", {}).items():
        path = source / name
        if Path(name).name != name or not path.is_file():
            raise ModelIntegrityFailed(f"artefact file {name!r} is missing", field="model")
        if path.stat().st_size > ARTEFACT_BYTES_MAX:
            raise ModelIntegrityFailed(f"{name} is larger than {ARTEFACT_BYTES_MAX} bytes", field="model")
        if sha256_bytes(path.read_bytes()) != expected:
            raise ModelIntegrityFailed(f"{name} does not match its sha256 in the manifest", field="model")
    required = {MODEL_JSON} | ({MODEL_TEXT} if manifest["kind"] == "gbm" else set())
    if not required <= set(manifest.get("files", {})):
        raise ModelIntegrityFailed(f"the manifest does not list {sorted(required)}", field="model")
    if content_hash(manifest) != manifest.get("content_sha256"):
        raise ModelIntegrityFailed("the manifest does not match its content hash", field="model")
    if manifest.get("model_id") != f"{manifest['kind']}-{manifest['content_sha256'][:16]}":
        raise ModelIntegrityFailed("the model id does not match the content hash", field="model")
    return dict(manifest)


def load_model(directory: str | Path) -> Model:
    """Verify, then load. A registry directory resolves to its champion."""
    source = resolve_model_dir(directory)
    manifest = verify_model(source)
    data = json.loads((source / MODEL_JSON).read_text("utf-8"))
    if data.get("kind") != manifest["kind"]:
        raise ModelIntegrityFailed("model.json and the manifest disagree on the kind", field="model")
    model_id = str(manifest["model_id"])
    if manifest["kind"] == "scorecard":
        return ScorecardModel.from_dict(data, model_id=model_id)
    return GbmModel.from_dict(data, (source / MODEL_TEXT).read_text("utf-8"), model_id=model_id)


def load_manifest(directory: str | Path) -> dict[str, Any]:
    return verify_model(resolve_model_dir(directory))


def resolve_model_dir(directory: str | Path) -> Path:
    """An artefact directory as is; a registry directory (with `registry.json`) to its champion."""
    path = Path(directory)
    if (path / REGISTRY_FILE).is_file() and not (path / MANIFEST).is_file():
        return ModelRegistry(path).path_of("champion")
    if not (path / MANIFEST).is_file():
        raise ModelNotFound(f"no model artefact at {path}", field="model")
    return path


class ModelRegistry:
    """Artefacts under `root/models/<model_id>/`, roles in `root/registry.json`."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def _state(self) -> dict[str, Any]:
        path = self.root / REGISTRY_FILE
        if not path.is_file():
            return {"champion": None, "challenger": None}
        return dict(json.loads(path.read_text("utf-8")))

    def _save_state(self, state: Mapping[str, Any]) -> None:
        _write_atomic(self.root / REGISTRY_FILE, json.dumps(dict(state), indent=1, sort_keys=True).encode())

    def register(self, artefact: str | Path, *, role: str | None = None) -> str:
        """Copy a verified artefact in (idempotent by content hash) and optionally give it a role.

        The first model registered becomes champion when no role is given."""
        manifest = verify_model(artefact)
        model_id = str(manifest["model_id"])
        destination = self.root / "models" / model_id
        if not (destination / MANIFEST).is_file():
            staging = Path(tempfile.mkdtemp(dir=self._models_dir(), prefix=".incoming-"))
            for name in [*manifest["files"], MANIFEST]:
                shutil.copyfile(Path(artefact) / name, staging / name)
            os.replace(staging, destination)
        verify_model(destination)
        state = self._state()
        if role is None and state.get("champion") is None:
            role = "champion"
        if role is not None:
            self.promote(model_id, role)
        elif not (self.root / REGISTRY_FILE).is_file():
            self._save_state(state)
        return model_id

    def _models_dir(self) -> Path:
        path = self.root / "models"
        path.mkdir(parents=True, exist_ok=True)
        return path

    def promote(self, model_id: str, role: str) -> None:
        if role not in ROLES:
            raise RoleUnknown(f"role must be one of {ROLES}, not {role!r}", field="role")
        if not (self.root / "models" / model_id / MANIFEST).is_file():
            raise ModelNotFound(f"model {model_id!r} is not registered", field="model_id")
        state = self._state()
        state[role] = model_id
        self._save_state(state)

    def roles(self) -> dict[str, str | None]:
        state = self._state()
        return {role: state.get(role) for role in ROLES}

    def path_of(self, reference: str) -> Path:
        """`champion`, `challenger` or a model id to its artefact directory."""
        model_id = self._state().get(reference) if reference in ROLES else reference
        if not model_id:
            raise ModelNotFound(f"the registry at {self.root} has no {reference}", field="model")
        path = self.root / "models" / str(model_id)
        if not (path / MANIFEST).is_file():
            raise ModelNotFound(f"model {model_id!r} is not registered", field="model")
        return path

    def load(self, reference: str = "champion") -> Model:
        return load_model(self.path_of(reference))

    def list_models(self) -> list[dict[str, Any]]:
        models_dir = self.root / "models"
        if not models_dir.is_dir():
            return []
        roles = {v: k for k, v in self.roles().items() if v}
        out = []
        for path in sorted(models_dir.iterdir()):
            if (path / MANIFEST).is_file():
                manifest = json.loads((path / MANIFEST).read_text("utf-8"))
                out.append(
                    {
                        "model_id": manifest.get("model_id"),
                        "kind": manifest.get("kind"),
                        "role": roles.get(manifest.get("model_id")),
                        "auc": manifest.get("metrics", {}).get("auc"),
                    }
                )
        return out
