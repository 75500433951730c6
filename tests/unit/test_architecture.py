"""The dependency rules of DESIGN.md section 2, checked on every module's imports.

- nobody imports another context's `tables` or `repository`;
- `api` and `cli` modules import no `tables` or `repository` at all (they call services);
- `domain` modules import only the standard library, `core` and their own context's domain-level modules;
- `bureau` and `supervision` import nothing from ledger, payments, lending or colending;
- `policy` and `analytics` are pure: no database, no web framework;
- `core` imports no context.

Alembic environments (`creditstack.migrations`) are exempt: they must see every table of their database.
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src" / "creditstack"
CONTEXTS = {
    "ledger",
    "payments",
    "lending",
    "colending",
    "policy",
    "analytics",
    "scoring",
    "bureau",
    "supervision",
    "simulation",
}
PLATFORM_ONLY = {"ledger", "payments", "lending", "colending"}
IO_PACKAGES = {"sqlalchemy", "psycopg", "fastapi", "starlette", "httpx", "alembic", "typer"}


def _modules(src: Path) -> list[tuple[str, Path]]:
    found = []
    for path in sorted(src.rglob("*.py")):
        rel = path.relative_to(src.parent).with_suffix("")
        found.append((".".join(rel.parts), path))
    return found


def _imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text())
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
            names.extend(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def violations(src: Path = SRC) -> list[str]:
    problems = []
    for module, path in _modules(src):
        parts = module.split(".")
        context = parts[1] if len(parts) > 1 else ""
        leaf = parts[-1]
        if context == "migrations":  # an Alembic environment registers every table of its database
            continue
        for name in _imports(path):
            target = name.split(".")
            if target[0] != "creditstack":
                if context in {"policy", "analytics"} and target[0] in IO_PACKAGES:
                    problems.append(f"{module} (pure) imports {name}")
                continue
            other = target[1] if len(target) > 1 else ""
            tail = target[2] if len(target) > 2 else ""
            if tail in {"tables", "repository"} and other not in {context, "core"}:
                problems.append(f"{module} imports another context's {tail}: {name}")
            if leaf in {"api", "cli"} and tail in {"tables", "repository"}:
                problems.append(f"{module} (an entry point) imports {name}")
            if context in {"bureau", "supervision"} and other in PLATFORM_ONLY:
                problems.append(f"{module} imports the platform's {other}")
            if context == "core" and other in CONTEXTS:
                problems.append(f"core module {module} imports context {other}")
            if leaf == "domain" and other not in {"core", context}:
                problems.append(f"domain module {module} imports {name}")
            if leaf == "domain" and tail in {"tables", "repository", "service", "api", "cli"}:
                problems.append(f"domain module {module} imports {name}")
    return problems


def test_dependency_rules_hold() -> None:
    assert violations() == []


def test_checker_catches_a_router_importing_a_repository(tmp_path: Path) -> None:
    fake = tmp_path / "creditstack"
    (fake / "payments").mkdir(parents=True)
    (fake / "payments" / "api.py").write_text("from creditstack.ledger.repository import lookup_keys\n")
    (fake / "bureau").mkdir()
    (fake / "bureau" / "service.py").write_text("from creditstack.ledger import service\n")
    found = violations(fake)
    assert any("another context's repository" in v for v in found)
    assert any("(an entry point)" in v for v in found)
    assert any("platform's ledger" in v for v in found)
