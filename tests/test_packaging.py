"""The package's metadata, and an sdist that holds what its own tests need and passes them.

The sdist is built as a user builds it (``python -m build --sdist``), unpacked in a temporary
directory, turned into a wheel and installed there (``pip install --no-deps --target``), and a
few of its own test files are run from the unpacked tree against that installed copy, never
against this checkout. ``.ci/check-sdist`` does the same in a fresh virtual environment with
the ``[test]`` extra installed from the unpacked sdist.
"""

from __future__ import annotations

import email.message
import email.parser
import os
import re
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
#: What the sdist must hold beside the package: the tests' data, docs and build files.
SDIST_NEEDS = [
    "pyproject.toml",
    "README.md",
    "LICENSE",
    "mkdocs.yml",
    "docs/index.md",
    "docs/api.md",
    "docs/_ext/readme_page.py",
    "tests/conftest.py",
    "tests/data",
    "examples/streams",
    "examples/assemble_file.py",
]
#: Run from the unpacked sdist: the public surface, the docs' code blocks and the site build.
SDIST_TESTS = [
    "tests/test_public.py",
    "tests/test_docs.py",
    "tests/test_docs_site.py::test_every_page_is_in_the_nav",
    "tests/test_docs_site.py::test_site_builds_strict",
]
SELECT = ["-k", "not type_checks", *SDIST_TESTS]
_IGNORED = {"__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache", ".hypothesis"}


@pytest.fixture(scope="module")
def sdist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sdist built from this checkout as a user builds it, unpacked: its root directory."""
    pytest.importorskip("build")
    tmp = tmp_path_factory.mktemp("sdist")
    done = subprocess.run(
        [sys.executable, "-m", "build", "--sdist", "--outdir", str(tmp / "dist"), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    (archive,) = (tmp / "dist").glob("*.tar.gz")
    with tarfile.open(archive) as tar:
        tar.extractall(tmp / "unpacked", filter="data")
    (tree,) = (tmp / "unpacked").iterdir()
    return tree


@pytest.fixture(scope="module")
def metadata(sdist: Path) -> email.message.Message:
    """The core metadata of the sdist (its PKG-INFO): what an index or a wheel would show."""
    return email.parser.Parser().parsestr((sdist / "PKG-INFO").read_text("utf-8"))


def test_metadata(sdist: Path, metadata: email.message.Message) -> None:
    assert metadata["Name"] == "stream-aggregator"
    assert sdist.name == f"stream_aggregator-{metadata['Version']}"
    assert metadata["License-Expression"] == "MIT"
    assert metadata.get_all("License-File") == ["LICENSE"]
    assert (sdist / "LICENSE").read_text("utf-8").startswith("MIT License")
    classifiers = metadata.get_all("Classifier") or []
    assert len(classifiers) == len(set(classifiers))
    # The Python versions listed are those from Requires-Python's floor on, with no gap, and
    # include the one running this test.
    match = re.fullmatch(r">=3\.(\d+)", metadata["Requires-Python"])
    assert match is not None
    minors = sorted(
        int(c.rsplit(".", 1)[1])
        for c in classifiers
        if re.fullmatch(r"Programming Language :: Python :: 3\.\d+", c)
    )
    assert minors
    assert minors[0] == int(match[1])
    assert minors == list(range(minors[0], minors[-1] + 1))
    assert sys.version_info[:2] in {(3, m) for m in minors}
    assert "Typing :: Typed" in classifiers
    # The README is the long description; every extra is in the install table of the docs.
    assert metadata["Description-Content-Type"] == "text/markdown"
    description = metadata.get_payload()
    assert isinstance(description, str)
    assert description.strip() == (ROOT / "README.md").read_text("utf-8").strip()
    quickstart = (ROOT / "docs" / "quickstart.md").read_text("utf-8")
    extras = metadata.get_all("Provides-Extra") or []
    assert {"httpx", "openai", "gateway", "docs", "test"} <= set(extras)
    for extra in extras:
        assert f"| `{extra}` |" in quickstart, extra


def test_docs_say_how_to_install(metadata: email.message.Message) -> None:
    """The package is not on PyPI: no page tells a user to install it from there."""
    from_index = re.compile(r"pip install ['\"]?stream-aggregator(?!`\s+finds)")
    for page in [ROOT / "README.md", *(ROOT / "docs").glob("*.md")]:
        assert not from_index.search(page.read_text("utf-8")), page.name
    # The wheel named in the install instructions is the one this version builds.
    wheel = f"stream_aggregator-{metadata['Version']}-py3-none-any.whl"
    for page in [ROOT / "README.md", ROOT / "docs" / "quickstart.md"]:
        names = set(re.findall(r"stream_aggregator-[^\s'\[`]+\.whl", page.read_text("utf-8")))
        assert names == {wheel}, page.name


def files_under(root: Path, part: str) -> set[str]:
    """The files of ``root/part`` (a file or a directory), caches left out, as relative paths."""
    path = root / part
    if path.is_file():
        return {part}
    return {
        p.relative_to(root).as_posix()
        for p in path.rglob("*")
        if p.is_file() and not _IGNORED & set(p.relative_to(root).parts) and p.suffix != ".pyc"
    }


def test_sdist_passes_its_own_tests(sdist: Path, tmp_path: Path) -> None:
    tree = sdist
    for part in SDIST_NEEDS:
        assert files_under(ROOT, part) <= files_under(tree, part), part
    for part in ["aggregator", "tests", "docs", "examples"]:
        missing = files_under(ROOT, part) - files_under(tree, part)
        assert not missing, f"not in the sdist: {sorted(missing)[:10]}"

    # Installed from the sdist (a wheel built from it), not imported from the tree's sources.
    target = tmp_path / "site-packages"
    paths = [str(target), str(tree)]
    done = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", *paths],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    # PYTHONSAFEPATH: the working directory (the tree) is not put first on sys.path.
    env = {**os.environ, "PYTHONPATH": str(target), "PYTHONSAFEPATH": "1"}
    where = subprocess.run(
        [sys.executable, "-c", "import aggregator; print(aggregator.__file__)"],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert Path(where.stdout.strip()).is_relative_to(target), where.stdout

    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--no-cov", *SELECT],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-5000:] + done.stderr[-2000:]
    summary = done.stdout.splitlines()[-1]
    assert re.match(r"\d+ passed", summary), summary
    assert "skipped" not in summary, summary
