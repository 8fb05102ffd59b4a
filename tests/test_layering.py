"""The layers hold: built from the source with ``ast`` (nothing is imported), the import graph
of the repository must show

- click imported only in ``netready/cli/`` (the command line): the core and the libraries
  raise ``NetreadyError`` and the CLI turns it into one line and an exit code;
- the CLI imported by nothing outside it (a library never calls the command line);
- the core (``netready/*.py`` outside ``netready/cli/``) importing no plugin, lab, report,
  dashboard, server or CLI module;
- the lab imported only by the CLI, the benchmarks and the tests (and itself);
- the central servers (``servers/``) importing the core, each other and, of the plugins,
  only the sans-IO modules they share with a probe (``SERVER_MAY_IMPORT``): never a probe's
  socket edge or its declaration, nor a report, dashboard or the lab;
- no probe or collector importing a server (the CLI may import both);
- no import cycle anywhere, the lazy imports inside functions included.

Every ``import`` counts, at module level or inside a function, except those under
``if __name__ == "__main__":`` (an entry point, which runs only as a script). Imports under
``if TYPE_CHECKING:`` count for the layers (the core may not even name a plugin's types) but
not for cycles: they never run.
Module names are the installed ones (``probes/rtt.py`` is ``netready.probes.rtt``: the
``package-dir`` mapping in pyproject.toml).
"""

from __future__ import annotations

import ast
import tomllib
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

CLI = "netready.cli"
SERVERS = "netready.servers"
PLUGINS = ("netready.probes", "netready.collectors")
#: What the core must not import: everything of the package that is not core.
NOT_CORE = (
    "netready.probes",
    "netready.collectors",
    "netready.reports",
    "netready.dashboards",
    "netready.lab",
    "netready.servers",
    CLI,
)

#: What a server may import of the plugins: the modules both ends of a measurement share.
SERVER_MAY_IMPORT = (
    "netready.probes.rtt.twamp",  # TWAMP-light packets (the reflector)
    "netready.probes.throughput.wire",  # the speed endpoint's HTTP contract, TCP_INFO
    "netready.probes.media.wire",  # media packets and control messages (the responder)
    "netready.probes.media.trace",  # the receive trace and its statistics
    "netready.probes.media.stream",  # the socket primitives both ends of a call share
)

# ---- known exceptions ------------------------------------------------------------------
#: (module, import) -> why. Each must still be needed (a stale one fails the test).
KNOWN: dict[tuple[str, str], str] = {}


@dataclass
class Module:
    name: str
    path: Path
    imports: dict[str, int] = field(default_factory=dict)  # imported name -> first line
    typing_only: set[str] = field(default_factory=set)  # imported under TYPE_CHECKING only


def _roots() -> list[tuple[Path, str]]:
    """(folder, package) for every source folder: pyproject's package-dir, the benchmarks
    (``bench.x``) and the tests (bare names: conftest puts tests/ on sys.path)."""
    conf = tomllib.loads((ROOT / "pyproject.toml").read_text())
    roots = [(ROOT / d, pkg) for pkg, d in conf["tool"]["setuptools"]["package-dir"].items()]
    roots += [(ROOT / "bench", "bench"), (ROOT / "tests", "")]
    return sorted(roots, key=lambda r: -len(r[0].parts))


