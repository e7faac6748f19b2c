#!/usr/bin/env bash
# Create or refresh .venv from requirements.txt; reinstall only when requirements.txt changed.
# Usage: source scripts/venv.sh   (activates the environment in the calling shell)
set -e
_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
_venv="${SCALING_REC_VENV:-$_root/.venv}"
_stamp="$_venv/.requirements.sha256"
_want="$(sha256sum "$_root/requirements.txt" | cut -d' ' -f1)"
if [ ! -x "$_venv/bin/python" ]; then
  echo "[venv] creating $_venv" >&2
  python3 -m venv "$_venv"
fi
if [ "$(cat "$_stamp" 2>/dev/null)" != "$_want" ]; then
  echo "[venv] installing requirements.txt into $_venv" >&2
  "$_venv/bin/python" -m pip install -q --disable-pip-version-check -r "$_root/requirements.txt"
  echo "$_want" > "$_stamp"
fi
# shellcheck disable=SC1091
source "$_venv/bin/activate"
set +e
