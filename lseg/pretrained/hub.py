"""Hugging Face Hub: :func:`download_repo` (``resolve`` of ``owner/name``) and :func:`push_to_hub`; the
files are :func:`save_pretrained`'s (:mod:`lseg.pretrained.checkpoints`)."""

from __future__ import annotations

import contextlib
import importlib
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from lseg.errors import CheckpointError, LSegError
from lseg.pretrained.checkpoints import CONFIG_NAME, WEIGHTS_NAME, save_pretrained

if TYPE_CHECKING:
    from lseg.models.lseg import LSeg

__all__ = ["download_repo", "push_to_hub", "save_pretrained"]


def download_repo(repo_id: str, *, revision: str | None = None,
                  cache_dir: str | os.PathLike[str] | None = None, force_download: bool = False,
                  token: str | bool | None = None, local_files_only: bool = False) -> Path:
    """The local folder of Hub repo ``repo_id`` (``snapshot_download``); a failure is a CheckpointError."""
    from huggingface_hub import errors as hf
    from huggingface_hub import snapshot_download

    try:
        folder = snapshot_download(
            repo_id, revision=revision, cache_dir=cache_dir, force_download=force_download, token=token,
            local_files_only=local_files_only, allow_patterns=[WEIGHTS_NAME, CONFIG_NAME],
            library_name="lseg",
        )
    except hf.HFValidationError:
        raise CheckpointError(f"checkpoint not found: {repo_id} (no such file or folder, and not a Hub "
                              "repo id like 'owner/name')") from None
    except hf.LocalEntryNotFoundError:
        raise CheckpointError(
            f"cannot get {repo_id!r} from the Hugging Face Hub: offline (HF_HUB_OFFLINE=1, LSEG_OFFLINE=1, "
            "local_files_only, or no network) and not in the local Hub cache; there is also no local "
            f"folder {repo_id!r}. Download it where the Hub is reachable "
            f"(hf download {repo_id} --local-dir DIR) and pass DIR"
        ) from None
    except hf.GatedRepoError:
        raise CheckpointError(f"Hub repo {repo_id!r} is gated: accept its terms on huggingface.co and log in "
                              "(hf auth login)") from None
    except hf.RepositoryNotFoundError:
        raise CheckpointError(f"no Hub repo {repo_id!r} (or it is private: log in with `hf auth login`), "
                              "and no local folder of that name") from None
    except hf.RevisionNotFoundError:
        raise CheckpointError(f"Hub repo {repo_id!r} has no revision {revision!r}") from None
    except OSError as e:  # network failures (requests/httpx errors subclass OSError or HfHubHTTPError)
        raise CheckpointError(f"cannot download {repo_id!r} from the Hugging Face Hub: {_one_line(e)}") from None
    local = Path(str(folder))
    if not (local / WEIGHTS_NAME).is_file() or not (local / CONFIG_NAME).is_file():
        raise CheckpointError(f"Hub repo {repo_id!r} is not an lseg model: it needs {WEIGHTS_NAME} and "
                              f"{CONFIG_NAME} (convert an official checkpoint with `lseg convert`)")
    return local


def push_to_hub(model: LSeg, repo_id: str, *, private: bool | None = None, token: str | bool | None = None,
                commit_message: str = "Upload LSeg model", revision: str | None = None,
                create_pr: bool = False, model_card: bool = True, **card_fields: str) -> str:
    """Create ``repo_id`` if needed and upload :func:`save_pretrained`'s files; returns the URL of the
    commit (or of the pull request). Offline, not logged in or a failed upload: :class:`LSegError`."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

    # transport errors of the HTTP clients huggingface_hub may use, which it lets through as they are
    network_errors = []
    for module, name in (("httpx2", "TransportError"), ("httpx", "TransportError"), ("requests", "RequestException")):
        with contextlib.suppress(ImportError, AttributeError):
            network_errors.append(getattr(importlib.import_module(module), name))
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
        except (HfHubHTTPError, OSError, *network_errors) as e:
            raise LSegError(f"cannot push to {repo_id!r}: {_one_line(e)} (no network, or the Hub is "
                            "unreachable?)") from None
    url = getattr(info, "pr_url", None) or getattr(info, "commit_url", None)
    return str(url or f"https://huggingface.co/{repo_id}")


def _one_line(e: BaseException) -> str:
    lines = str(e).strip().splitlines()
    return lines[0] if lines else type(e).__name__