def _name_of(path: Path, roots: list[tuple[Path, str]]) -> str | None:
    for folder, pkg in roots:
        if folder in path.parents:
            parts = list(path.relative_to(folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            return ".".join(p for p in (pkg, *parts) if p)
    return None


def _is_main_guard(node: ast.AST) -> bool:
    t = node.test if isinstance(node, ast.If) else None
    return (
        isinstance(t, ast.Compare)
        and isinstance(t.left, ast.Name)
        and t.left.id == "__name__"
        and any(isinstance(c, ast.Constant) and c.value == "__main__" for c in t.comparators)
    )


def _is_type_checking(node: ast.AST) -> bool:
    t = node.test if isinstance(node, ast.If) else None
    return (isinstance(t, ast.Name) and t.id == "TYPE_CHECKING") or (
        isinstance(t, ast.Attribute) and t.attr == "TYPE_CHECKING"
    )


def _import_nodes(
    tree: ast.AST, typing: bool = False
) -> Iterator[tuple[ast.Import | ast.ImportFrom, bool]]:
    """Every import below ``tree`` with whether it is under ``if TYPE_CHECKING:``."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and _is_main_guard(node):
            continue
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node, typing
        yield from _import_nodes(node, typing or _is_type_checking(node))


def scan() -> dict[str, Module]:
    """Every module of the repository with what it imports (resolved to repository modules
    where it can be: ``from netready.probes.rtt import twamp`` is ``netready.probes.rtt.twamp``)."""
    roots = _roots()
    mods: dict[str, Module] = {"agent": Module("agent", ROOT / "agent.py")}
    for folder, _ in roots:
        for path in sorted(folder.rglob("*.py")):
            name = _name_of(path, roots)
            if name is not None and name not in mods and ".venv" not in path.parts:
                mods[name] = Module(name, path)
    for m in mods.values():
        is_pkg = m.path.name == "__init__.py"
        runtime: set[str] = set()
        for node, typing in _import_nodes(ast.parse(m.path.read_text(), str(m.path))):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                base = node.module or ""
                if node.level:
                    up = m.name.split(".")[: len(m.name.split(".")) - node.level + is_pkg]
                    base = ".".join([*up, base] if base else up)
                targets = [
                    f"{base}.{a.name}" if f"{base}.{a.name}" in mods else base for a in node.names
                ]
            for t in targets:
                while t not in mods and "." in t and t.rsplit(".", 1)[0] in mods:
                    t = t.rsplit(".", 1)[0]  # a name inside a module
                m.imports.setdefault(t, node.lineno)
                if not typing:
                    runtime.add(t)
        m.typing_only = set(m.imports) - runtime
    return mods


MODS = scan()


def under(name: str, *packages: str) -> bool:
    return any(name == p or name.startswith(p + ".") for p in packages)


def where(m: Module, target: str) -> str:
    return f"{m.path.relative_to(ROOT)}:{m.imports[target]}: {m.name} imports {target}"


def is_core(m: Module) -> bool:
    """``netready/*.py`` outside ``netready/cli/`` (not the folders mapped into the package)."""
    return m.path.parent == ROOT / "netready"


def library(m: Module) -> bool:
    """A module of the installed package other than the CLI."""
    return under(m.name, "netready") and not under(m.name, CLI)


def violations() -> dict[str, list[tuple[str, str]]]:
    """rule -> [(module, where)]."""
    out: dict[str, list[tuple[str, str]]] = {
        "click": [],
        "cli": [],
        "core": [],
        "lab": [],
        "servers": [],
        "plugin_server": [],
    }
    for m in MODS.values():
        for t in m.imports:
            if (m.name, t) in KNOWN:
                continue
            if under(t, "click") and (library(m) or m.name == "agent"):
                out["click"].append((m.name, where(m, t)))
            if under(t, CLI) and library(m):
                out["cli"].append((m.name, where(m, t)))
            if is_core(m) and under(t, *NOT_CORE):
                out["core"].append((m.name, where(m, t)))
            if under(t, "netready.lab") and not (
                under(m.name, "netready.lab", CLI, "bench") or m.path.is_relative_to(ROOT / "tests")
            ):
                out["lab"].append((m.name, where(m, t)))
            if under(m.name, SERVERS) and server_may_not(t):
                out["servers"].append((m.name, where(m, t)))
            if under(m.name, *PLUGINS) and under(t, SERVERS):
                out["plugin_server"].append((m.name, where(m, t)))
    return out


def server_may_not(target: str) -> bool:
    """A layer above the core that is neither the servers nor a module they share."""
    return under(target, *NOT_CORE) and not under(target, SERVERS, *SERVER_MAY_IMPORT)


VIOLATIONS = violations()


def _check(rule: str, what: str) -> None:
    bad = [w for _mod, w in VIOLATIONS[rule]]
    assert not bad, what + ":\n  " + "\n  ".join(bad)


def test_only_the_cli_imports_click() -> None:
    _check("click", "click outside netready/cli/ (raise a NetreadyError; the CLI prints it)")


def test_no_library_imports_the_cli() -> None:
    _check("cli", "a library module imports the command line")


def test_the_core_imports_no_plugin_lab_report_or_cli() -> None:
    _check("core", "the core (netready/*.py) imports a layer above it")


def test_only_the_cli_benchmarks_and_tests_import_the_lab() -> None:
    _check("lab", "the lab is imported from outside the CLI, bench/ and tests/")


def test_servers_import_only_the_wire_modules_they_share() -> None:
    _check(
        "servers",
        "a server imports a plugin module other than a shared wire module (SERVER_MAY_IMPORT), "
        "or a report, dashboard, lab or CLI module",
    )


def test_no_probe_or_collector_imports_a_server() -> None:
    _check("plugin_server", "a plugin imports a central server (share a wire module instead)")


def test_known_exceptions_are_still_needed() -> None:
    stale = [f"{mod} -> {t}" for mod, t in KNOWN if mod not in MODS or t not in MODS[mod].imports]
    assert not stale, "known layering exceptions no longer needed (remove them): " + ", ".join(
        stale
    )


def cycles(mods: dict[str, Module]) -> list[list[str]]:
    """Each strongly connected component of more than one module (or a module importing
    itself), as one cycle through it: [a, b, ..., a]."""
    graph = {
        n: [t for t in m.imports if t in mods and t not in m.typing_only] for n, m in mods.items()
    }
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    comps: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan, recursive: the graph is a few hundred nodes
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1 or v in graph[v]:
                comps.append(comp)

    for v in sorted(graph):
        if v not in index:
            visit(v)
    out = []
    for comp in comps:  # the shortest cycle through the component's first module (BFS)
        members, start = set(comp), min(comp)
        prev: dict[str, str] = {}
        queue, last = deque([start]), None
        while queue and last is None:
            u = queue.popleft()
            for w in graph[u]:
                if w == start:
                    last = u
                    break
                if w in members and w not in prev:
                    prev[w] = u
                    queue.append(w)
        assert last is not None
        path = [last]
        while path[-1] != start:
            path.append(prev[path[-1]])
        out.append([*reversed(path), start])
    return out


def test_no_import_cycles() -> None:
    found = cycles(MODS)
    assert not found, "import cycles:\n  " + "\n  ".join(" -> ".join(c) for c in found)


# ---- the guard itself ----------------------------------------------------------------------


def test_the_graph_sees_what_the_rules_are_about() -> None:
    """The scan finds the modules through the package-dir mapping and the imports inside
    functions (a lazy import is still a dependency)."""
    assert {"netready.probes.rtt", "netready.lab.netns", "netready.cli.servers", "agent"} <= set(
        MODS
    )
    # servers/reflector.py: `from netready.probes.rtt import twamp` -> the module, not the package
    assert "netready.probes.rtt.twamp" in MODS["netready.servers.reflector"].imports
    # netready/cli/servers.py imports the responder inside a command function
    assert "netready.servers.responder" in MODS["netready.cli.servers"].imports
    assert "click" in MODS["netready.cli.base"].imports
    # the speed endpoint shares the throughput probe's wire module, and the CLI runs it
    assert "netready.probes.throughput.wire" in MODS["netready.servers.speed"].imports
    assert "netready.servers.speed" in MODS["netready.cli.serve"].imports
    assert {"netready.servers", "netready.servers.guard"} <= set(MODS)


def test_the_server_rule_tells_a_wire_module_from_the_rest() -> None:
    """The guard of the server rule on names: shared wire modules (and their own
    sub-names) pass; a probe's edge, its declaration, a collector, the lab do not."""
    assert not server_may_not("netready.probes.throughput.wire")
    assert not server_may_not("netready.probes.rtt.twamp")
    assert not server_may_not("netready.servers.guard")
    assert not server_may_not("netready.inventory")  # the core
    for bad in (
        "netready.probes.throughput",
        "netready.probes.rtt.probe",
        "netready.probes.rtt",
        "netready.collectors.snmp",
        "netready.lab.netns",
        "netready.reports.readiness",
        "netready.cli.base",
    ):
        assert server_may_not(bad), bad


def test_the_cycle_finder_reports_a_cycle() -> None:
    """The finder on a made-up graph: a -> b -> c -> a, d -> d, e -> a (not in a cycle)."""
    fake = {
        n: Module(n, ROOT / n, {t: 1 for t in ts})
        for n, ts in {"a": ["b"], "b": ["c"], "c": ["a"], "d": ["d"], "e": ["a"]}.items()
    }
    assert sorted(cycles(fake)) == [["a", "b", "c", "a"], ["d", "d"]]
