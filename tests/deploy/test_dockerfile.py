"""The Dockerfile, checked without Docker (there is none here, and the base image's registry is
out of reach): a pinned base on the Python the tests run on, the non-root numeric user the
chart runs as, `escalator` as the entrypoint, the chart's ports, and a package built from
exactly the build context the Dockerfile copies that holds, and finds once installed outside
the source tree, its data files (board page, Avro schemas, default policy).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.chart import ALL_ON, CHART, REPO_DIR, containers, workloads
from tests.support.compiled import compiled_module_names

DOCKERFILE = REPO_DIR / "Dockerfile"
PACKAGES = ("streams", "connectors", "schemas")


@dataclass
class Stage:
    image: str
    name: str | None
    steps: list[tuple[str, str]] = field(default_factory=list)

    def all(self, instruction: str) -> list[str]:
        return [rest for ins, rest in self.steps if ins == instruction]

    def last(self, instruction: str) -> str:
        found = self.all(instruction)
        assert found, f"stage {self.name or self.image} has no {instruction}"
        return found[-1]


def parse_dockerfile(text: str) -> tuple[dict[str, str], list[Stage]]:
    """Global ARG defaults and the stages, with ${ARG} substituted in FROM."""
    logical: list[str] = []
    pending = ""
    for line in text.splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in logical:
        instruction, _, rest = line.strip().partition(" ")
        instruction, rest = instruction.upper(), rest.strip()
        if instruction == "FROM":
            words = re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: args[m[1] or m[2]], rest).split()
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            stages.append(Stage(words[0], name))
        elif instruction == "ARG" and not stages:
            key, _, default = rest.partition("=")
            args[key] = default
        else:
            assert stages, f"{instruction} before the first FROM"
            stages[-1].steps.append((instruction, rest))
    return args, stages


@pytest.fixture(scope="module")
def stages() -> list[Stage]:
    return parse_dockerfile(DOCKERFILE.read_text("utf-8"))[1]


@pytest.fixture(scope="module")
def pyproject() -> dict[str, Any]:
    return tomllib.loads((REPO_DIR / "pyproject.toml").read_text("utf-8"))


def chart_values() -> dict[str, Any]:
    return dict(yaml.safe_load((CHART / "values.yaml").read_text("utf-8")))


def test_parser_reads_stages() -> None:
    text = "# c\nARG BASE=python:3.11.9-slim\nFROM ${BASE} AS b\nRUN a \\\n  && b\n"
    args, parsed = parse_dockerfile(text + "FROM $BASE\nUSER 1\n")
    assert args == {"BASE": "python:3.11.9-slim"}
    assert [(s.image, s.name) for s in parsed] == [
        ("python:3.11.9-slim", "b"),
        ("python:3.11.9-slim", None),
    ]
    assert parsed[0].steps == [("RUN", "a    && b")]


def test_base_image_is_pinned_to_the_tested_python(stages: list[Stage], pyproject: Any) -> None:
    assert len(stages) >= 2, "multi-stage: a builder and a runtime stage"
    images = {s.image for s in stages if not any(s.image == o.name for o in stages)}
    assert len(images) == 1, f"every stage on the same base (the venv moves between them): {images}"
    (image,) = images
    digest = re.fullmatch(r"[\w./-]+(:[\w.-]+)?@sha256:[0-9a-f]{64}", image)
    version = re.fullmatch(r"python:(\d+)\.(\d+)\.(\d+)-[a-z]+(-[a-z]+)?", image)
    assert digest or version, f"{image}: pin an exact version or a digest"
    if version:
        minor = (int(version[1]), int(version[2]))
        assert minor == sys.version_info[:2], (
            f"{image} runs Python {minor}, the tests run on {sys.version_info[:2]}"
        )
        required = re.fullmatch(r">=(\d+)\.(\d+)", pyproject["project"]["requires-python"])
        assert required and minor >= (int(required[1]), int(required[2]))


def test_runs_as_the_numeric_non_root_user_of_the_chart(stages: list[Stage]) -> None:
    runtime = stages[-1]
    user = runtime.last("USER")
    match = re.fullmatch(r"(\d+):(\d+)", user)
    assert match, f"USER {user}: numeric uid:gid (runAsNonRoot can only verify a number)"
    uid, gid = int(match[1]), int(match[2])
    assert uid != 0 and gid != 0
    values = chart_values()
    pod, container = values["podSecurityContext"], values["securityContext"]
    assert (pod["runAsUser"], pod["runAsGroup"], pod["fsGroup"]) == (uid, gid, gid)
    assert (container["runAsUser"], container["runAsGroup"]) == (uid, gid)
    assert pod["runAsNonRoot"] and container["runAsNonRoot"]
    run = " ".join(runtime.all("RUN"))
    assert f"--uid {uid}" in run and f"--gid {gid}" in run
    # the workers' state directory exists and belongs to that user (the volume mounts there)
    env = dict(re.findall(r"(\w+)=(\S+)", " ".join(runtime.all("ENV"))))
    assert env["ESCALATOR_DATA_DIR"] == values["worker"]["dataDir"]
    assert f"chown {uid}:{gid} {values['worker']['dataDir']}" in run


def test_entrypoint_is_the_escalator_command(stages: list[Stage], pyproject: Any) -> None:
    runtime = stages[-1]
    assert json.loads(runtime.last("ENTRYPOINT")) == ["escalator"]
    assert pyproject["project"]["scripts"]["escalator"] == "streams.cli.main:main"
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text("utf-8"))
    assert chart["appVersion"] == pyproject["project"]["version"]  # the default image tag
    assert chart_values()["image"]["tag"] == ""  # ... unless pinned otherwise
    builder_run = " ".join(stages[0].all("RUN"))
    assert "escalator --help" in builder_run  # the build fails if the command does not start


def test_exposes_the_ports_of_the_chart(stages: list[Stage], render: Any) -> None:
    exposed = {int(p) for rest in stages[-1].all("EXPOSE") for p in rest.split()}
    declared = {
        p["containerPort"]
        for work in workloads(render(ALL_ON))
        for c in containers(work)
        for p in c["ports"]
    }
    assert exposed == declared


# ---- the package in the image ----------------------------------------------------------------


def _pattern(pattern: str) -> re.Pattern[str]:
    """A .dockerignore pattern (Go filepath.Match plus **) as a regex on relative paths."""
    out = ""
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(out)


def in_context(relative: str, rules: list[tuple[bool, re.Pattern[str]]]) -> bool:
    """Is the file sent to the build? The last matching rule decides; a rule that matches a
    parent directory matches the file."""
    parts = relative.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    keep = True
    for negated, regex in rules:
        if any(regex.fullmatch(p) for p in prefixes):
            keep = negated
    return keep


def dockerignore_rules() -> list[tuple[bool, re.Pattern[str]]]:
    rules = []
    for line in (REPO_DIR / ".dockerignore").read_text("utf-8").splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            negated = line.startswith("!")
            rules.append((negated, _pattern(line.lstrip("!").strip("/"))))
    return rules


def test_dockerignore_rules() -> None:
    rules = [(False, _pattern("*")), (True, _pattern("src")), (False, _pattern("**/*.pyc"))]
    assert in_context("src/a/b.py", rules)
    assert not in_context("src/a/b.pyc", rules)
    assert not in_context("tests/x.py", rules)


def build_context(stages: list[Stage], into: Path) -> Path:
    """What the builder stage sees in WORKDIR after its COPY instructions."""
    rules = dockerignore_rules()
    builder = stages[0]
    workdir = into / builder.last("WORKDIR").lstrip("/")
    for rest in builder.all("COPY"):
        words = shlex.split(rest)
        assert not any(w.startswith("--") for w in words), f"COPY {rest}: a flag in the builder"
        *sources, dest = words
        for source in sources:
            base = REPO_DIR / source
            files = [base] if base.is_file() else [p for p in base.rglob("*") if p.is_file()]
            for path in files:
                relative = path.relative_to(REPO_DIR).as_posix()
                if not in_context(relative, rules):
                    continue
                if dest.endswith("/"):
                    target = workdir / dest / path.relative_to(base.parent)
                else:
                    target = workdir / dest / path.relative_to(base)
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, target)
    return workdir


def package_files() -> set[str]:
    """Every file of the packages in the source tree (code and data)."""
    return {
        p.relative_to(REPO_DIR).as_posix()
        for package in PACKAGES
        for p in (REPO_DIR / package).rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"
    }


def pip(*args: str, env: dict[str, str] | None = None) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "-q", *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
        env=None if env is None else {**os.environ, **env},
    )
    assert proc.returncode == 0, f"pip {' '.join(args)}:\n{proc.stderr[-5000:]}"


def wheel_build_env(stages: list[Stage]) -> dict[str, str]:
    """The variables the builder's RUN sets on its `pip wheel` command."""
    (command,) = [r for r in stages[0].all("RUN") if "pip wheel" in r]
    before = command.split("python -m pip wheel", 1)[0].split("&&")[-1]
    return dict(re.findall(r"(\w+)=(\S+)", before))


