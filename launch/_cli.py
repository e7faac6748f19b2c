"""What every launcher does with an error: the cause and the fix in a few lines, not a traceback.

`run(main)` replaces `absl.app.run(main)` (and first restarts the process with glibc's huge-page tunable,
`scaling_rec.host_memory.restart_with_huge_pages`). A config error met while the flags are parsed (a misspelled
`--config.*` key, a bad value, a missing experiment file or preset) and any error of the library
(scaling_rec.errors.ScalingRecError: bad data, a missing dataset, a corrupt checkpoint, ...) print

    error: <what was wrong, where>
    fix: <what to do>             (flag errors; the library's messages carry their own advice)
    (full traceback: --verbose or SCALING_REC_TRACEBACK=1)

on stderr and exit with EXIT_USER_ERROR (2). `--verbose`, or SCALING_REC_TRACEBACK=1 in the
environment, shows the full traceback as well. Anything else (a bug) keeps Python's traceback.
"""

from __future__ import annotations

import os
import re
import sys
import traceback
from collections.abc import Callable
from typing import Any, NoReturn

from absl import app, flags

from scaling_rec import host_memory
from scaling_rec.errors import ScalingRecError

EXIT_USER_ERROR = 2  # the input (flags, config, data, run directory) is wrong; the message says how
TRACEBACK_ENV = "SCALING_REC_TRACEBACK"
_HINT = f"(full traceback: --verbose or {TRACEBACK_ENV}=1)"

_VERBOSE = flags.DEFINE_bool("verbose", False, f"Show full tracebacks of errors (also: {TRACEBACK_ENV}=1).")


def _wants_traceback(argv: list[str]) -> bool:
    """--verbose on the command line (read from argv: the flags may have failed to parse) or the env."""
    if os.environ.get(TRACEBACK_ENV, "") not in ("", "0"):
        return True
    return any(a in ("--verbose", "--verbose=true", "--verbose=True", "--verbose=1") for a in argv)


def _last_line(text: str) -> str:
    """The last non-empty line of `text` (a message that embeds a traceback ends with its cause)."""
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1] if lines else text.strip()


def _did_you_mean(e: BaseException) -> tuple[str, str] | None:
    """(wrong key, suggestion or '') of ml_collections' unknown-key error anywhere in e's chain."""
    while e is not None:
        text = str(e).encode().decode("unicode_escape") if "Did you mean" in str(e) else str(e)
        if isinstance(e, KeyError | AttributeError):
            m = re.search(r"'(\w+)'", text)
            if m:
                hint = re.search(r'Did you mean "(\w+)"', text)
                return m.group(1), hint.group(1) if hint else ""
        e = e.__cause__ or e.__context__
    return None


def _override_with(key: str, argv: list[str]) -> str:
    """The --config.* argument that names `key`, or ''."""
    for a in argv:
        path = a.split("=", 1)[0]
        if path.startswith("--config.") and key in path[len("--config."):].split("."):
            return a
    return ""


def flag_error_lines(e: BaseException, argv: list[str]) -> list[str]:
    """The lines printed for an error raised while the flags were parsed."""
    unknown = _did_you_mean(e)
    if unknown is not None:
        key, suggestion = unknown
        arg = _override_with(key, argv)
        where = arg.split("=", 1)[0][len("--config."):] if arg else key
        meant = ".".join(suggestion if part == key else part for part in where.split("."))
        fix = f"did you mean --config.{meant}?" if suggestion else "check the spelling."
        return [f"error: unknown config key {where!r} (in {arg or 'the flags'})",
                f"fix: {fix} The keys are those of the experiment's config (scaling_rec/config.py for "
                "HSTU/SASRec, ctr_config.py, tiger_config.py)."]
    cause = _last_line(str(e))
    if isinstance(e, flags.Error):
        head = str(e).strip().splitlines()[0].rstrip(":")
        return [f"error: {head}" + ("" if cause in head else f": {cause}"),
                "fix: correct that flag (--helpshort lists the flags)."]
    return [f"error: {type(e).__name__} while reading the flags: {cause}",
            "fix: check --config=<experiments/...py>:<preset> and the --config.* overrides."]


def _exit(lines: list[str], argv: list[str]) -> NoReturn:
    if _wants_traceback(argv):
        traceback.print_exc()
    else:
        lines = [*lines, _HINT]
    print("\n".join(lines), file=sys.stderr, flush=True)
    sys.exit(EXIT_USER_ERROR)


def _parse(argv: list[str]) -> list[str]:
    """absl's flag parsing, with its errors (and config-loading errors) reported in a few lines."""
    try:
        rest = flags.FLAGS(argv)
        for name in flags.FLAGS:  # ml_collections defers a config file's load error to the first access
            value = flags.FLAGS[name].value
            if type(value).__name__ == "_ErrorConfig":
                value.to_dict()
        return rest
    except Exception as e:  # anything raised while the config file or an override is read is the input's fault
        _exit(flag_error_lines(e, argv), argv)


def run(main: Callable[[list[str]], Any]) -> None:
    """absl.app.run(main) with the error reporting of the module docstring, in a process whose heap asks for
    transparent huge pages (it restarts itself first when it must: scaling_rec/host_memory.py)."""
    host_memory.restart_with_huge_pages()

    def guarded(argv: list[str]) -> Any:
        try:
            return main(argv)
        except ScalingRecError as e:
            _exit([f"error: {type(e).__name__}: {e}"], sys.argv)

    app.run(guarded, flags_parser=_parse)
