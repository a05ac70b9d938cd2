"""The arrows run one way (docs/architecture.md): a package imports only the packages
below it, the CLI sits on top of everything, the library never parses command lines, and
no package imports another's private (``_name``) modules or names. Read from the source
with ``ast``, so an import inside a function counts too."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

#: package -> the folder that holds it
FOLDERS = {
    "stream": ROOT / "stream",
    "state": ROOT / "state",
    "scorer": ROOT / "scorer",
    "learner": ROOT / "learner",
    "model": ROOT / "driftrec" / "model",
    "app": ROOT / "driftrec" / "app",
    "evaluation": ROOT / "driftrec" / "evaluation",
    "bench": ROOT / "driftrec" / "bench",
    "cli": ROOT / "driftrec" / "cli",
}
_BASE = {"stream", "state"}
#: package -> what it may import besides itself
ALLOWED = {
    "stream": set(),
    "state": set(),
    "model": _BASE,
    "scorer": _BASE | {"model"},
    "learner": _BASE | {"model"},
    "app": _BASE | {"model", "scorer", "learner"},
    "evaluation": _BASE | {"model", "scorer", "learner", "app"},
    "bench": _BASE | {"model", "scorer", "learner", "app"},
    "cli": _BASE | {"model", "scorer", "learner", "app", "evaluation", "bench"},
}
#: top-level names the code must never import (they would be the generic folders, not driftrec's)
GENERIC = {"stream", "state", "scorer", "learner", "model"}


def _imports(path: Path) -> list[tuple[int, str]]:
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.append((node.lineno, node.module))
    return out


def _files(pkg: str) -> list[Path]:
    return sorted(FOLDERS[pkg].rglob("*.py"))


@pytest.mark.parametrize("pkg", sorted(FOLDERS))
def test_imports_point_down(pkg: str) -> None:
    bad = []
    for f in _files(pkg):
        for line, mod, _ in _imported(pkg, f):  # relative imports resolved
            parts = mod.split(".")
            if parts[0] in GENERIC:
                bad.append(f"{f.relative_to(ROOT)}:{line} imports {mod} (use driftrec.{mod})")
            elif parts[0] == "driftrec" and len(parts) > 1 and parts[1] in FOLDERS:
                if parts[1] != pkg and parts[1] not in ALLOWED[pkg]:
                    bad.append(f"{f.relative_to(ROOT)}:{line} imports {mod}")
    assert not bad, f"{pkg} may import only {sorted(ALLOWED[pkg]) or 'itself'}:\n" + "\n".join(bad)


def test_scorer_and_learner_never_import_each_other() -> None:
    # stated on its own: the shared model lives below both (driftrec.model)
    assert "learner" not in ALLOWED["scorer"] and "scorer" not in ALLOWED["learner"]
    assert all(_files(p) for p in FOLDERS)


def test_the_cli_is_on_top() -> None:
    # no package lists the CLI (test_imports_point_down), and it may import them all
    assert all("cli" not in allowed for pkg, allowed in ALLOWED.items() if pkg != "cli")
    assert ALLOWED["cli"] == set(FOLDERS) - {"cli"}
    bad = []
    for f in (ROOT / "driftrec").glob("*.py"):  # outside the folders: driftrec/__init__.py
        for node in ast.walk(ast.parse(f.read_text(), str(f))):
            if isinstance(node, ast.ImportFrom):
                mod = "." * node.level + (node.module or "")
                sep = "." if node.module else ""
                names = [mod, *(mod + sep + a.name for a in node.names)]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                continue
            if any(n.startswith(("driftrec.cli", ".cli")) for n in names):
                bad.append(f"{f.relative_to(ROOT)}:{node.lineno} imports the CLI")
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("pkg", sorted(set(FOLDERS) - {"cli"}))
def test_the_library_never_parses_command_lines(pkg: str) -> None:
    bad = [
        f"{f.relative_to(ROOT)}:{line} imports {mod}"
        for f in _files(pkg)
        for line, mod in _imports(f)
        if mod.split(".")[0] == "argparse"
    ]
    assert not bad, "argparse belongs to driftrec.cli (flags, parsers, commands):\n" + "\n".join(bad)


def _module_of(pkg: str, path: Path) -> list[str]:
    """The dotted name of ``path`` (in ``pkg``'s folder) as installed, split."""
    rel = path.relative_to(FOLDERS[pkg]).with_suffix("").parts
    parts = ["driftrec", pkg, *rel]
    return parts[:-1] if parts[-1] == "__init__" else parts


def _imported(pkg: str, path: Path) -> list[tuple[int, str, list[str]]]:
    """``(line, absolute module, names)`` of every import of ``path``; relative ones resolved."""
    here = _module_of(pkg, path)
    package = here if path.name == "__init__.py" else here[:-1]
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name, []) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)]
                mod = ".".join([*base, *([node.module] if node.module else [])])
            else:
                mod = node.module or ""
            out.append((node.lineno, mod, [a.name for a in node.names]))
    return out


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


@pytest.mark.parametrize("pkg", sorted(FOLDERS))
def test_no_private_name_crosses_a_package(pkg: str) -> None:
    """``from driftrec.x import _y``, ``from driftrec.x._y import z`` or ``import driftrec.x._y``
    where x is not the importing package: the owner exports what others use."""
    bad = []
    for f in _files(pkg):
        for line, mod, names in _imported(pkg, f):
            parts = mod.split(".")
            if parts[0] != "driftrec" or len(parts) < 2 or parts[1] == pkg:
                continue
            private = [p for p in parts[2:] if _private(p)] + [n for n in names if _private(n)]
            if private:
                bad.append(f"{f.relative_to(ROOT)}:{line} imports {', '.join(private)} from {mod}")
    assert not bad, "private names of another package:\n" + "\n".join(bad)


#: class -> where, besides the composition root (driftrec/app/system.py), it may be made:
#: its own package (and the embedded runner, which wires its two workers)
SYSTEM = ROOT / "driftrec" / "app" / "system.py"
BUILT_ONLY_IN_THE_ROOT = {
    "Scorer": [FOLDERS["scorer"]],
    "SwapManager": [FOLDERS["scorer"]],
    "Learner": [FOLDERS["learner"]],
    "TextEncoder": [FOLDERS["model"]],
    "ScorerWorker": [FOLDERS["app"] / "embedded.py"],
    "LearnerWorker": [FOLDERS["app"] / "embedded.py"],
    "EmbeddedPipeline": [],
}


def _calls(path: Path) -> list[tuple[int, str]]:
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Call):
            f = node.func
            name = f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else None
            if name in BUILT_ONLY_IN_THE_ROOT:
                out.append((node.lineno, name))
    return out


def test_the_system_is_built_in_one_place() -> None:
    files = sorted({*ROOT.joinpath("driftrec").glob("*.py"), *(f for p in FOLDERS for f in _files(p))})
    bad = []
    for f in files:
        if f == SYSTEM:
            continue
        for line, name in _calls(f):
            if not any(f == a or a in f.parents for a in BUILT_ONLY_IN_THE_ROOT[name]):
                bad.append(f"{f.relative_to(ROOT)}:{line} makes a {name}")
    assert not bad, "build it with driftrec.app.system (the composition root):\n" + "\n".join(bad)
