"""The machine fingerprint every stored measurement is keyed by (CPU, cores, torch threads and version)."""

from __future__ import annotations

import hashlib
import json
import os
import platform
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import psutil

from core.provenance import cpu_model

if TYPE_CHECKING:
    pass


@dataclass(frozen=True)
class Machine:
    """What the timings depend on. Two measurements are comparable only with equal fingerprints."""

    cpu_model: str
    logical_cores: int
    physical_cores: int
    torch_threads: int
    torch_version: str
    arch: str

    @property
    def fingerprint(self) -> str:
        """Hash of every field (32 hex chars)."""
        payload = json.dumps(asdict(self), sort_keys=True).encode()
        return hashlib.sha256(b"mlab-machine-v1" + payload).hexdigest()[:32]

    @property
    def label(self) -> str:
        """Short human-readable description: ``AMD EPYC, 2 cores, 2 torch threads``."""
        return f"{self.cpu_model}, {self.logical_cores} cores, {self.torch_threads} torch threads"

    def to_dict(self) -> dict[str, Any]:
        """Plain dict of the fields plus ``fingerprint``."""
        return {**asdict(self), "fingerprint": self.fingerprint}


def current_machine() -> Machine:
    """This machine as torch will run now (torch's current intra-op thread count)."""
    import torch  # heavy: imported on first use

    logical = os.cpu_count() or 1
    return Machine(
        cpu_model=cpu_model(),
        logical_cores=logical,
        physical_cores=int(psutil.cpu_count(logical=False) or logical),
        torch_threads=int(torch.get_num_threads()),
        torch_version=str(torch.__version__),
        arch=platform.machine() or "unknown",
    )
