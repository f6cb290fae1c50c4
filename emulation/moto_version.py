"""The one moto version every patch in emulation/ was written against.

The patches change private parts of moto; an upgrade must fail loudly at start-up, not
change the world's behaviour silently.
"""

from __future__ import annotations

import moto

PATCHED_MOTO_VERSION = "5.2.5"


def require_patched_moto(patches: str, recheck: str) -> None:
    """Refuse to apply `patches` to any other moto version, saying what to re-check."""
    if moto.__version__ != PATCHED_MOTO_VERSION:
        raise RuntimeError(
            f"{patches} was written for moto {PATCHED_MOTO_VERSION}, found "
            f"{moto.__version__}: {recheck} before upgrading"
        )
