"""The launchers' error reporting (launch/_cli.py): a rejected input prints the cause and the fix in a
few lines, exits 2 and leaves nothing on disk; --verbose or SCALING_REC_TRACEBACK=1 adds the traceback."""

from __future__ import annotations

import pathlib

import pytest

from tests.sweep.helpers import TINY, launch


def _lines(text: str) -> list[str]:
    return [ln for ln in text.splitlines() if ln.strip()]


def test_misspelled_key_is_three_lines_with_the_fix(tmp_path):
    proc = launch("launch.train", f"--config={TINY}:one", f"--workdir={tmp_path / 'w'}",
                  "--config.train.learnin_rate=1")
    assert proc.returncode == 2
    assert _lines(proc.stderr) == [
        "error: unknown config key 'train.learnin_rate' (in --config.train.learnin_rate=1)",
        "fix: did you mean --config.train.learning_rate? The keys are those of the experiment's config "
        "(scaling_rec/config.py for HSTU/SASRec, ctr_config.py, tiger_config.py).",
        "(full traceback: --verbose or SCALING_REC_TRACEBACK=1)",
    ]
    assert not (tmp_path / "w").exists()


@pytest.mark.parametrize("module", ["launch.train", "launch.sweep"])
def test_misspelled_section_and_bad_value_and_missing_file(tmp_path, module):
    workdir = f"--workdir={tmp_path / 'w'}"
    section = launch(module, f"--config={TINY}:one", workdir, "--config.trian.batch_size=8")
    assert section.returncode == 2 and len(_lines(section.stderr)) == 3
    assert "did you mean --config.train.batch_size?" in section.stderr
    value = launch(module, f"--config={TINY}:one", workdir, "--config.train.learning_rate=abc")
    assert value.returncode == 2 and len(_lines(value.stderr)) == 3
    assert "--config.train.learning_rate=abc: could not convert string to float: 'abc'" in value.stderr
    missing = launch(module, "--config=experiments/nope.py:x", workdir)
    assert missing.returncode == 2 and len(_lines(missing.stderr)) == 3
    assert "No such file or directory: 'experiments/nope.py'" in missing.stderr
    assert not (tmp_path / "w").exists()


def test_library_error_is_one_line_and_verbose_shows_the_traceback(tmp_path):
    """A config the schema rejects: one ConfigError line plus the hint; no .jax_cache/, no lock file."""
    args = (f"--config={TINY}:one", f"--workdir={tmp_path / 'w'}", "--config.train.learning_rate=-1")
    proc = launch("launch.train", *args)
    assert proc.returncode == 2
    assert _lines(proc.stderr) == ["error: ConfigError: config key 'train.learning_rate' = -1.0 must be > 0.",
                                   "(full traceback: --verbose or SCALING_REC_TRACEBACK=1)"]
    assert not (tmp_path / "w").exists()
    verbose = launch("launch.train", *args, "--verbose")
    assert verbose.returncode == 2 and "Traceback (most recent call last)" in verbose.stderr
    assert len(_lines(verbose.stderr)) > 10


def test_analyze_rejects_a_missing_study_and_never_leaves_out_behind(tmp_path: pathlib.Path):
    missing = launch("launch.analyze", f"--workdir={tmp_path / 'nope'}", f"--out={tmp_path / 'out'}")
    assert missing.returncode == 2 and len(_lines(missing.stderr)) == 3
    assert "the study directory does not exist" in missing.stderr
    (tmp_path / "empty" / "runs").mkdir(parents=True)
    empty = launch("launch.analyze", f"--workdir={tmp_path / 'empty'}", f"--out={tmp_path / 'out'}",
                   "--n_boot=0")
    assert empty.returncode != 0
    assert not (tmp_path / "out").exists()


def test_a_missing_data_dir_is_one_named_error_and_no_fall_back(tmp_path):
    """data.data_dir that does not exist: DataNotFoundError in one line (exit 2), nothing trained or written,
    even though $SCALING_REC_DATA or the cache may hold the dataset (issue 14, finding 2)."""
    proc = launch("launch.train", f"--config={TINY}:one", f"--workdir={tmp_path / 'w'}",
                  "--config.data.name=ml-100k", f"--config.data.data_dir={tmp_path / 'nope'}")
    assert proc.returncode == 2
    assert _lines(proc.stderr) == [
        f"error: DataNotFoundError: data_dir {tmp_path / 'nope'} does not exist (data.data_dir; 'ml-100k' needs "
        "movielens-100k/u.data under it). Fix the path, or leave data.data_dir empty to use $SCALING_REC_DATA, "
        "the cache or a download.",
        "(full traceback: --verbose or SCALING_REC_TRACEBACK=1)"]
    assert not (tmp_path / "w").exists()
