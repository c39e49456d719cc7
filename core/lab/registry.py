"""Register checkpoints and datasets in the results database without evaluating anything.

The app's Home sidebar uses these: a checkpoint is loaded (which validates it, fingerprints it and
describes its shape) and a dataset is parsed (which validates every line) before anything is stored.
Both refuse in read-only demo mode (``settings.ensure_writable``), whatever the UI shows.

Display names: :func:`display_name` is the one name every page, figure and the CLI show for a checkpoint
(its stored alias, set at registration by ``checkpoints.default_display_name`` and editable with
:func:`rename_checkpoint`); links keep the stable name/fingerprint, so a rename breaks no link.

Out of scope: evaluation (core.lab.evaluate registers what it evaluates by itself).
"""

from __future__ import annotations

import unicodedata
from collections import Counter
from collections.abc import Iterable
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from common import settings
from common.errors import LabError
from core import checkpoints, datasets
from storage import repository
from storage.repository import CheckpointRecord, DatasetRecord

ALIAS_MAX_LEN = 40  # a display name typed by a user: fits a chip, a legend and a chart title


class AliasError(LabError):
    """A display name that cannot be used (empty, too long, control characters, or taken)."""


def display_name(record: CheckpointRecord) -> str:
    """The name every page shows for a checkpoint: its alias, else ``checkpoints.default_display_name``.

    >>> import dataclasses
    >>> from datetime import datetime
    >>> rec = CheckpointRecord("/runs/sb", "local", "/runs/sb", None, "ab" * 16, "/runs/sb", 6, 384, 384,
    ...     "mean", "cosine", 256, {"label": "starbucks (from default)"}, None, datetime(2026, 1, 1))
    >>> display_name(rec), display_name(dataclasses.replace(rec, alias="sb-120"))
    ('starbucks (from default)', 'sb-120')
    """
    return record.alias or checkpoints.default_display_name(record.name, record.kind, record.info)


def display_names(records: Iterable[CheckpointRecord]) -> dict[str, str]:
    """Fingerprint -> display name, unique: a checkpoint stored without an alias whose default name
    clashes with another's gets ``@<fingerprint prefix>`` (stored aliases are unique already)."""
    ordered = list(records)
    names = {r.fingerprint: display_name(r) for r in ordered}
    counts = Counter(names.values())
    for r in ordered:
        if counts[names[r.fingerprint]] > 1 and not r.alias:
            names[r.fingerprint] = f"{names[r.fingerprint]}@{r.fingerprint[:6]}"
    return names


def full_name(record: CheckpointRecord) -> str:
    """What a display name stands for, for a tooltip: ``name · path · fingerprint`` (no paths when
    read-only: a public demo never shows server paths)."""
    if settings.read_only():
        return f"{display_name(record)} · fingerprint {record.fingerprint[:12]}"
    where = "" if record.path in ("", record.name) else f" · {record.path}"
    return f"{record.name}{where} · fingerprint {record.fingerprint[:12]}"


def validate_alias(text: str, fingerprint: str, records: Iterable[CheckpointRecord]) -> str:
    """``text`` trimmed, if it can be the display name of checkpoint ``fingerprint``; else ``AliasError``.

    A display name is 1 to ``ALIAS_MAX_LEN`` characters without control characters, and no other
    checkpoint shows the same name (compared ignoring case, so two chips never read alike).
    """
    alias = " ".join(str(text).split())
    if not alias:
        raise AliasError("a display name cannot be empty")
    if len(alias) > ALIAS_MAX_LEN:
        raise AliasError(
            f"display name {alias[:20]!r}... is {len(alias)} characters; at most {ALIAS_MAX_LEN}"
        )
    if any(unicodedata.category(c).startswith("C") for c in alias):
        raise AliasError(f"display name {alias!r} contains control characters")
    for fp, name in display_names(records).items():
        if fp != fingerprint and name.casefold() == alias.casefold():
            raise AliasError(f"display name {alias!r} is taken by another checkpoint")
    return alias


def rename_checkpoint(
    checkpoint: str, alias: str, *, session_factory: sessionmaker[Session]
) -> CheckpointRecord:
    """Give a registered checkpoint (name, ``default`` or fingerprint) a new display name.

    Raises:
        ReadOnlyError: in read-only demo mode.
        NotFoundError: no registered checkpoint has this name or fingerprint.
        AliasError: the display name is empty, too long, has control characters or is taken.
    """
    settings.ensure_writable("renaming a checkpoint")
    with session_factory() as s, s.begin():
        record = repository.get_checkpoint(s, checkpoint)
        if record is None:
            raise repository.NotFoundError(
                f"no registered checkpoint named {checkpoint!r} (see `python -m core checkpoints`)"
            )
        clean = validate_alias(alias, record.fingerprint, repository.list_checkpoints(s))
        try:
            return repository.set_checkpoint_alias(s, record.fingerprint, clean)
        except repository.AliasTakenError as exc:
            raise AliasError(str(exc)) from None


def checkpoint_values(info: checkpoints.CheckpointInfo) -> dict[str, Any]:
    """Keyword arguments of ``repository.upsert_checkpoint`` for a described checkpoint."""
    return {
        "name": info.name,
        "kind": info.kind,
        "location": info.location,
        "revision": info.revision,
        "fingerprint": info.fingerprint,
        "path": info.path,
        "num_layers": info.num_layers,
        "hidden_size": info.hidden_size,
        "embedding_dim": info.embedding_dim,
        "pooling": info.pooling,
        "similarity": info.similarity,
        "max_seq_length": info.max_seq_length,
        "info": info.to_dict(),
        "alias": checkpoints.default_display_name(info.name, info.kind, {"label": info.label}),
    }


def dataset_values(spec: datasets.DatasetSpec) -> dict[str, Any]:
    """Keyword arguments of ``repository.upsert_dataset`` (parses the dataset: raises on bad input)."""
    described = datasets.describe_dataset(spec)
    return {
        "name": spec.name,
        "kind": spec.kind,
        "path": str(spec.path),
        "split": spec.split,
        "fingerprint": str(described["fingerprint"]),
        "n_items": int(described["n_items"]),
        "info": described,
    }


def register_checkpoint(
    checkpoint: str | checkpoints.CheckpointSpec, *, session_factory: sessionmaker[Session]
) -> CheckpointRecord:
    """Load ``checkpoint`` (folder, hub id@rev or ``default``) and store its description.

    Raises:
        ReadOnlyError: in read-only demo mode.
        CheckpointError: the checkpoint cannot be found or loaded (the message says why).
    """
    settings.ensure_writable("registering a checkpoint")
    loaded = checkpoints.load(checkpoint)
    factory = session_factory
    with factory() as s, s.begin():
        return repository.upsert_checkpoint(s, **checkpoint_values(loaded.info))


def register_dataset(spec: datasets.DatasetSpec, *, session_factory: sessionmaker[Session]) -> DatasetRecord:
    """Validate a dataset and store its description.

    Raises:
        ReadOnlyError: in read-only demo mode.
        DatasetError: a malformed file (the message names the file and line).
    """
    settings.ensure_writable("registering a dataset")
    values = dataset_values(spec)
    factory = session_factory
    with factory() as s, s.begin():
        return repository.upsert_dataset(s, **values)
