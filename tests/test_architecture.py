"""The package's layers read one way: no import cycles, the domain never imports the commands layer, and
only the commands layer parses command lines. Imports are read with ast, not executed, and every import
counts: one inside a function (lazy) or under TYPE_CHECKING is still a dependency. And no module grows
past MAX_MODULE_LINES without saying why."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from pipelines.infra.paths import REPO_ROOT

PACKAGE_DIR = REPO_ROOT / "pipelines"
COMMANDS = "pipelines.commands"

MAX_MODULE_LINES = 500
# The convention for a longer module: its docstring says why in one sentence that gives its size as
# "~N lines" and the reason, e.g. "One module (~550 lines): one builder per benign class, each reading
# as the behaviour it models." N must be within SIZE_CLAIM_SLACK of the real length, so a module that
# keeps growing is argued for again.
SIZE_CLAIM = re.compile(r"~(\d+) lines")
SIZE_CLAIM_SLACK = 0.1
# Words the sentence needs besides the claim: a size alone is no reason.
REASON_WORDS = 6


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO_ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_names(path: Path) -> set[str]:
    """Every module a file imports, and for `from X import y` also X.y (y may be a module)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolved against the importing file's package
                module = module_name(path)
                package = module if path.name == "__init__.py" else module.rpartition(".")[0]
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def import_graph() -> dict[str, set[str]]:
    modules = {module_name(path): path for path in PACKAGE_DIR.rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        # A package's __init__ is imported with any of its modules; that is no dependency of the module.
        graph[name] = {
            imported
            for imported in imported_names(path)
            if imported in modules and imported != name and not name.startswith(imported + ".")
        }
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for imported in sorted(graph[module]):
            if imported not in index:
                visit(imported)
                low[module] = min(low[module], low[imported])
            elif imported in on_stack:
                low[module] = min(low[module], index[imported])
        if low[module] == index[module]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == module:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for module in sorted(graph):
        if module not in index:
            visit(module)
    return found


def test_the_walker_sees_lazy_and_relative_imports(tmp_path):
    module = tmp_path / "probe.py"
    module.write_text("def f():\n    import argparse\n    from pipelines.lake import layout\n")
    assert {"argparse", "pipelines.lake", "pipelines.lake.layout"} <= imported_names(module)
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_cycles():
    graph = import_graph()
    assert len(graph) > 40  # the walk found the package
    assert cycles(graph) == []


def test_the_domain_never_imports_the_commands_layer():
    offenders = {
        module: sorted(imported for imported in imports if imported.startswith(COMMANDS))
        for module, imports in import_graph().items()
        if not module.startswith(COMMANDS)
    }
    assert {module: imports for module, imports in offenders.items() if imports} == {}


def test_only_the_commands_layer_imports_argparse():
    offenders = sorted(
        module_name(path)
        for path in PACKAGE_DIR.rglob("*.py")
        if "argparse" in imported_names(path) and not module_name(path).startswith(COMMANDS)
    )
    assert offenders == []


def test_the_readme_architecture_names_every_stage_package():
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Architecture", 1)[1].split("\n## ", 1)[0]
    packages = sorted(path.parent.name for path in PACKAGE_DIR.glob("*/__init__.py"))
    assert packages, "no sub-packages found"
    missing = [package for package in packages if f"{package}/" not in section]
    assert not missing, f"README's Architecture section does not name {missing}"


def length_problem(path: Path) -> str | None:
    """Why `path` breaks the module-length convention (above), or None."""
    text = path.read_text(encoding="utf-8")
    lines = len(text.splitlines())
    if lines <= MAX_MODULE_LINES:
        return None
    docstring = " ".join((ast.get_docstring(ast.parse(text)) or "").split())
    for sentence in re.split(r"(?<=[.!?])\s+", docstring):
        claim = SIZE_CLAIM.search(sentence)
        if claim and len(sentence.split()) - 2 >= REASON_WORDS:
            if abs(int(claim.group(1)) - lines) <= SIZE_CLAIM_SLACK * lines:
                return None
            return f"{path.name}: {lines} lines, but its docstring says ~{claim.group(1)}"
    return f"{path.name}: {lines} lines and no docstring sentence '~N lines' giving the reason"


def test_the_length_rule_wants_the_size_and_a_reason_in_one_sentence(tmp_path):
    body = "x = 1\n" * MAX_MODULE_LINES
    probe = tmp_path / "probe.py"
    for docstring, problem in (
        ("Short.", "no docstring sentence"),
        ("It is ~500 lines.", "no docstring sentence"),
        ("One module (~700 lines): the steps of one program, which read in order.", "says ~700"),
        ("One module (~505 lines): the steps of one program, which read in order. More.", None),
    ):
        probe.write_text(f'"""{docstring}"""\n{body}')
        found = length_problem(probe)
        assert (found is None) if problem is None else (problem in found), (docstring, found)


def test_no_module_is_longer_than_the_limit_without_its_reason():
    problems = [problem for path in sorted(PACKAGE_DIR.rglob("*.py")) if (problem := length_problem(path))]
    assert problems == []
