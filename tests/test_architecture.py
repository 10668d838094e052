"""The package's layers read one way: no import cycles, the domain never imports the commands layer, and
only the commands layer parses command lines. Imports are read with ast, not executed, and every import
counts: one inside a function (lazy) or under TYPE_CHECKING is still a dependency."""

from __future__ import annotations

import ast
from pathlib import Path

from pipelines.infra.paths import REPO_ROOT

PACKAGE_DIR = REPO_ROOT / "pipelines"
COMMANDS = "pipelines.commands"


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
