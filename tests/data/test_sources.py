"""Dataset look-up order, download into the cache (file:// zips) and the offline error."""

from __future__ import annotations

import dataclasses
import hashlib
import pathlib
import zipfile

import numpy as np
import pytest

from scaling_rec.data import sources
from scaling_rec.data.movielens import write_ml1m_ratings_dat
from scaling_rec.data.registry import load_sequences
from scaling_rec.data.sources import DATASETS, RemoteFile, locate
from scaling_rec.data.synthetic import synthetic_sequences
from scaling_rec.errors import ConfigError, DataFormatError, DataNotFoundError

UDATA = "1\t10\t5\t100\n1\t20\t3\t50\n2\t10\t4\t70\n"


@pytest.fixture(autouse=True)
def _isolated(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> pathlib.Path:
    """No test sees the real environment variables or writes to ~/.cache."""
    monkeypatch.delenv(sources.DATA_ENV, raising=False)
    monkeypatch.setenv(sources.CACHE_ENV, str(tmp_path / "cache"))
    return tmp_path


def _write(path: pathlib.Path, text: str) -> pathlib.Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def _zip(path: pathlib.Path, members: dict[str, bytes]) -> str:
    """Writes a zip archive; returns its md5."""
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return hashlib.md5(path.read_bytes()).hexdigest()


def _use_spec(monkeypatch: pytest.MonkeyPatch, name: str, remote: RemoteFile) -> None:
    monkeypatch.setitem(DATASETS, name, dataclasses.replace(DATASETS[name], files=(remote,)))


def test_unknown_dataset_lists_known_names() -> None:
    with pytest.raises(ConfigError, match="ml-100k"):
        load_sequences("ml-30m")


def test_lookup_order_data_dir_then_env_then_cache(tmp_path: pathlib.Path, monkeypatch) -> None:
    arg = _write(tmp_path / "arg" / "movielens-100k" / "u.data", UDATA)
    env = _write(tmp_path / "env" / "movielens-100k" / "u.data", UDATA)
    cached = _write(tmp_path / "cache" / "movielens-100k" / "u.data", UDATA)
    monkeypatch.setenv(sources.DATA_ENV, str(tmp_path / "env"))
    assert locate("ml-100k", tmp_path / "arg", download=False)["u.data"] == arg
    assert locate("ml-100k", None, download=False)["u.data"] == env
    monkeypatch.delenv(sources.DATA_ENV)
    assert locate("ml-100k", None, download=False)["u.data"] == cached


def test_an_explicit_data_dir_is_the_only_place_looked_at(tmp_path: pathlib.Path, monkeypatch) -> None:
    """A wrong data_dir is an error, never a fall-back to $SCALING_REC_DATA or the cache (issue 14, 2)."""
    _write(tmp_path / "env" / "movielens-100k" / "u.data", UDATA)
    _write(tmp_path / "cache" / "movielens-100k" / "u.data", UDATA)
    monkeypatch.setenv(sources.DATA_ENV, str(tmp_path / "env"))
    with pytest.raises(DataNotFoundError) as err:
        locate("ml-100k", tmp_path / "nowhere")
    assert str(err.value).startswith(f"data_dir {tmp_path / 'nowhere'} does not exist (data.data_dir;")
    assert "movielens-100k/u.data" in str(err.value) and "leave data.data_dir empty" in str(err.value)
    (tmp_path / "other").mkdir()
    with pytest.raises(DataNotFoundError, match="has no movielens-100k/ with the dataset's files"):
        load_sequences("ml-100k", tmp_path / "other")


def test_alias_folder_is_accepted(tmp_path: pathlib.Path) -> None:
    path = _write(tmp_path / "d" / "ml-100k" / "u.data", UDATA)
    assert locate("ml-100k", tmp_path / "d", download=False)["u.data"] == path


def test_download_zip_member_via_file_url(tmp_path: pathlib.Path, monkeypatch) -> None:
    archive = tmp_path / "ml-100k.zip"
    md5 = _zip(archive, {"ml-100k/u.data": UDATA.encode(), "ml-100k/u.item": b"x"})
    _use_spec(monkeypatch, "ml-100k", RemoteFile("u.data", archive.as_uri(), "ml-100k/u.data", md5=md5))
    data = load_sequences("ml-100k", timeout_s=1.0)
    assert (data.num_users, data.num_items, data.num_events) == (2, 2, 3)
    folder = tmp_path / "cache" / "movielens-100k"
    # no archive, no temp files left; the download record beside the file (provenance reads it)
    assert sorted(p.name for p in folder.iterdir()) == ["u.data", "u.data" + sources.DOWNLOAD_RECORD_SUFFIX]
    assert (folder / "u.data").read_text() == UDATA
    archive.unlink()  # found in the cache next time, no download
    assert load_sequences("ml-100k", download=False).num_events == 3


def test_download_plain_file_checks_md5(tmp_path: pathlib.Path, monkeypatch) -> None:
    src = _write(tmp_path / "remote" / "Beauty.txt", "1 1 2 3\n2 2 3\n")
    good = hashlib.md5(src.read_bytes()).hexdigest()
    _use_spec(monkeypatch, "amazon-beauty", RemoteFile("Beauty.txt", src.as_uri(), md5="0" * 32))
    with pytest.raises(DataFormatError, match="md5"):
        load_sequences("amazon-beauty")
    assert not list((tmp_path / "cache" / "amazon-beauty-s3rec").iterdir())  # nothing half-written
    _use_spec(monkeypatch, "amazon-beauty", RemoteFile("Beauty.txt", src.as_uri(), md5=good))
    data = load_sequences("amazon-beauty")
    np.testing.assert_array_equal(data.items, [1, 2, 3, 2, 3])


def test_archive_without_member_is_a_format_error(tmp_path: pathlib.Path, monkeypatch) -> None:
    archive = tmp_path / "ml-1m.zip"
    _zip(archive, {"ml-1m/movies.dat": b"1::Toy Story::Comedy\n"})
    _use_spec(monkeypatch, "ml-1m", RemoteFile("ratings.dat", archive.as_uri(), "ml-1m/ratings.dat"))
    with pytest.raises(DataFormatError, match="ml-1m/ratings.dat"):
        load_sequences("ml-1m")


def test_ml1m_through_download_of_written_ratings(tmp_path: pathlib.Path, monkeypatch) -> None:
    synth = synthetic_sequences(50, 40, with_timestamps=True, with_ratings=True, seed=3)
    write_ml1m_ratings_dat(tmp_path / "ratings.dat", synth, shuffle_seed=0)
    archive = tmp_path / "ml-1m.zip"
    _zip(archive, {"ml-1m/ratings.dat": (tmp_path / "ratings.dat").read_bytes()})
    _use_spec(monkeypatch, "ml-1m", RemoteFile("ratings.dat", archive.as_uri(), "ml-1m/ratings.dat"))
    data = load_sequences("ml-1m")
    assert data.num_users == 50 and data.num_events == synth.num_events
    np.testing.assert_array_equal(data.lengths(), synth.lengths())


def test_offline_error_lists_every_place_and_the_url(tmp_path: pathlib.Path, monkeypatch) -> None:
    unreachable = "http://127.0.0.1:9/datasets/ml-1m.zip"  # connection refused at once
    _use_spec(monkeypatch, "ml-1m", RemoteFile("ratings.dat", unreachable, "ml-1m/ratings.dat"))
    monkeypatch.setenv(sources.DATA_ENV, str(tmp_path / "env-dir"))
    with pytest.raises(DataNotFoundError) as err:
        load_sequences("ml-1m", timeout_s=1.0)
    msg = str(err.value)
    for place in ("env-dir", str(tmp_path / "cache"), unreachable, "movielens-1m/ratings.dat"):
        assert place in msg, msg
    assert "download into" in msg and "SCALING_REC_DATA" in msg and "ml-1m/ratings.dat" in msg
    assert not (tmp_path / "cache" / "movielens-1m" / "ratings.dat").exists()


def test_no_download_when_disabled(tmp_path: pathlib.Path) -> None:
    with pytest.raises(DataNotFoundError, match="download=False"):
        load_sequences("ml-20m", download=False)


def test_registry_names_and_sources() -> None:
    assert {"amazon-beauty", "amazon-toys", "ml-100k", "ml-1m", "ml-20m", "ml-latest-small"} <= set(DATASETS)
    assert DATASETS["ml-1m"].files[0].member == "ml-1m/ratings.dat"
    assert DATASETS["amazon-toys"].folder == "amazon-toys-s3rec"
    assert DATASETS["ml-20m"].files[0].url.endswith("ml-20m.zip")