@pytest.fixture(scope="module")
def wheel(stages: list[Stage], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel the builder stage builds (`pip wheel --no-deps .` in its WORKDIR, with its
    variables: the engine compiled by mypyc). Without build isolation, so it needs no
    network: the virtualenv's setuptools and mypy build it."""
    root = tmp_path_factory.mktemp("image")
    source = build_context(stages, root / "fs")
    out = root / "wheels"
    pip("wheel", "--no-deps", "--no-build-isolation", "--wheel-dir", str(out), str(source),
        env=wheel_build_env(stages))  # fmt: skip
    (built,) = out.glob("escalator-*.whl")
    return built


def test_wheel_holds_every_package_file(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    missing = sorted(package_files() - names)
    assert not missing, f"not in the image's package: {missing}"
    for needed in (
        "streams/tools/board_page/index.html",
        "streams/sla/default_policy.yaml",
        "schemas/TicketEvent.avsc",
        "schemas/history/TicketEvent.v1.avsc",
        "schemas/ids.json",
    ):
        assert needed in names
    entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    text = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert re.search(r"^escalator = streams\.cli\.main:main$", text, re.M)


def run_installed(
    wheel: Path, tmp_path: Path, script: str
) -> tuple[Path, subprocess.CompletedProcess[str]]:
    """Install the wheel into a directory of its own and run `script` (given that directory
    as its argument) outside the repository, so nothing is found relative to the checkout;
    fails on a non-zero exit."""
    target = tmp_path / "site"
    pip("install", "--no-deps", "--no-compile", "--target", str(target), str(wheel))
    run = tmp_path / "run"
    run.mkdir()
    proc = subprocess.run(
        [sys.executable, "-c", script, str(target)],
        cwd=run,
        env={"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return target, proc


INSTALLED_CHECK = """
import json, sys
from pathlib import Path
import connectors, schemas, streams
from schemas.codec import SCHEMA_DIR, codec_for, load_ids
from streams.tools.board_web import PAGE_DIR, STATIC
from streams.cli.main import main
from streams.sla.policy import load_policy

where = Path(sys.argv[1])
assert all(Path(m.__file__).is_relative_to(where) for m in (connectors, schemas, streams))
pages = {name: len((PAGE_DIR / name).read_bytes()) for name in STATIC.values()}
codecs = [codec_for(name).__class__.__name__ for name in load_ids()]
policy = load_policy(None)
code = main(["policy", "check", "default"])
print(json.dumps({"pages": pages, "codecs": len(codecs), "schema_dir": str(SCHEMA_DIR),
                  "policies": len(policy.sla_policies), "code": code}))
"""


def test_installed_package_finds_its_data_outside_the_source_tree(
    wheel: Path, tmp_path: Path
) -> None:
    target, proc = run_installed(wheel, tmp_path, INSTALLED_CHECK)
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["code"] == 0
    assert all(size > 0 for size in report["pages"].values()), report
    assert set(report["pages"]) == {"index.html", "board.css", "board.js"}
    assert report["codecs"] == len(json.loads((REPO_DIR / "schemas" / "ids.json").read_text()))
    assert Path(report["schema_dir"]).is_relative_to(target)
    assert report["policies"] > 0


COMPILED_CHECK = """
import json
from streams.cli.main import main
from streams.cli.version import compiled_modules, engine_compiled
code = main(["version", "--expect-compiled"])
print(json.dumps({"code": code, "modules": compiled_modules(), "engine": engine_compiled()}))
"""


def test_the_images_engine_is_compiled(stages: list[Stage], wheel: Path, tmp_path: Path) -> None:
    """The builder compiles every module of pyproject's compiled-modules (the worker is
    25-55% faster with them) and its build fails unless the installed engine imports
    compiled; no compiler reaches the runtime stage."""
    assert wheel_build_env(stages).get("ESCALATOR_COMPILE") == "mypyc"
    assert "escalator version --expect-compiled" in " ".join(stages[0].all("RUN"))
    assert "gcc" not in " ".join(stages[-1].all("RUN"))
    wanted = sorted(compiled_module_names())
    _, proc = run_installed(wheel, tmp_path, COMPILED_CHECK)
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["code"] == 0 and report["engine"] is True, proc.stdout
    assert report["modules"] == wanted
