"""Who may read and write which documents: the one access policy every path goes through.

A document's access groups decide who reads it: a document without groups is public (every
caller reads it); a grouped one is read by callers holding at least one of its groups. Writes
are narrower than reads, so that one tenant can never change what another tenant's users are
told:

- a caller limited to groups writes (adds, replaces, deletes) only documents whose groups are
  all its own, never public ones; a caller without groups writes only public documents; the
  operator (the CLI, an admin key without groups) writes anything;
- a write that would touch a document the caller may not write is refused exactly like a write
  to a document that does not exist (the same message, the same status), so a refusal never
  tells a caller that a hidden id exists;
- the ids a caller chooses are namespaced by where the document goes: a caller that is not the
  operator writes `x` into groups `alpha` as `@alpha/x` (`@alpha+beta/x` into both, `@public/x`
  without groups), so two tenants' documents (and uploads of the same file name) never collide,
  and no tenant can name another's document. An id that already carries the right namespace
  is kept as it is, so a caller can re-send the ids it reads.

    >>> alpha = Access.of(["alpha"])
    >>> alpha.may_read(("alpha", "beta")), alpha.may_write(("alpha", "beta")), alpha.may_write(())
    (True, False, False)
    >>> alpha.document_id("report.pdf", alpha.write_groups(None))
    '@alpha/report.pdf'

Statistics follow reads: ranking and every number a caller sees are computed over the
documents it may read, as if the others did not exist (`ragtune.retrieval.index`).

The read rule is written here once and evaluated three ways, which select the same documents:
`may_read` (one document's groups: the routes), `sql_filter` (a condition for SQL stores) and
`document_mask` (boolean arrays: the in-memory search index).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np

from ragtune.errors import AccessDenied, InputError

GROUP_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
PUBLIC_NAMESPACE = "public"  # the namespace of documents without groups (not a group name)


def check_group_names(groups: Iterable[object]) -> tuple[str, ...]:
    """Groups as a sorted tuple of valid names; `InputError` naming the first bad one.

    Names are letters, digits, `_`, `.` and `-` (64 at most, not starting with punctuation), so
    they can stand in a document's namespace; `public` is reserved (no groups = public)."""
    names = set()
    for group in groups:
        if not isinstance(group, str):
            raise InputError(f"access groups are strings, got {group!r}")
        name = group.strip()
        if not name:
            continue
        if not GROUP_NAME.match(name):
            raise InputError(f"group name {name[:80]!r} is not usable: letters, digits, "
                             "'_', '.' and '-' only, at most 64")
        if name == PUBLIC_NAMESPACE:
            raise InputError("'public' is reserved: a document without groups is public")
        names.add(name)
    return tuple(sorted(names))


@dataclass(frozen=True)
class Access:
    """A caller's rights: the groups it holds, or everything (the operator).

    Library calls take `access=None` for the operator (the CLI on the machine itself); the
    service passes every key's `Access` (`KeyRecord.access`)."""

    groups: tuple[str, ...] = ()
    everything: bool = False

    @classmethod
    def of(cls, groups: Iterable[str]) -> Access:
        """A caller limited to `groups` (none: public documents only)."""
        return cls(tuple(sorted({g.strip() for g in groups if g.strip()})))

    @classmethod
    def operator(cls) -> Access:
        """The operator: reads and writes every document, ids as given."""
        return cls(everything=True)

    @classmethod
    def from_view(cls, view: Iterable[str] | None) -> Access:
        """The caller a search view stands for (the inverse of `view`): None is the operator,
        else a caller holding exactly the groups given (as given: not cleaned like `of`)."""
        return cls.operator() if view is None else cls(tuple(sorted(set(view))))

    @property
    def view(self) -> tuple[str, ...] | None:
        """The groups to search with (None = unrestricted), as `search(groups=...)` takes."""
        return None if self.everything else self.groups

    def may_read(self, doc_groups: Iterable[str]) -> bool:
        """Public, or shares a group with the caller (or the caller is the operator)."""
        doc_groups = tuple(doc_groups)
        return self.everything or not doc_groups or not set(doc_groups).isdisjoint(self.groups)

    def sql_filter(self, doc_id_column: str, groups_table: str = "document_groups",
                   mark: str = "?") -> tuple[str, tuple[str, ...]]:
        """`may_read` as an SQL condition on a document id column, with its parameters (each
        written as `mark`: "?" for SQLite, "%s" for PostgreSQL); `groups_table` holds one
        (doc_id, grp) row per group of a document (none: public).

            >>> Access.of(["alpha"]).sql_filter("d.id")[1]
            ('alpha',)
        """
        if self.everything:
            return "1 = 1", ()
        grouped = f"SELECT 1 FROM {groups_table} g WHERE g.doc_id = {doc_id_column}"
        public = f"NOT EXISTS ({grouped})"
        if not self.groups:
            return public, ()
        marks = ",".join([mark] * len(self.groups))
        return f"({public} OR EXISTS ({grouped} AND g.grp IN ({marks})))", self.groups

    def document_mask(self, public: np.ndarray, by_group: Mapping[str, np.ndarray]
                      ) -> np.ndarray:
        """`may_read` over arrays of documents: one boolean per document, from which documents
        are `public` (no groups) and, per group, which are in it (`by_group`)."""
        if self.everything:
            return np.ones(len(public), dtype=bool)
        mask = np.array(public, dtype=bool)
        for group in self.groups:
            members = by_group.get(group)
            if members is not None:
                mask |= members
        return mask

    def may_read_every(self, doc_groups: Iterable[tuple[str, ...] | None]) -> bool:
        """Whether the caller may read every one of some documents, given each one's groups
        (None: a document no longer stored, whose groups are unknown: the operator's only).
        What an adapter learned from decides who may use it."""
        return self.everything or all(g is not None and self.may_read(g) for g in doc_groups)

    def holds_all(self, groups: Iterable[str]) -> bool:
        """Whether the caller holds every one of `groups` (what reading something drawn from
        several groups' documents at once needs, e.g. a trace: its passages and its asker)."""
        return self.everything or set(groups) <= set(self.groups)

    def may_write(self, doc_groups: Iterable[str]) -> bool:
        """Whether the caller may put a document into (or replace, or delete one in) exactly
        these groups: all of them its own; public ones only without groups of its own."""
        doc_groups = tuple(doc_groups)
        if self.everything:
            return True
        if not self.groups:
            return not doc_groups
        return bool(doc_groups) and set(doc_groups) <= set(self.groups)

    def write_groups(self, requested: Iterable[str] | None, what: str = "write"
                     ) -> tuple[str, ...]:
        """The groups a write goes into: those requested, else the caller's own.
        `AccessDenied` when the caller may not write there (`what` names the write)."""
        groups = check_group_names(self.groups if requested is None else requested)
        if self.may_write(groups):
            return groups
        if not self.groups:
            raise AccessDenied(f"{what}: this key has no groups, so it may only write "
                               "documents visible to everyone")
        raise AccessDenied(f"{what}: this key may only write into its groups "
                           f"({', '.join(self.groups)})")

    def document_id(self, doc_id: str, groups: tuple[str, ...]) -> str:
        """The stored id of a document the caller names `doc_id` and writes into `groups`:
        namespaced by the groups unless the caller is the operator (kept as it is when it
        already carries that namespace)."""
        if self.everything:
            return doc_id
        prefix = f"@{'+'.join(groups) or PUBLIC_NAMESPACE}/"
        return doc_id if doc_id.startswith(prefix) else prefix + doc_id


OPERATOR = Access.operator()
