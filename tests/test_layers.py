"""The layering rule of DESIGN.md section 2, checked on the source, not on a description of it.

    pipelines -> assets/defs -> {training, eval} -> assets/<stage> -> assets/contract

* a module imports only from its own layer or the layers below it;
* only ``assets/defs`` and ``pipelines`` import dagster (the GPU job and the lmms-eval bridge
  talk to Dagster through the separate ``dagster_pipes`` package only);
* nothing outside ``pipelines`` imports ``pipelines``;
* there is no import cycle, between modules or between packages, counting the imports written
  inside functions as well: a function-local import hides a cycle from Python, not from this test.

Each rule is also run on a small planted tree, so the test is shown to fail when the rule breaks.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("pipelines", "assets", "training", "eval")
STAGES = ("sources", "chatml", "video", "tokens", "packing", "mixture")
DAGSTER = ("dagster",)
PIPES_ONLY = "dagster_pipes"


def layer_of(module: str) -> tuple[int, str]:
    """(rank, name) of a project module; higher ranks may import lower ones."""
    parts = module.split(".")
    if parts[0] == "pipelines":
        return 5, "pipelines"
    if parts[0] == "assets":
        if len(parts) > 1 and parts[1] == "defs":
            return 4, "assets/defs"
        if len(parts) > 1 and parts[1] in STAGES:
            return 2, "assets/<stage>"
        return 1, "assets/contract"
    if parts[0] in ("training", "eval"):
        return 3, "{training, eval}"
    raise ValueError(module)


def package_of(module: str) -> str:
    """The unit the package-level cycle check works on: assets.<sub> or the top package."""
    parts = module.split(".")
    return ".".join(parts[:2]) if parts[0] == "assets" and len(parts) > 1 else parts[0]


@dataclass(frozen=True)
class Import:
    source: str  # importing module
    target: str  # imported module (project) or top-level name (third party)
    line: int
    local: bool  # written inside a function


def module_name(root: Path, path: Path) -> str:
    rel = path.relative_to(root).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def project_modules(root: Path) -> dict[str, Path]:
    return {
        module_name(root, p): p
        for pkg in PACKAGES
        if (root / pkg).is_dir()
        for p in sorted((root / pkg).rglob("*.py"))
    }


def _resolve(name: str, modules: dict[str, Path]) -> str:
    """The longest project module that ``name`` (``a.b.c`` or ``a.b`` + an attribute) names."""
    parts = name.split(".")
    for n in range(len(parts), 0, -1):
        if ".".join(parts[:n]) in modules:
            return ".".join(parts[:n])
    return name


def imports_of(root: Path, module: str, path: Path, modules: dict[str, Path]) -> list[Import]:
    tree = ast.parse(path.read_text(), filename=str(path))
    local_nodes = {
        id(node)
        for fn in ast.walk(tree)
        if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef))
        for node in ast.walk(fn)
    }
    is_package = path.name == "__init__.py"
    out: list[Import] = []
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")
                base = base if is_package else base[:-1]
                base = base[: len(base) - (node.level - 1)]
                head = ".".join(base + ([node.module] if node.module else []))
            else:
                head = node.module or ""
            # `from pkg import sub` imports the submodule when there is one
            names = [f"{head}.{a.name}" if f"{head}.{a.name}" in modules else head for a in node.names]
        for name in names:
            top = name.split(".")[0]
            target = _resolve(name, modules) if top in PACKAGES else top
            if target != module:
                out.append(Import(module, target, node.lineno, id(node) in local_nodes))
    return out


def all_imports(root: Path) -> list[Import]:
    modules = project_modules(root)
    return [imp for m, p in modules.items() for imp in imports_of(root, m, p, modules)]


def _cycles(edges: Iterable[tuple[str, str]]) -> list[list[str]]:
    """Every strongly connected component with more than one node (Tarjan)."""
    graph: dict[str, set[str]] = {}
    for a, b in edges:
        graph.setdefault(a, set()).add(b)
        graph.setdefault(b, set())
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def violations(root: Path) -> list[str]:
    """Every break of the layering rule under ``root``, one line each."""
    problems: list[str] = []
    imports = all_imports(root)
    project = [i for i in imports if i.target.split(".")[0] in PACKAGES]
    for imp in imports:
        where = f"{imp.source} (line {imp.line})"
        top = imp.target
        if top in DAGSTER and layer_of(imp.source)[0] < 4:
            problems.append(f"{where} imports dagster outside assets/defs and pipelines")
        if top == PIPES_ONLY and layer_of(imp.source)[0] < 3:
            problems.append(f"{where} imports dagster_pipes below training/eval")
    for imp in project:
        where = f"{imp.source} (line {imp.line})"
        if imp.target.split(".")[0] == "pipelines" and not imp.source.startswith("pipelines"):
            problems.append(f"{where} imports {imp.target}: nothing imports pipelines")
            continue
        (src_rank, src_layer), (dst_rank, dst_layer) = layer_of(imp.source), layer_of(imp.target)
        if dst_rank > src_rank:
            problems.append(f"{where} in {src_layer} imports {imp.target} from the higher layer {dst_layer}")
    for comp in _cycles((i.source, i.target) for i in project):
        problems.append("import cycle between modules: " + " <-> ".join(comp))
    package_edges = {(package_of(i.source), package_of(i.target)) for i in project}
    for comp in _cycles((a, b) for a, b in package_edges if a != b):
        problems.append("import cycle between packages: " + " <-> ".join(comp))
    return problems


def test_the_project_follows_the_layering_rule():
    assert violations(ROOT) == []


def test_every_stage_package_is_known():
    """A new package under assets/ must be placed in a layer (here), not fall into contract."""
    subpackages = {p.name for p in (ROOT / "assets").iterdir() if (p / "__init__.py").is_file()}
    assert subpackages == {"contract", "defs", *STAGES}


def _plant(tmp_path: Path, files: dict[str, str]) -> Path:
    base = {
        "assets/__init__.py": "",
        "assets/contract/__init__.py": "",
        "assets/contract/conversation.py": "X = 1\n",
        "assets/video/__init__.py": "",
        "assets/video/plan.py": "from assets.contract.conversation import X\n",
        "assets/defs/__init__.py": "",
        "assets/defs/video.py": "import dagster as dg\nfrom assets.video.plan import X\n",
        "training/__init__.py": "",
        "training/trainer.py": "import dagster_pipes\nfrom assets.video import plan\n",
        "eval/__init__.py": "",
        "pipelines/__init__.py": "",
        "pipelines/definitions.py": "import dagster\nfrom assets.defs import video\n",
    }
    for rel, text in {**base, **files}.items():
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return tmp_path


def test_a_clean_planted_tree_passes(tmp_path):
    assert violations(_plant(tmp_path, {})) == []


@pytest.mark.parametrize(
    "files, expected",
    [
        ({"assets/video/frames.py": "import dagster as dg\n"}, "imports dagster outside assets/defs"),
        ({"assets/contract/cleaning.py": "from dagster import asset\n"}, "imports dagster outside assets/defs"),
        ({"assets/video/frames.py": "import dagster_pipes\n"}, "imports dagster_pipes below training/eval"),
        ({"training/report.py": "from pipelines.definitions import defs\n"}, "nothing imports pipelines"),
        ({"assets/defs/keys.py": "def f():\n    import pipelines.definitions\n"}, "nothing imports pipelines"),
        ({"assets/contract/media.py": "from assets.video.plan import X\n"}, "from the higher layer assets/<stage>"),
        ({"assets/video/hybrid.py": "from training.trainer import x\n"}, "from the higher layer {training, eval}"),
        ({"eval/runner.py": "from assets.defs.video import x\n"}, "from the higher layer assets/defs"),
        (
            {
                "assets/video/grid.py": "from assets.video.hybrid import f\n",
                "assets/video/hybrid.py": "def f():\n    from assets.video.grid import g\n",
            },
            "import cycle between modules: assets.video.grid <-> assets.video.hybrid",
        ),
        (
            {
                "assets/video/frames.py": "from assets.tokens.count import n\n",
                "assets/tokens/__init__.py": "",
                "assets/tokens/count.py": "from assets.video.plan import X\n",
            },
            "import cycle between packages: assets.tokens <-> assets.video",
        ),
    ],
)
def test_a_planted_violation_is_caught(tmp_path, files, expected):
    found = violations(_plant(tmp_path, files))
    assert any(expected in line for line in found), found
