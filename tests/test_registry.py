"""The model registry: staging, the training lock, decision records, ``bot models`` and ``bot rollback``."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from bot.cli import cli
from finetune.registry import Registry, RegistryError


def version(registry: Registry, accuracy: float) -> str:
    with registry.stage() as staging:
        (staging / "weights").write_text("w")
        return registry.commit(staging, {"id": "x"}, {"accuracy": accuracy})


def test_a_failed_stage_leaves_nothing_and_commits_number_in_order(tmp_path: Path) -> None:
    registry = Registry(tmp_path / "models")
    with pytest.raises(RuntimeError), registry.stage() as staging:
        (staging / "half").write_text("half a model")
        raise RuntimeError("crash while training")
    assert list(registry.root.iterdir()) == []
    assert [version(registry, 0.5), version(registry, 0.6)] == ["v0001", "v0002"]
    assert registry.current() is None
    registry.promote("v0001")
    assert [(v.name, v.current, v.metrics["accuracy"], v.decision) for v in registry.versions()] == [
        ("v0001", True, 0.5, {}), ("v0002", False, 0.6, {})]
    with pytest.raises(RegistryError, match="no model version 'v0009'"):
        registry.promote("v0009")


def test_one_training_run_at_a_time_and_stale_staging_is_removed(tmp_path: Path) -> None:
    registry = Registry(tmp_path / "models")
    stale = registry.root / ".staging-deadbeef"
    stale.mkdir(parents=True)  # what a killed run leaves
    with registry.lock():
        assert not stale.exists()
        with pytest.raises(RegistryError, match="another training run"):
            with Registry(tmp_path / "models").lock():
                pass
    with registry.lock():  # released when the first run ends
        pass


def test_decisions_are_appended_and_a_cut_line_is_skipped(tmp_path: Path) -> None:
    registry = Registry(tmp_path / "models")
    registry.record({"event": "promoted", "version": "v0002"})
    with open(registry.root / "decisions.jsonl", "a") as fh:
        fh.write('{"event": "refu')  # a crash mid-write
    registry.record({"event": "refused", "version": "v0003"})
    assert [(d["event"], d["version"]) for d in registry.decisions()] == [("promoted", "v0002"), ("refused", "v0003")]
    assert all("time" in d for d in registry.decisions())


def test_rollback_checks_the_version_before_serving_it(tmp_path: Path) -> None:
    registry = Registry(tmp_path / "models")
    version(registry, 0.5)
    version(registry, 0.6)
    registry.promote("v0002")

    def refuse(path: Path) -> None:
        raise ValueError(f"{path.name} is broken")

    with pytest.raises(ValueError, match="v0001 is broken"):
        registry.rollback("v0001", check=refuse)
    assert registry.current() == "v0002" and registry.decisions() == []
    assert registry.rollback("v0001", check=lambda path: None) == "v0002"
    assert registry.current() == "v0001"
    assert registry.decisions()[-1] | {"time": None} == {"event": "rollback", "version": "v0001", "previous": "v0002",
                                                          "time": None}


def test_bot_models_and_bot_rollback(small_bot: Path, tmp_path: Path) -> None:
    root = Path(shutil.copytree(small_bot, tmp_path / "bot"))
    models = root / "models"
    shutil.copytree(models / "v0001", models / "v0002")
    shutil.copytree(models / "v0001", models / "v0003")
    (models / "v0003" / "index" / "index.faiss").write_bytes(b"corrupt")
    Registry(models).promote("v0002")
    runner = CliRunner()

    listing = runner.invoke(cli, ["models", str(root)])
    assert listing.exit_code == 0
    lines = listing.output.splitlines()
    assert [line[:7] for line in lines[1:]] == ["  v0001", "* v0002", "  v0003"]
    rows = [json.loads(line) for line in runner.invoke(cli, ["models", str(root), "--json"]).output.splitlines()]
    assert [(r["version"], r["serving"]) for r in rows] == [("v0001", False), ("v0002", True), ("v0003", False)]

    broken = runner.invoke(cli, ["rollback", str(root), "v0003"])
    assert broken.exit_code == 1 and "cannot load the answer index" in broken.output
    unknown = runner.invoke(cli, ["rollback", str(root), "v0042"])
    assert unknown.exit_code == 1 and "no model version 'v0042'" in unknown.output
    assert (models / "CURRENT").read_text().strip() == "v0002"

    done = runner.invoke(cli, ["rollback", str(root), "v0001"])
    assert done.exit_code == 0 and "Now serving v0001 (was v0002)" in done.output
    assert (models / "CURRENT").read_text().strip() == "v0001"


def test_bot_train_and_retrain_refuse_to_run_beside_another_training(small_bot: Path, tmp_path: Path) -> None:
    root = Path(shutil.copytree(small_bot, tmp_path / "bot"))
    with Registry(root / "models").lock():
        for command in (["train", str(root)], ["retrain", str(root), "--force"]):
            result = CliRunner().invoke(cli, command)
            assert result.exit_code == 1 and "another training run is using" in result.output
    assert [v.name for v in Registry(root / "models").versions()] == ["v0001"]
