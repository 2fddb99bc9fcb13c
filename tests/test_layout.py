"""The README's layout table matches the tree, and no module grows past what one reading can hold."""

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
APPS = ("mp3converter", "accounts", "conversions", "notifications")
# Modules every Django app or package has, which say nothing about the layout.
UNLISTED = {"__init__.py", "apps.py"}
MAX_MODULE_LINES = 450


def tracked_files() -> list[Path]:
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    return [ROOT / name for name in listed.decode().split("\0") if name and (ROOT / name).exists()]


def layout_rows() -> dict[str, str]:
    """path -> what, from the table under the README's "Layout" heading."""
    section = (ROOT / "README.md").read_text().split("\n## Layout\n", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        match = re.match(r"^\| `([^`]+)` \| (.*) \|$", line)
        if match:
            rows[match.group(1)] = match.group(2)
    return rows


def packages() -> list[Path]:
    """Every Python package of the apps, migrations aside."""
    found = []
    for app in APPS:
        for init in sorted((ROOT / app).rglob("__init__.py")):
            if "migrations" not in init.parts:
                found.append(init.parent)
    return found


def test_every_row_names_a_folder_that_exists_and_files_that_exist():
    rows = layout_rows()
    assert len(rows) > 10
    for path, what in rows.items():
        folder = ROOT / path
        assert folder.is_dir(), path
        for name in re.findall(r"`([\w./-]+(?:\.py|/))`", what):
            target = ROOT / name if name.startswith(("tests/", "docs/", "k8s/", "docker/")) else folder / name
            assert target.exists(), f"{path}: {name}"


def test_every_top_level_folder_has_a_row():
    top = {path.relative_to(ROOT).parts[0] for path in tracked_files() if len(path.relative_to(ROOT).parts) > 1}
    folders = {name for name in top if not name.startswith(".")}
    assert folders <= {path.rstrip("/") for path in layout_rows()}, folders


def test_every_package_has_a_row_that_names_each_of_its_modules():
    rows = layout_rows()
    for package in packages():
        row = f"{package.relative_to(ROOT)}/"
        assert row in rows, f"no layout row for {row}"
        for module in sorted(package.glob("*.py")):
            if module.name not in UNLISTED:
                assert f"`{module.name}`" in rows[row], f"{row} does not name {module.name}"


def test_no_module_is_longer_than_one_reading_can_hold():
    too_long = {}
    for path in tracked_files():
        if path.suffix == ".py" and "migrations" not in path.parts:
            lines = len(path.read_text().splitlines())
            if lines > MAX_MODULE_LINES:
                too_long[str(path.relative_to(ROOT))] = lines
    assert too_long == {}, f"split these by concern (at most {MAX_MODULE_LINES} lines each)"
