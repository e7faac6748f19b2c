"""Which data a run read (issue 14, finding 2): a wrong data_dir is an error, every data file read is
recorded with path, size and SHA-256 for every family, and the data's content identity enters the run id
(a copy keeps the id, other data gets a new one, canonical data keeps the ids made before)."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import pathlib
import shutil
import zipfile

import numpy as np
import pytest

from scaling_rec import config as config_lib
from scaling_rec import ctr_config, provenance, tiger_config
from scaling_rec.data import sources
from scaling_rec.data.synthetic import synthetic_sequences
from scaling_rec.errors import DataNotFoundError
from scaling_rec.train.loop import train_and_evaluate
from tests.train._tiny import tiny_config


@pytest.fixture(autouse=True)
def _isolated(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(sources.DATA_ENV, raising=False)
    monkeypatch.setenv(sources.CACHE_ENV, str(tmp_path / "cache"))
    provenance._SHA_MEMO.clear()


def _udata(root: pathlib.Path, seed: int = 0) -> pathlib.Path:
    """A small ML-100K-form u.data (user, item, rating, time; tab separated) under root/movielens-100k/."""
    data = synthetic_sequences(300, 60, with_timestamps=True, with_ratings=True, seed=seed)
    rows = np.stack([data.user_of_event() + 1, data.items, data.ratings.astype(np.int64), data.timestamps], 1)
    path = root / "movielens-100k" / "u.data"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join("\t".join(map(str, r)) + "\n" for r in rows.tolist()))
    return path


def _ml100k_config(data_dir: pathlib.Path):
    c = tiny_config(num_steps=4, eval_every=4, checkpoint_every=0)
    c.data.name, c.data.data_dir = "ml-100k", str(data_dir)
    return c


def _id_without_data_identity(config, monkeypatch) -> str:
    """The run id as computed before data identities existed (no data file enters it)."""
    with monkeypatch.context() as m:
        m.setattr(provenance, "data_files", lambda config: [])
        return config_lib.run_id(config)


def test_checksums_are_cached_by_path_size_and_mtime(tmp_path):
    path = tmp_path / "f.txt"
    path.write_text("abc")
    want = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"  # sha256("abc")
    assert provenance.file_sha256(path) == want
    assert len(list((tmp_path / "cache" / "sha256").iterdir())) == 1  # on disk for the next process
    provenance._SHA_MEMO.clear()
    assert provenance.file_sha256(path) == want
    path.write_text("abd")
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))
    assert provenance.file_sha256(path) != want


def test_the_run_id_follows_the_content_not_the_path(tmp_path, monkeypatch):
    original = _udata(tmp_path / "a")
    shutil.copytree(tmp_path / "a", tmp_path / "copy")
    _udata(tmp_path / "other", seed=1)
    ids = {d: config_lib.run_id(_ml100k_config(tmp_path / d)) for d in ("a", "copy", "other")}
    assert ids["a"] == ids["copy"] != ids["other"]
    assert ids["a"] != _id_without_data_identity(_ml100k_config(tmp_path / "a"), monkeypatch)
    # the canonical copy keeps the id it had before data identities existed
    monkeypatch.setitem(sources.CANONICAL_SHA256, "movielens-100k/u.data", provenance.file_sha256(original))
    assert config_lib.run_id(_ml100k_config(tmp_path / "a")) == _id_without_data_identity(
        _ml100k_config(tmp_path / "a"), monkeypatch)
    with pytest.raises(DataNotFoundError, match="does not exist"):
        config_lib.run_id(_ml100k_config(tmp_path / "nowhere"))


def test_data_files_of_every_family(tmp_path):
    u = _udata(tmp_path / "d")
    assert provenance.data_files(_ml100k_config(tmp_path / "d")) == [u]
    synthetic = tiny_config()
    assert provenance.data_files(synthetic) == [] and provenance.data_identity([]) is None

    ctr = ctr_config.default_config()
    ctr.data.name, ctr.data.path = "criteo", str(tmp_path / "criteo.txt")
    (tmp_path / "criteo.txt").write_text("label\n")
    assert provenance.data_files(ctr) == [tmp_path / "criteo.txt"]
    ctr.data.name, ctr.data.path, ctr.data.data_dir = "frappe", "", str(tmp_path / "nowhere")
    with pytest.raises(DataNotFoundError, match="does not exist"):
        provenance.data_files(ctr)

    tiger = tiger_config.default_config()
    root = tmp_path / "t"
    names = ["amazon-beauty-s3rec/Beauty.txt", "amazon-beauty-s3rec/Beauty_item2attributes.json",
             "amazon-beauty-s3rec/p5_asin/user_sequence.txt", "amazon-beauty-meta/item_id_to_int.json",
             "amazon-beauty-meta/products_lookup.csv"]
    for name in names:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(name)
    tiger.data.data_dir = str(root)
    assert provenance.data_files(tiger) == [root / n for n in names]
    fields = provenance.data_provenance(tiger)
    assert [r["path"] for r in fields["data_files"]] == [str((root / n).resolve()) for n in names]
    assert fields["data_files"][0]["size_bytes"] == len(names[0]) and len(fields["data_identity"]) == 64


@pytest.mark.slow
def test_result_json_records_every_file_read(tmp_path):
    u = _udata(tmp_path / "d")
    result = train_and_evaluate(_ml100k_config(tmp_path / "d"), tmp_path / "w")
    assert result["status"] == "ok"
    assert result["data_files"] == [{"path": str(u.resolve()), "size_bytes": u.stat().st_size,
                                     "sha256": provenance.file_sha256(u)}]
    assert result["data_identity"] == provenance.data_identity([u])


def test_a_file_is_canonical_only_as_itself(tmp_path, monkeypatch):
    # Beauty's canonical bytes saved as the Toys file are other data: the old check asked only whether every
    # checksum was one of the canonical values, so they got the canonical Toys run id.
    toys = tmp_path / "amazon-toys-s3rec" / "Toys_and_Games.txt"
    toys.parent.mkdir(parents=True)
    toys.write_text("1 2 3\n")
    monkeypatch.setitem(sources.CANONICAL_SHA256, "amazon-beauty-s3rec/Beauty.txt", provenance.file_sha256(toys))
    assert provenance.data_identity([toys]) is not None
    monkeypatch.setitem(sources.CANONICAL_SHA256, "amazon-toys-s3rec/Toys_and_Games.txt",
                        provenance.file_sha256(toys))
    assert provenance.data_identity([toys]) is None
    elsewhere = tmp_path / "renamed" / "Toys_and_Games.txt"  # not where the registry keeps it
    elsewhere.parent.mkdir()
    shutil.copy(toys, elsewhere)
    assert provenance.data_identity([elsewhere]) is not None


def _fake_ml1m(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch, content: str = "1::2::5::978300760\n"):
    """Registers ml-1m as a local zip (file:// URL) with its md5 pinned, as the real entry pins the archive's."""
    archive = tmp_path / "src" / "ml-1m.zip"
    archive.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("ml-1m/ratings.dat", content)
    md5 = hashlib.md5(archive.read_bytes()).hexdigest()
    spec = sources.DatasetSpec("ml-1m", "movielens-1m", (sources.RemoteFile(
        "ratings.dat", archive.as_uri(), "ml-1m/ratings.dat", md5=md5),), "ml-1m", aliases=("ml-1m",))
    monkeypatch.setitem(sources.DATASETS, "ml-1m", spec)
    return spec


def _ml1m_config():
    c = tiny_config(num_steps=4, eval_every=4, checkpoint_every=0)
    c.data.name, c.data.data_dir = "ml-1m", ""
    return c


def test_the_run_id_is_the_same_before_and_after_the_first_download(tmp_path, monkeypatch):
    # ml-1m has no CANONICAL_SHA256 entry: before the download data_files is [] (no identity), after it the
    # cached file gave one, so a study's run ids changed once its data was fetched.
    spec = _fake_ml1m(tmp_path, monkeypatch)
    before = config_lib.run_id(_ml1m_config())
    assert provenance.data_files(_ml1m_config()) == []
    path = sources.locate("ml-1m")["ratings.dat"]
    assert provenance.data_files(_ml1m_config()) == [path]
    assert config_lib.run_id(_ml1m_config()) == before
    # a copy the registry's present pins did not fetch is other data
    monkeypatch.setitem(sources.DATASETS, "ml-1m", dataclasses.replace(
        spec, files=(dataclasses.replace(spec.files[0], md5="0" * 32),)))
    assert config_lib.run_id(_ml1m_config()) != before
    monkeypatch.setitem(sources.DATASETS, "ml-1m", spec)
    assert config_lib.run_id(_ml1m_config()) == before
    # and so is the downloaded file changed in place
    path.write_text("1::3::5::978300760\n")
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))
    assert config_lib.run_id(_ml1m_config()) != before


def test_a_frappe_run_id_needs_no_data_on_the_machine(tmp_path, monkeypatch):
    # ctr.source_file raised DataNotFoundError for the default place, so a clone without ../shared/data could
    # not even expand a Frappe sweep; an explicit data_dir that does not exist still raises.
    (tmp_path / "empty").mkdir()
    monkeypatch.setenv(sources.DATA_ENV, str(tmp_path / "empty"))
    ctr = ctr_config.default_config()
    ctr.data.name, ctr.data.path, ctr.data.data_dir = "frappe", "", ""
    assert provenance.data_files(ctr) == []
    assert len(config_lib.run_id(ctr)) == 12
    ctr.data.data_dir = str(tmp_path / "nowhere")
    with pytest.raises(DataNotFoundError, match="does not exist"):
        config_lib.run_id(ctr)
