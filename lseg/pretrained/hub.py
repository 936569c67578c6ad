"""Hugging Face Hub integration: :func:`download_repo` (used by ``resolve`` for ``owner/name``),
:func:`save_pretrained` with a model card (``model_card.md``, here) and :func:`push_to_hub`. The
files are those of ``PyTorchModelHubMixin``, written and read by :mod:`lseg.pretrained.checkpoints`.

>>> lseg.save_pretrained(model, "out/", model_card=True)                                       # doctest: +SKIP
>>> lseg.push_to_hub(model, "me/lseg-vitl16")                                                 # doctest: +SKIP
"""

from __future__ import annotations

import os
import tempfile
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

from lseg.errors import CheckpointError, LSegError
from lseg.io import atomic_write
from lseg.models.config import ResNetConfig, SpatialBlockConfig
from lseg.pretrained import checkpoints
from lseg.pretrained.checkpoints import CONFIG_NAME, WEIGHTS_NAME

if TYPE_CHECKING:
    from lseg.models.lseg import LSeg

MODEL_CARD_NAME = "README.md"
_TEMPLATE = ("lseg.pretrained", "model_card.md")


def download_repo(repo_id: str, *, revision: str | None = None,
                  cache_dir: str | os.PathLike[str] | None = None, force_download: bool = False,
                  token: str | bool | None = None, local_files_only: bool = False) -> Path:
    """The local folder of Hub repo ``repo_id`` (``model.safetensors`` + ``config.json``), from
    ``snapshot_download``; every failure is one :class:`CheckpointError`."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (
        GatedRepoError,
        HFValidationError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    try:
        folder = snapshot_download(
            repo_id, revision=revision, cache_dir=cache_dir, force_download=force_download, token=token,
            local_files_only=local_files_only, allow_patterns=[WEIGHTS_NAME, CONFIG_NAME],
            library_name="lseg",
        )
    except HFValidationError:
        raise CheckpointError(f"checkpoint not found: {repo_id} (no such file or folder, and not a Hub "
                              "repo id like 'owner/name')") from None
    except LocalEntryNotFoundError:
        raise CheckpointError(
            f"cannot get {repo_id!r} from the Hugging Face Hub: offline (HF_HUB_OFFLINE=1, LSEG_OFFLINE=1, "
            "local_files_only, or no network) and not in the local Hub cache; there is also no local "
            f"folder {repo_id!r}. Download it where the Hub is reachable "
            f"(hf download {repo_id} --local-dir DIR) and pass DIR"
        ) from None
    except GatedRepoError:
        raise CheckpointError(f"Hub repo {repo_id!r} is gated: accept its terms on huggingface.co and log in "
                              "(hf auth login)") from None
    except RepositoryNotFoundError:
        raise CheckpointError(f"no Hub repo {repo_id!r} (or it is private: log in with `hf auth login`), "
                              "and no local folder of that name") from None
    except RevisionNotFoundError:
        raise CheckpointError(f"Hub repo {repo_id!r} has no revision {revision!r}") from None
    except OSError as e:  # network failures (requests/httpx errors subclass OSError or HfHubHTTPError)
        raise CheckpointError(f"cannot download {repo_id!r} from the Hugging Face Hub: {_one_line(e)}") from None
    local = Path(str(folder))
    if not (local / WEIGHTS_NAME).is_file() or not (local / CONFIG_NAME).is_file():
        raise CheckpointError(f"Hub repo {repo_id!r} is not an lseg model: it needs {WEIGHTS_NAME} and "
                              f"{CONFIG_NAME} (convert an official checkpoint with `lseg convert`)")
    return local


def save_pretrained(model: LSeg, directory: str | os.PathLike[str], *, model_card: bool = False,
                    repo_id: str | None = None, **card_fields: str) -> Path:
    """Write ``model.safetensors`` + ``config.json``, and with ``model_card=True`` a ``README.md``
    model card (:func:`render_model_card`). Returns the folder (:func:`lseg.load_model` reads it)."""
    out = checkpoints.save_pretrained(model, directory)
    if model_card:
        text = render_model_card(model, repo_id=repo_id, **card_fields)
        atomic_write(out / MODEL_CARD_NAME, lambda p: p.write_text(text, encoding="utf-8"))
    return out


def push_to_hub(model: LSeg, repo_id: str, *, private: bool | None = None, token: str | bool | None = None,
                commit_message: str = "Upload LSeg model", revision: str | None = None,
                create_pr: bool = False, model_card: bool = True, **card_fields: str) -> str:
    """Create ``repo_id`` if needed and upload ``model.safetensors``, ``config.json`` and a model card.

    Returns:
        The URL of the commit (or of the pull request with ``create_pr``).

    Raises:
        LSegError: offline, not logged in, or the upload failed.
    """
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

    api = HfApi(token=token)
    with tempfile.TemporaryDirectory(prefix="lseg-push-") as tmp:
        save_pretrained(model, tmp, model_card=model_card, repo_id=repo_id, **card_fields)
        try:
            api.create_repo(repo_id, private=private, exist_ok=True)
            info = api.upload_folder(
                repo_id=repo_id, folder_path=tmp, commit_message=commit_message, revision=revision,
                create_pr=create_pr,
            )
        except OfflineModeIsEnabled:
            raise LSegError(f"cannot push to {repo_id!r}: Hugging Face Hub offline mode is on "
                            "(HF_HUB_OFFLINE=1)") from None
        except (HfHubHTTPError, OSError, *_network_errors()) as e:
            raise LSegError(f"cannot push to {repo_id!r}: {_one_line(e)} (no network, or the Hub is "
                            "unreachable?)") from None
    url = getattr(info, "pr_url", None) or getattr(info, "commit_url", None)
    return str(url or f"https://huggingface.co/{repo_id}")


def render_model_card(model: LSeg, repo_id: str | None = None, **fields: str) -> str:
    """The model card (``lseg/pretrained/model_card.md``) filled in for ``model``: its ``{{ name }}``
    placeholders get ``repo_id``, ``model_name``, ``image_encoder``, ``text_encoder``, ``embed_dim``,
    ``parameters``, ``spatial_block``, ``trained_on``, ``license`` (default ``other``), overridden by
    ``fields`` (e.g. ``trained_on="ADE20K"``)."""
    cfg = model.config
    n_params = sum(p.numel() for p in model.parameters())
    values = {
        "repo_id": repo_id or "<owner>/<repo>",
        "title": f"{repo_id}: LSeg ({cfg.name})" if repo_id else f"LSeg ({cfg.name})",
        "model_name": cfg.name,
        "image_encoder": (
            f"{cfg.backbone.torchvision_name} (torchvision; layers {list(cfg.backbone.layers)})"
            if isinstance(cfg.backbone, ResNetConfig)
            else f"{cfg.backbone.timm_name} (timm; hooks {list(cfg.backbone.hooks)})"
        ),
        "text_encoder": f"CLIP {cfg.text.clip_name} text tower (frozen)",
        "embed_dim": str(cfg.embed_dim),
        "parameters": f"{n_params / 1e6:.1f} M",
        "spatial_block": _describe(cfg.spatial_block),
        "trained_on": "unknown (fill in: which official checkpoint or which fine-tuning data)",
        "license": "other",
    }
    values.update(fields)
    text = resources.files(_TEMPLATE[0]).joinpath(_TEMPLATE[1]).read_text(encoding="utf-8")
    for key, value in values.items():
        text = text.replace("{{ " + key + " }}", str(value))
    if "{{ " in text:
        start = text.index("{{ ")
        raise ValueError(f"model card template has an unfilled placeholder: {text[start:start + 30]!r}")
    return text


def _describe(block: SpatialBlockConfig) -> str:
    if block.arch_option == 0:
        return "none"
    return f"arch_option {block.arch_option}, block_depth {block.block_depth}, {block.activation}"


def _network_errors() -> tuple[type[BaseException], ...]:
    """Transport errors of the HTTP clients huggingface_hub uses (httpx2, httpx, requests), which it
    lets through as they are."""
    import importlib

    errors: list[type[BaseException]] = []
    for module, name in (("httpx2", "TransportError"), ("httpx", "TransportError"), ("requests", "RequestException")):
        try:
            errors.append(getattr(importlib.import_module(module), name))
        except (ImportError, AttributeError):
            pass
    return tuple(errors)


def _one_line(e: BaseException) -> str:
    lines = str(e).strip().splitlines()
    return lines[0] if lines else type(e).__name__
