"""Registry: artefacts round-trip, hashes are verified before scoring, pickles are refused."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from creditstack.scoring.errors import ModelIntegrityFailed, ModelNotFound, PickleRefused, RoleUnknown
from creditstack.scoring.evaluation import fit_model
from creditstack.scoring.registry import ModelRegistry, load_model, save_model, verify_model

SCORING_SOURCE = Path(__file__).resolve().parents[3] / "src" / "creditstack" / "scoring"


@pytest.fixture(scope="module")
def artefacts(tmp_path_factory: pytest.TempPathFactory, messy_columns: dict[str, np.ndarray]) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("artefacts")
    out = {}
    for kind, params in (("scorecard", None), ("gbm", {"num_leaves_grid": [7], "trees_max": 100})):
        result = fit_model(kind, messy_columns, "bad", exclude=["sex"], params=params)
        save_model(result.model, root / kind, training_data={"sha256": "x", "rows": 1500}, metrics=result.validation)
        out[kind] = root / kind
    return out


def _copy(source: Path, target: Path) -> Path:
    target.mkdir()
    for path in source.iterdir():
        (target / path.name).write_bytes(path.read_bytes())
    return target


@pytest.mark.parametrize("kind", ["scorecard", "gbm"])
def test_saved_model_loads_and_scores_the_same(
    artefacts: dict[str, Path], messy_columns: dict[str, np.ndarray], kind: str
) -> None:
    model = load_model(artefacts[kind])
    manifest = verify_model(artefacts[kind])
    assert model.model_id == manifest["model_id"] and manifest["model_id"].startswith(kind)
    assert set(manifest["files"]) == ({"model.json", "model.txt"} if kind == "gbm" else {"model.json"})
    again = load_model(artefacts[kind])
    sample = {k: v[:50] for k, v in messy_columns.items()}
    assert np.array_equal(model.score_batch(sample).score, again.score_batch(sample).score)


@pytest.mark.parametrize("kind", ["scorecard", "gbm"])
def test_a_tampered_model_file_does_not_load(artefacts: dict[str, Path], tmp_path: Path, kind: str) -> None:
    copy = _copy(artefacts[kind], tmp_path / "copy")
    document = json.loads((copy / "model.json").read_text())
    document["scale"]["base_score"] = 650
    (copy / "model.json").write_text(json.dumps(document))
    with pytest.raises(ModelIntegrityFailed) as raised:
        load_model(copy)
    assert raised.value.code == "scoring.model_integrity_failed"


def test_a_tampered_manifest_does_not_load(artefacts: dict[str, Path], tmp_path: Path) -> None:
    copy = _copy(artefacts["scorecard"], tmp_path / "copy")
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["metrics"]["auc"] = 0.99
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelIntegrityFailed, match="content hash"):
        load_model(copy)


def test_a_pickle_in_the_model_directory_is_refused(artefacts: dict[str, Path], tmp_path: Path) -> None:
    copy = _copy(artefacts["gbm"], tmp_path / "by_name")
    (copy / "model.pkl").write_bytes(b"not even a pickle")
    with pytest.raises(PickleRefused):
        load_model(copy)
    copy = _copy(artefacts["gbm"], tmp_path / "by_magic")
    (copy / "extra.bin").write_bytes(b"\x80\x04\x95" + b"\x00" * 10)
    with pytest.raises(PickleRefused) as raised:
        load_model(copy)
    assert raised.value.code == "scoring.pickle_refused"


def test_scoring_never_imports_pickle() -> None:
    for path in SCORING_SOURCE.glob("*.py"):
        text = path.read_text()
        for forbidden in ("import pickle", "import joblib", "import dill", "cloudpickle"):
            assert forbidden not in text, f"{path.name} mentions {forbidden}"


def test_registry_keeps_champion_and_challenger(artefacts: dict[str, Path], tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path / "registry")
    champion = registry.register(artefacts["scorecard"])
    challenger = registry.register(artefacts["gbm"], role="challenger")
    assert registry.roles() == {"champion": champion, "challenger": challenger}
    assert registry.load("champion").kind == "scorecard"
    assert load_model(tmp_path / "registry").model_id == champion  # a registry dir resolves to its champion
    registry.promote(challenger, "champion")
    assert registry.load().kind == "gbm"
    assert registry.register(artefacts["gbm"]) == challenger  # idempotent by content hash
    with pytest.raises(RoleUnknown):
        registry.promote(champion, "king")
    with pytest.raises(ModelNotFound):
        registry.promote("scorecard-0000", "champion")
    assert {m["kind"] for m in registry.list_models()} == {"scorecard", "gbm"}
