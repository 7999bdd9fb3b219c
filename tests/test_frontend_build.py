"""The committed browser bundle is exactly what the pinned frontend sources build.

Running Eventscope needs Python only, so dashboard/static/eventscope/ is committed.
Where Node is installed (as in CI) these tests rebuild it from a clean copy of
frontend/ and fail when the two differ, so a change to the sources cannot ship
without its bundle, nor a bundle edited by hand.
"""
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FRONTEND = ROOT / "frontend"
BUNDLE = ROOT / "dashboard" / "static" / "eventscope"
REBUILD_HINT = "rebuild with `cd frontend && npm ci && npm run build` and commit dashboard/static/eventscope/"
NPM_ENV = {"npm_config_audit": "false", "npm_config_fund": "false", "npm_config_update_notifier": "false"}

NODE_MISSING = shutil.which("node") is None or shutil.which("npm") is None
# A user with only Python skips these; CI (CI=true), whose .ci/run installs Node, never does.
needs_node = pytest.mark.skipif(
    NODE_MISSING and not os.environ.get("CI"),
    reason="Node.js and npm are not installed; the committed bundle is used as it is",
)


def run(command, cwd, timeout):
    if NODE_MISSING:
        pytest.fail("CI must rebuild the frontend, but Node.js or npm is missing (.ci/run installs nodejs and npm)")
    result = subprocess.run(
        command,
        cwd=cwd,
        env={**os.environ, **NPM_ENV},
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert result.returncode == 0, f"{' '.join(command)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


def bundle_files(folder):
    return {path.relative_to(folder).as_posix(): path.read_bytes() for path in folder.rglob("*") if path.is_file()}


def test_frontend_dependencies_are_pinned_to_exact_versions_in_package_and_lock_file():
    """Every dependency in package.json names one exact version, and the lock file locks that same version."""
    package = json.loads((FRONTEND / "package.json").read_text())
    lock = json.loads((FRONTEND / "package-lock.json").read_text())
    declared = {**package.get("dependencies", {}), **package.get("devDependencies", {})}
    assert declared, "package.json declares no dependencies"
    for name, version in declared.items():
        assert re.fullmatch(r"\d+\.\d+\.\d+", version), f"{name} is pinned as {version!r}, not an exact version"
        assert lock["packages"][f"node_modules/{name}"]["version"] == version, f"package-lock.json disagrees on {name}"
    assert lock["packages"][""]["devDependencies"] == package.get("devDependencies", {})


def test_committed_bundle_exists_and_carries_no_paths_of_the_machine_that_built_it():
    """app.js and app.css are committed, non-empty, and free of source maps and absolute paths."""
    files = bundle_files(BUNDLE)
    assert {"app.js", "app.css"} <= set(files), f"missing bundle files; {REBUILD_HINT}"
    for name, content in files.items():
        text = content.decode("utf-8")
        assert text.strip(), f"{name} is empty"
        assert "sourceMappingURL" not in text, f"{name} points at a source map"
        assert str(ROOT) not in text and "node_modules" not in text, f"{name} names a build-machine path"


@needs_node
def test_frontend_unit_tests_pass(tmp_path):
    """The helpers behind the page behaviours (relative times, sorting, sparklines, links, the lag
    chart's data) pass their tests, in a fresh copy with its pinned dependencies installed (some
    helpers import them, e.g. uPlot)."""
    source = tmp_path / "frontend"
    shutil.copytree(FRONTEND, source, ignore=shutil.ignore_patterns("node_modules"))
    run(["npm", "ci", "--prefer-offline"], cwd=source, timeout=120)
    result = run(["npm", "test", "--silent"], cwd=source, timeout=60)
    assert re.search(r"^# fail 0$", result.stdout, re.MULTILINE), result.stdout[-3000:]


@needs_node
def test_rebuilding_the_frontend_reproduces_the_committed_bundle_byte_for_byte(tmp_path):
    """`npm ci` and `npm run build` in a fresh copy of frontend/ give exactly the committed files."""
    source = tmp_path / "frontend"
    # A copy in another folder also proves that no absolute path ends up in the output.
    shutil.copytree(FRONTEND, source, ignore=shutil.ignore_patterns("node_modules"))
    output = tmp_path / "out"
    run(["npm", "ci", "--prefer-offline"], cwd=source, timeout=120)
    run(["npm", "run", "build", "--", "--outdir", str(output)], cwd=source, timeout=60)

    built, committed = bundle_files(output), bundle_files(BUNDLE)
    assert set(built) == set(committed), f"the build makes {sorted(built)}, committed are {sorted(committed)}; {REBUILD_HINT}"
    stale = [name for name in sorted(built) if built[name] != committed[name]]
    assert not stale, f"a fresh build differs from the committed {', '.join(stale)}; {REBUILD_HINT}"


def test_without_node_the_rebuild_test_fails_in_ci_instead_of_skipping(tmp_path):
    """With no node or npm on PATH and CI=true (as CI runs), the test fails and says why."""
    env = {**os.environ, "PATH": str(tmp_path), "CI": "true"}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", f"{__file__}::test_frontend_unit_tests_pass"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert "1 failed" in result.stdout, result.stdout[-3000:]
    assert "Node.js or npm is missing (.ci/run installs nodejs and npm)" in result.stdout
