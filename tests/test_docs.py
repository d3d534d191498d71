"""README.md and docs/ never drift: generated parts match their sources, stated defaults match the default config,
every `make` target named exists, every relative link and repository path named resolves."""

from __future__ import annotations

import importlib.util
import re
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md")), *sorted(REPO.glob("*/README.md"))]


def _generate():
    spec = importlib.util.spec_from_file_location("docs_generate", REPO / "docs" / "generate.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


gen = _generate()
DEFAULTS = gen.defaults()


def _rel(path: Path) -> str:
    return str(path.relative_to(REPO))


def test_generated_parts_are_up_to_date():
    stale = gen.stale_parts(fast=True)
    assert not stale, f"out of date (run `make docs`): {stale}"


def test_every_generated_part_is_known_and_closed():
    for path in DOCS:
        text = path.read_text()
        opened = re.findall(r"<!-- make-docs:([\w-]+) -->", text)
        closed = re.findall(r"<!-- /make-docs:([\w-]+) -->", text)
        assert opened == closed, f"{_rel(path)}: unbalanced make-docs markers {opened} / {closed}"
        assert set(opened) <= set(gen.PARTS), f"{_rel(path)}: unknown parts {set(opened) - set(gen.PARTS)}"


def test_convert_example_states_the_default_rows_and_shape():
    text = (REPO / "docs" / "events.md").read_text()
    body = next(m.group("body") for m in gen.MARK.finditer(text) if m.group("name") == "convert-example")
    m = re.search(r"([\d,]+) rows of shape \((\d+), 2, (\d+), (\d+)\)", body)
    assert m, "the convert example shows no 'N rows of shape (T, 2, H, W)' line"
    rows, t, h, w = int(m.group(1).replace(",", "")), int(m.group(2)), int(m.group(3)), int(m.group(4))
    assert rows == gen.FASHION_MNIST_TRAIN - DEFAULTS["val_size"], "convert example row count != the default split"
    assert (t, h, w) == (DEFAULTS["timesteps"], DEFAULTS["resolution"], DEFAULTS["resolution"])
    assert CONVERT_COMMAND_SHOWN(body)


def CONVERT_COMMAND_SHOWN(body: str) -> bool:
    return gen.CONVERT in body


def test_the_picture_has_one_frame_per_default_timestep():
    from PIL import Image

    with Image.open(REPO / gen.GIF) as im:
        assert im.n_frames == DEFAULTS["timesteps"], f"{gen.GIF} has {im.n_frames} frames: run `make docs`"


def _prose_lines(skip_generated: bool = False):
    for path in DOCS:
        in_code = in_generated = False
        for no, line in enumerate(path.read_text().splitlines(), 1):
            if line.startswith("```"):
                in_code = not in_code
            if line.startswith("<!-- make-docs:"):
                in_generated = True
            elif line.startswith("<!-- /make-docs:"):
                in_generated = False
            if not (skip_generated and in_generated):  # generated parts are checked against their source above
                yield path, no, line, in_code


# a line speaks of the default when it says so or names the default config; these patterns are the facts it can state
_DEFAULT_LINE = re.compile(r"\bdefault\b|fashion_mnist\.yaml", re.I)
_NOT_THE_DEFAULT = re.compile(r"earlier|same recipe with|instead of|was |were |tried|gave|\bvs\b|one thread", re.I)
_CLAIMS = {
    "epochs": re.compile(r"\b(\d+) epochs\b"),
    "timesteps": re.compile(r"\bT ?= ?(\d+)\b|\b(\d+) event frames\b"),
    "ratio": re.compile(r"\bratio (0\.\d+)\b"),
}


def test_stated_defaults_match_the_default_config():
    wrong = []
    for path, no, line, in_code in _prose_lines(skip_generated=True):
        if in_code or not _DEFAULT_LINE.search(line) or _NOT_THE_DEFAULT.search(line):
            continue
        if "fashion" not in line.lower() and "default" in line.lower() and "config" not in line.lower():
            continue  # "default" of some other option, e.g. `--batch-size` (default ...)
        for key, pattern in _CLAIMS.items():
            for found in pattern.findall(line):
                value = next(v for v in found if v) if isinstance(found, tuple) else found
                if float(value) != float(DEFAULTS[key]):
                    wrong.append(f"{_rel(path)}:{no}: {key} {value} (configs/fashion_mnist.yaml: {DEFAULTS[key]})")
    assert not wrong, "README/docs state defaults that differ from the default config:\n" + "\n".join(wrong)


def _make_targets() -> set[str]:
    text = (REPO / "Makefile").read_text()
    return set(re.findall(r"^([A-Za-z][\w-]*):", text, re.M))


def test_every_make_target_named_exists():
    targets = _make_targets()
    missing = []
    for path, no, line, in_code in _prose_lines():
        named = re.findall(r"`make ([a-z][\w-]*)", line)
        if in_code:
            named += re.findall(r"^\s*make ([a-z][\w-]*)", line)
        missing += [f"{_rel(path)}:{no}: make {t}" for t in named if t not in targets]
    assert not missing, f"make targets named but not in the Makefile ({sorted(targets)}): {missing}"


def _ignored(rel: str) -> bool:
    # git-ignored paths are the user's outputs (export/i2e.onnx, checkpoints/<run>/last.ckpt): fine to name
    res = subprocess.run(["git", "check-ignore", "-q", "--no-index", rel], cwd=REPO, capture_output=True)
    return res.returncode == 0


_TOP = ("docs/", "configs/", "export/", "benchmarks/", "tests/", "i2e_lightning/", "checkpoints/", ".ci/")
_PLACEHOLDER = re.compile(r"[A-Z]{1,2}\.|<|\*|\.\.\.|\{|X\b")


def test_every_relative_link_and_repository_path_resolves():
    missing = []
    for path, no, line, in_code in _prose_lines():
        if in_code:
            continue
        for target in re.findall(r"\]\(([^)\s]+)\)", line):  # markdown links and images
            if re.match(r"[a-z]+:|#", target):
                continue
            file = (path.parent / target.split("#")[0]).resolve()
            if not file.exists() or REPO not in file.parents and file != REPO:
                missing.append(f"{_rel(path)}:{no}: link {target}")
        for name in re.findall(r"`([^`\s]+)`", line):  # a repository path in backticks
            name = name.rstrip(".,:;)")
            if not name.startswith(_TOP) or _PLACEHOLDER.search(name) or _ignored(name):
                continue
            if not (
                (REPO / name).exists() or (REPO / "configs" / name).exists()
            ):  # config tables name configs/-relative
                missing.append(f"{_rel(path)}:{no}: {name}")
    assert not missing, "README/docs name files that are not in the repository:\n" + "\n".join(missing)


@pytest.mark.parametrize("name", ["I2E_SPEC"])
def test_no_reference_to_files_outside_the_repository(name):
    hits = subprocess.run(
        ["git", "grep", "-n", name, "--", ".", ":!tests/test_docs.py"], cwd=REPO, capture_output=True, text=True
    )
    assert not hits.stdout, f"references to {name} (the contract is docs/spec.md):\n{hits.stdout}"
