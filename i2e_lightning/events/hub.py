"""The published I2E datasets by name: a Hugging Face dataset config and split -> local parquet files.

The paper's datasets live on the Hugging Face Hub as ``UESTC-BICS/I2E`` (configs ``I2E-CIFAR10``,
``I2E-CIFAR100``, ``I2E-ImageNet``, ``I2E-FashionMNIST`` ...; splits ``train`` and ``validation``),
in parquet (docs/spec.md §2). :func:`hub_parquet_files` finds the files of one config and split
from the dataset card's ``configs:`` table, fetches them into the Hugging Face cache with
``huggingface_hub`` (the optional ``hub`` extra), and returns their paths for the parquet reader.
With ``HF_HUB_OFFLINE=1`` nothing is fetched: the files come from the cache, or a one-line error
says that they are not there.

A dataset path ``hf://I2E-CIFAR10/train`` (or ``hf://OWNER/REPO/CONFIG/SPLIT``) names the same in
configs and on the command line; :class:`~i2e_lightning.events.EventFileDataset` accepts it.
"""

from __future__ import annotations

import fnmatch
from pathlib import Path

import yaml

__all__ = ["HF_PREFIX", "HF_REPO", "HubPath", "hub_parquet_files", "parse_hub_path"]

HF_REPO = "UESTC-BICS/I2E"
HF_PREFIX = "hf://"
_SPLIT_ALIASES = {"val": "validation", "valid": "validation", "test": "validation"}


class HubPath(tuple):
    """``(repo_id, config, split)`` of a ``hf://`` dataset path."""

    __slots__ = ()

    def __new__(cls, repo_id: str, config: str, split: str) -> HubPath:
        return super().__new__(cls, (repo_id, config, split))

    repo_id = property(lambda self: self[0])
    config = property(lambda self: self[1])
    split = property(lambda self: self[2])


def parse_hub_path(path: str | Path) -> HubPath | None:
    """``"hf://I2E-CIFAR10/train"`` or ``"hf://OWNER/REPO/CONFIG/SPLIT"`` -> :class:`HubPath`; other paths -> None."""
    text = str(path)
    if not text.startswith(HF_PREFIX):
        return None
    parts = [p for p in text[len(HF_PREFIX) :].split("/") if p]
    if len(parts) == 2:
        return HubPath(HF_REPO, *parts)
    if len(parts) == 4:
        return HubPath(f"{parts[0]}/{parts[1]}", parts[2], parts[3])
    raise ValueError(
        f"{text!r} is not a Hugging Face dataset path: write hf://CONFIG/SPLIT (repository {HF_REPO}), "
        "e.g. hf://I2E-CIFAR10/train, or hf://OWNER/REPO/CONFIG/SPLIT"
    )


def _require_hub():
    try:
        import huggingface_hub
    except ImportError:
        raise ImportError(
            "loading the published datasets by name needs huggingface_hub and pyarrow: pip install 'i2e_lightning[hub]'"
        ) from None
    return huggingface_hub


def _card_configs(readme: Path) -> dict[str, dict[str, list[str]]]:
    """The dataset card's ``configs:`` front matter -> {config: {split: [path patterns]}}."""
    text = readme.read_text(encoding="utf-8")
    if not text.startswith("---"):
        return {}
    end = text.find("\n---", 3)
    try:
        meta = yaml.safe_load(text[3:end] if end > 0 else "") or {}
    except yaml.YAMLError:
        return {}
    table: dict[str, dict[str, list[str]]] = {}
    for entry in meta.get("configs") or []:
        if not isinstance(entry, dict) or "config_name" not in entry:
            continue
        files = entry.get("data_files") or []
        splits: dict[str, list[str]] = {}
        if isinstance(files, str):
            splits["train"] = [files]
        for item in files if isinstance(files, list) else []:
            if isinstance(item, dict) and "split" in item:
                patterns = item.get("path") or []
                splits[str(item["split"])] = [patterns] if isinstance(patterns, str) else [str(p) for p in patterns]
        table[str(entry["config_name"])] = splits
    return table


def _offline_hint(repo_id: str) -> str:
    return (
        f"with HF_HUB_OFFLINE=1 only the Hugging Face cache is read; run once online (unset HF_HUB_OFFLINE) to fetch "
        f"{repo_id} into the cache"
    )


def hub_parquet_files(
    config: str,
    split: str = "train",
    *,
    repo_id: str = HF_REPO,
    revision: str | None = None,
    cache_dir: str | Path | None = None,
) -> list[Path]:
    """Local parquet files of ``config`` / ``split`` of a Hugging Face dataset, fetched into the cache if needed.

    Args:
        config: the dataset config, e.g. ``"I2E-CIFAR10"``.
        split: ``"train"`` or ``"validation"`` (``"val"`` and ``"test"`` mean ``"validation"`` when the
            dataset has no split of that name).
        repo_id: the dataset repository (default ``UESTC-BICS/I2E``).
        revision: a branch, tag or commit (default: the main branch).
        cache_dir: the Hugging Face cache (default: ``HF_HUB_CACHE`` / ``~/.cache/huggingface/hub``).

    Raises:
        ImportError: without the ``hub`` extra. FileNotFoundError: a file is not cached in offline mode,
        or the config / split does not exist (the message lists what exists).
    """
    hub = _require_hub()
    from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError

    common = {"repo_type": "dataset", "revision": revision, "cache_dir": cache_dir}
    try:
        readme = Path(hub.hf_hub_download(repo_id, "README.md", **common))
        configs = _card_configs(readme)
    except LocalEntryNotFoundError:
        raise FileNotFoundError(f"{repo_id} is not in the Hugging Face cache: {_offline_hint(repo_id)}") from None
    except EntryNotFoundError:
        configs = {}
    if configs:
        if config not in configs:
            raise FileNotFoundError(
                f"{repo_id} has no config {config!r}; its configs are: {', '.join(sorted(configs))}"
            )
        splits = configs[config]
        name = split if split in splits else _SPLIT_ALIASES.get(split, split)
        if name not in splits:
            raise FileNotFoundError(
                f"{repo_id} config {config!r} has no split {split!r}; its splits are: {', '.join(sorted(splits))}"
            )
        patterns = splits[name]
    else:  # no card table: the Hub's own layout conventions
        name = _SPLIT_ALIASES.get(split, split) if split in _SPLIT_ALIASES else split
        patterns = [f"{config}/{name}-*.parquet", f"{config}/{name}/*.parquet", f"{config}/*/{name}-*.parquet"]
    try:
        root = Path(hub.snapshot_download(repo_id, allow_patterns=patterns, **common))
    except LocalEntryNotFoundError:
        raise FileNotFoundError(
            f"{repo_id} {config}/{split} is not in the Hugging Face cache: {_offline_hint(repo_id)}"
        ) from None
    files = sorted(
        p
        for p in root.rglob("*.parquet")
        if any(fnmatch.fnmatch(p.relative_to(root).as_posix(), pattern) for pattern in patterns)
    )
    if not files:
        raise FileNotFoundError(
            f"no parquet files of {repo_id} {config}/{split} (patterns {patterns}) in {root}: "
            + (_offline_hint(repo_id) if hub.constants.HF_HUB_OFFLINE else "the dataset lists none")
        )
    return files
