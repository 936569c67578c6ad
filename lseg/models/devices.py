"""Device checks for the command line and the Python API: a missing device is one line, not a driver
traceback."""

from __future__ import annotations

from typing import TYPE_CHECKING

from lseg.errors import ConfigError

if TYPE_CHECKING:
    import torch

__all__ = ["check_device"]


def check_device(device: str | torch.device, flag: str = "device") -> None:
    """Refuse (:class:`ConfigError`, one line naming ``flag``) a device other than ``cpu``, ``cuda``,
    ``cuda:N`` or ``mps`` that this machine has."""
    import torch  # here: the command line's parser imports this module and must start without torch

    # the command line's --flag, a field marked for it (`device`: lseg.options), or Python's keyword
    use_cpu = f"use {flag} cpu" if flag.startswith(("-", "`")) else f"use {flag}='cpu'"
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError):
        raise ConfigError(f"{flag} {device!r} is not a device: use cpu, cuda or cuda:N") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            why = "this PyTorch has no CUDA support" if torch.version.cuda is None else "no CUDA GPU is visible"
            raise ConfigError(f"{flag} {device}: {why} on this machine; {use_cpu}")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ConfigError(f"{flag} {device}: this machine has {torch.cuda.device_count()} CUDA GPU(s) "
                              f"(cuda:0..cuda:{torch.cuda.device_count() - 1})")
    elif dev.type == "mps":
        if not torch.backends.mps.is_available():
            raise ConfigError(f"{flag} {device}: MPS is not available on this machine; {use_cpu}")
    elif dev.type != "cpu":
        raise ConfigError(f"{flag} {device!r} is not supported: use cpu, cuda or cuda:N")
