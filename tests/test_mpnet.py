"""all-mpnet-base-v2 joined from its five PyPI parts: a synthetic split zip for the joining rules,
then the real packages, which `make test` installs."""

from __future__ import annotations

import importlib.metadata
import json
import zipfile
from pathlib import Path

import pytest
from click.testing import CliRunner

from bot.cli import cli
from finetune import cache as model_cache
from finetune import mpnet
from finetune.cache import MissingAssetsError
from finetune.classifier import ModelLoadError
from finetune.models import model_needs_prefixes, resolve_model
from finetune.mpnet import prepare_mpnet
from finetune.train import train_classifier

FILES = {
    "config.json": b'{"model_type": "mpnet"}',
    "model.safetensors": bytes(range(256)) * 64,
    "modules.json": b"[]",
    "tokenizer.json": b"{}",
    "1_Pooling/config.json": b'{"pooling_mode_mean_tokens": true}',
}


def split_zip(folder: Path, members: dict[str, bytes], parts: int = 3) -> list[Path]:
    """A zip of ``members`` cut into ``parts`` files, as the packages ship it."""
    whole = folder / "whole.zip"
    with zipfile.ZipFile(whole, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("all-mpnet-base-v2/", b"")
        for name, data in members.items():
            archive.writestr(name, data)
    data = whole.read_bytes()
    size = -(-len(data) // parts)
    paths = []
    for i in range(parts):
        path = folder / f"all-mpnet-base-v2.zip.{i + 1:03d}"
        path.write_bytes(data[i * size:(i + 1) * size])
        paths.append(path)
    return paths


@pytest.fixture
def parts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    members = {f"all-mpnet-base-v2/{name}": data for name, data in FILES.items()}
    members["all-mpnet-base-v2/desktop.ini"] = members["all-mpnet-base-v2/1_Pooling/desktop.ini"] = b"[.ShellClassInfo]"
    (tmp_path / "parts").mkdir()
    paths = split_zip(tmp_path / "parts", members)
    monkeypatch.setattr(mpnet, "part_paths", lambda: paths)
    return paths


def test_the_parts_are_joined_into_a_verified_folder(parts: list[Path], tmp_path: Path) -> None:
    folder = prepare_mpnet(tmp_path / "cache")
    assert folder == tmp_path / "cache" / "models" / "all-mpnet-base-v2"
    built = {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    assert {name: data for name, data in built.items() if name != "checksums.json"} == FILES  # no desktop.ini, no zip
    assert set(json.loads(built["checksums.json"])["files"]) == set(FILES)
    assert model_cache.verified(folder, mpnet.BUILD_VERSION, deep=True)
    assert sorted(p.name for p in folder.parent.iterdir()) == [".all-mpnet-base-v2.lock", "all-mpnet-base-v2"]
    assert not model_needs_prefixes(str(folder))


def test_a_damaged_part_fails_the_build_and_leaves_nothing(parts: list[Path], tmp_path: Path) -> None:
    damaged = bytearray(parts[0].read_bytes())
    damaged[200] ^= 0xFF  # inside the first file's compressed data
    parts[0].write_bytes(bytes(damaged))
    with pytest.raises(MissingAssetsError, match="do not join into its folder.*reinstall them"):
        prepare_mpnet(tmp_path / "cache")
    assert [p.name for p in (tmp_path / "cache" / "models").iterdir()] == [".all-mpnet-base-v2.lock"]


def test_a_member_outside_the_folder_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    members = {f"all-mpnet-base-v2/{name}": data for name, data in FILES.items()}
    members["all-mpnet-base-v2/../../escaped.txt"] = b"x"
    paths = split_zip(tmp_path, members)
    monkeypatch.setattr(mpnet, "part_paths", lambda: paths)
    with pytest.raises(MissingAssetsError, match="outside the model folder"):
        prepare_mpnet(tmp_path / "cache")
    assert not list(tmp_path.rglob("escaped.txt"))


def test_missing_packages_say_how_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def not_installed(name: str) -> None:
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(mpnet.importlib.metadata, "distribution", not_installed)
    monkeypatch.setenv("DESKBOT_CACHE", str(tmp_path))
    with pytest.raises(MissingAssetsError, match="make mpnet"):
        prepare_mpnet()
    with pytest.raises(ModelLoadError, match="base model 'mpnet': The all-mpnet-base-v2 model needs"):
        train_classifier(["where is my refund", "hello"], ["refund", "greet"], "mpnet")
    result = CliRunner().invoke(cli, ["model", "prepare", "mpnet"])
    assert result.exit_code == 1 and result.output.startswith("Error: The all-mpnet-base-v2 model needs")
    assert "Traceback" not in result.output and not (tmp_path / "models" / "all-mpnet-base-v2").exists()


# The real packages.


def test_the_real_parts_build_a_sentence_encoder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from sentence_transformers import SentenceTransformer

    monkeypatch.setenv("DESKBOT_CACHE", str(tmp_path))
    folder = Path(resolve_model("mpnet"))
    assert folder == tmp_path / "models" / "all-mpnet-base-v2" and resolve_model("All-MPNet-Base-v2") == str(folder)
    assert model_cache.verified(folder, mpnet.BUILD_VERSION, deep=True)
    encoder = SentenceTransformer(str(folder), device="cpu", local_files_only=True)
    assert encoder.get_embedding_dimension() == 768
    refund, paraphrase, weather = encoder.encode(
        ["Where is my refund?", "I am still waiting for my money back", "It is sunny in the park today"],
        normalize_embeddings=True)
    assert refund @ paraphrase > refund @ weather + 0.2
