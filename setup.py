"""Optional compiled build: `ESCALATOR_COMPILE=mypyc` compiles the modules listed under
[tool.escalator] compiled-modules in pyproject.toml with mypyc (mypy and a C compiler
needed at build time, e.g. `pip install --no-build-isolation .` from the dev venv); without
it the package is plain Python, as every editable install is. The metadata is in
pyproject.toml."""

import os
import sys
import tomllib

from setuptools import setup

ext_modules = []
mode = os.environ.get("ESCALATOR_COMPILE", "")
if mode == "mypyc":
    from mypyc.build import mypycify

    with open("pyproject.toml", "rb") as f:
        modules = tomllib.load(f)["tool"]["escalator"]["compiled-modules"]
    ext_modules = mypycify(modules, opt_level="3")
elif mode:
    sys.exit(f"setup.py: ESCALATOR_COMPILE={mode!r}: the only compiled build is 'mypyc'")

setup(ext_modules=ext_modules)
