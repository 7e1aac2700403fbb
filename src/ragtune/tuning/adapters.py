"""Adapters trained for a knowledge base, and which of them a caller may use.

Adapters are remembered in the data home's registry (`<home>/adapters.json`, written by
training); each one's manifest names the knowledge base its examples came from and the
documents they quoted. An adapter's weights learned those documents, so only a caller that may
read every one of them may use it (`ragtune.access`): for any other caller it is not there,
exactly like a missing one.

    >>> adapters_for(settings.home, kb, Access.of(["support"]))
    {'support-raft': PosixPath('/home/me/adapters/support-raft')}
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from ragtune.access import OPERATOR, Access
from ragtune.errors import InputError
from ragtune.tuning.manifest import read_manifest, registered_adapters

if TYPE_CHECKING:
    from ragtune.kb import KnowledgeBase


def adapters_for(home: Path, kb: KnowledgeBase, access: Access | None = None
                 ) -> dict[str, Path]:
    """Adapters trained for `kb` (RAFT: `ragtune tune --raft --kb NAME`), registered in `home`
    and still on disk, by folder name (the first of a name), that the caller may use
    (`access=None`: the operator, who may use all)."""
    access = access or OPERATOR
    found: dict[str, Path] = {}
    for path in map(Path, registered_adapters(home)):
        try:  # only the manifest: no staleness check (that would re-read every document)
            kb_info = read_manifest(path).knowledge_base
        except InputError:
            continue  # gone or unreadable
        if kb_info is None or kb_info.name != kb.name or path.name in found:
            continue
        learned = (kb.store.get_document(d) for d in kb_info.document_hashes)
        if access.may_read_every(None if d is None else d.groups for d in learned):
            found[path.name] = path
    return found
