"""Packaging and notebook hygiene: one package list, clean source notebooks,
smoke reports that match their sources."""
import json
import re
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
CONDA_NAMES = {"pytorch": "torch"}  # conda-forge name -> PyPI name


def _split(req: str) -> tuple[str, str]:
    """('name', 'bounds') of a requirement such as 'torch>=2.14,<2.16'."""
    name = re.split(r"[<>=!~ \[]", req.strip(), maxsplit=1)[0]
    return name.lower(), req.strip()[len(name):].replace(" ", "")


def test_environment_yml_lists_the_same_packages_and_bounds():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pip = dict(_split(r) for r in project["dependencies"] + project["optional-dependencies"]["dev"])
    conda, section = {}, None
    for line in (ROOT / "environment.yml").read_text().splitlines():
        if re.match(r"^\w", line):  # a top-level key: channels, dependencies, ...
            section = line.split(":")[0]
        m = re.match(r"\s*-\s+([A-Za-z][\w.-]*\S*)", line)
        if section == "dependencies" and m and _split(m.group(1))[0] not in ("python", "pip", "pip:"):
            name, bounds = _split(m.group(1))
            conda[CONDA_NAMES.get(name, name)] = bounds
    assert "torch" in conda and "pytest" in conda
    assert "-e ." in (ROOT / "environment.yml").read_text()  # installs labkit itself with pip
    assert pip == conda, f"pyproject: {pip}\nenvironment.yml: {conda}"


def test_there_are_notebooks():
    assert any(p.name.startswith("01_") for p in NOTEBOOKS)


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.stem)
def test_source_notebook_is_clean(nb):
    cells = json.loads(nb.read_text())["cells"]
    assert all(not c.get("outputs") and c.get("execution_count") is None
               for c in cells if c["cell_type"] == "code"), "source notebooks are stored without outputs"
    tagged = [c for c in cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    # run by hand, a notebook takes $LABKIT_PROFILE, else cpu; papermill, nbval and the tests inject theirs
    assert len(tagged) == 1 and re.search(r"^profile = None\b", "".join(tagged[0]["source"]), re.M)
    intro = "".join(cells[0]["source"])
    assert cells[0]["cell_type"] == "markdown" and all(w in intro for w in ("smoke", "cpu", "LABKIT_PROFILE"))


def _code(cells):
    return ["".join(c["source"]) for c in cells if c["cell_type"] == "code"
            and "injected-parameters" not in c.get("metadata", {}).get("tags", [])]


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.stem)
def test_smoke_report_matches_source(nb):
    """nbval runs reports/smoke/*.ipynb; they must be the current sources, executed."""
    report = ROOT / "reports" / "smoke" / nb.name
    assert report.exists(), f"run: python -m labkit report --profile smoke --only {nb.stem[:2]}"
    src, rep = json.loads(nb.read_text())["cells"], json.loads(report.read_text())["cells"]
    assert _code(src) == _code(rep), f"reports/smoke/{nb.name} is stale: re-run the smoke report"
