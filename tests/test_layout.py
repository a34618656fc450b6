"""The layout the README's code map describes: one-way dependencies, modules of one idea,
a contract written once."""

from __future__ import annotations

import ast
import re

from tests.stack import ROOT

MAX_LINES = 450
PACKAGES = ("killswitch", "brokers", "riskcontrol", "clients/python/killswitch_client")


def _modules(top: str) -> list:
    return [p for p in (ROOT / top).rglob("*.py") if "migrations" not in p.parts]


def _imports(path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_killswitch_imports_nothing_from_brokers():
    offenders = {str(p.relative_to(ROOT)): sorted(n for n in _imports(p) if n.split(".")[0] == "brokers")
                 for p in _modules("killswitch")}
    assert {k: v for k, v in offenders.items() if v} == {}


def test_the_trading_client_needs_only_redis_and_the_standard_library():
    import sys

    allowed = set(sys.stdlib_module_names) | {"redis", "killswitch_client"}
    offenders = {str(p.relative_to(ROOT)): sorted(n for n in _imports(p) if n.split(".")[0] not in allowed)
                 for p in _modules("clients/python/killswitch_client")}
    assert {k: v for k, v in offenders.items() if v} == {}


def test_no_module_is_past_450_lines():
    long = {str(p.relative_to(ROOT)): n for top in PACKAGES for p in _modules(top)
            if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert long == {}


def test_the_severity_order_is_written_once():
    """Lua scripts take it from the domain; no Python module outside the contract spells it."""
    from killswitch_client.contract import lua_severity_table

    from killswitch.distribution import scripts

    for lua in (ROOT / "killswitch" / "distribution" / "lua").glob("*.lua"):
        assert "running=0" not in lua.read_text(), f"{lua.name} holds its own copy of the severity order"
        assert lua_severity_table() in scripts.source(lua.stem)
    spelled = re.compile(r"""["']running["']\s*:\s*0""")
    copies = [str(p.relative_to(ROOT)) for top in PACKAGES for p in _modules(top) if spelled.search(p.read_text())]
    assert copies == []


def test_the_readme_code_map_matches_the_tree():
    """Every package of the project has its line in the README's code map, and every
    line names a package that exists."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Code map", 1)[1].split("\n## ", 1)[0]
    listed = set(re.findall(r"^\| `([\w/]+)/` \|", section, flags=re.M))
    packages = {str(p.parent.relative_to(ROOT)) for top in PACKAGES for p in (ROOT / top).rglob("__init__.py")
                if "migrations" not in p.parts and "management" not in p.parts}
    assert listed == packages
