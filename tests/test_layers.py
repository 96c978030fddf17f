"""labkit's layering (README, labkit/__init__.py): every module has a level, imports nothing
from a higher level, makes no import inside a function, and the imports have no cycle."""
import ast
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "labkit"
LEVELS = {
    "config": 0, "io": 0, "recipes": 0,
    "data": 1, "models": 1, "guard": 1,
    "prune": 2,
    "metrics": 3, "sparse": 3, "sensitivity": 3,
    "train": 4,
    "methods": 5,
    "results": 6, "plots": 6, "compare": 6,
    "report": 7, "__init__": 7, "__main__": 7,
}
FUNCTIONS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)


def modules() -> dict:
    """{dotted name inside labkit ('' for labkit itself, 'prune' for prune/__init__): path}."""
    found = {}
    for path in sorted(PKG.rglob("*.py")):
        parts = list(path.relative_to(PKG).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def level(name: str) -> int | None:
    """A module's level: its own entry or its top package's ('prune.masks' -> 'prune')."""
    return LEVELS["__init__"] if name == "" else LEVELS.get(name.split(".")[0])


def imports(name: str, path: Path, known: dict):
    """(line, labkit module imported or None, inside a function) for each import statement."""
    tree = ast.parse(path.read_text(), str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}

    def in_function(node):
        while node in parents:
            node = parents[node]
            if isinstance(node, FUNCTIONS):
                return True
        return False

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [a.name.removeprefix("labkit").lstrip(".") for a in node.names
                       if a.name.split(".")[0] == "labkit"]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".") if package else []
                base = base[:len(base) - node.level + 1]
                base = ".".join(base + ([node.module] if node.module else []))
            elif (node.module or "").split(".")[0] == "labkit":
                base = node.module.removeprefix("labkit").lstrip(".")
            else:
                base = None
            targets = [] if base is None else [
                f"{base}.{a.name}".lstrip(".") if f"{base}.{a.name}".lstrip(".") in known
                else base for a in node.names]
        else:
            continue
        fn = in_function(node)
        for t in targets or [None]:
            yield node.lineno, t, fn


def where(path: Path, line: int) -> str:
    return f"{path.relative_to(PKG.parent)}:{line}"


def show(name: str) -> str:
    return name or "labkit"


def test_every_module_has_a_level():
    assert [show(n) for n in modules() if level(n) is None] == [], "add them to LEVELS"


def test_no_import_inside_a_function():
    known = modules()
    found = sorted({(str(p), line) for n, p in known.items()
                    for line, _, fn in imports(n, p, known) if fn})
    found = [where(Path(p), line) for p, line in found]
    assert not found, "imports made inside a function:\n" + "\n".join(found)


def test_no_module_imports_one_above_it():
    known, found = modules(), []
    for n, p in known.items():
        for line, target, _ in imports(n, p, known):
            if target is not None and (level(target) or 0) > (level(n) or 0):
                found.append(f"{where(p, line)}: {show(n)} (level {level(n)}) imports "
                             f"{show(target)} (level {level(target)})")
    assert not found, "imports of a higher level:\n" + "\n".join(sorted(found))


def test_imports_have_no_cycle():
    known = modules()
    graph = {n: {t for _, t, _ in imports(n, p, known) if t is not None and t != n}
             for n, p in known.items()}
    # a package's own __init__ imports its modules; the reverse edge (a module using a name the
    # package re-exports) would be a cycle through the package
    state, cycles = {}, []

    def visit(n, stack):
        state[n] = "open"
        for t in sorted(graph.get(n, ())):
            if state.get(t) == "open":
                cycles.append(" -> ".join(map(show, stack[stack.index(t):] + [t])))
            elif t not in state:
                visit(t, stack + [t])
        state[n] = "done"

    for n in sorted(graph):
        if n not in state:
            visit(n, [n])
    assert not cycles, "import cycles:\n" + "\n".join(cycles)
