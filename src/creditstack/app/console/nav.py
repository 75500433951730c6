"""The console's navigation: sections, and the entries each page module adds to them.

Adding a page: write a router module under `pages/` with its `router` and its `NAV` entries, add a template
under `templates/`, and list the module in `creditstack.app.console.PAGE_MODULES`. The base layout shows,
for the signed-in role, every section that has an entry for it, in the order below.
"""

from __future__ import annotations

from dataclasses import dataclass

from creditstack.core.security import Role

#: Sections in display order. Scoring holds the operator's models-and-monitoring page (`pages/scoring.py`);
#: bureau and supervision are placeholders that later issues fill in (the bureau's files, reports and
#: disputes; the supervisor's returns and stress tests): a section with no entry for a role is not shown.
SECTIONS: tuple[str, ...] = ("Accounts", "Portfolio", "Partners", "Scoring", "Bureau", "Supervision")


@dataclass(frozen=True, slots=True)
class NavEntry:
    """One link in the navigation: shown to `roles`, active on any path under `path`."""

    section: str
    label: str
    path: str
    roles: frozenset[Role]

    def __post_init__(self) -> None:
        if self.section not in SECTIONS:
            raise ValueError(f"unknown console section {self.section!r}; add it to SECTIONS")


@dataclass(frozen=True, slots=True)
class NavSection:
    title: str
    entries: tuple[NavEntry, ...]


def nav_for(entries: tuple[NavEntry, ...], role: Role) -> tuple[NavSection, ...]:
    """The sections and entries a role sees, in section order, entries in the order they were declared."""
    visible = [e for e in entries if role in e.roles]
    return tuple(
        NavSection(title, tuple(e for e in visible if e.section == title))
        for title in SECTIONS
        if any(e.section == title for e in visible)
    )
