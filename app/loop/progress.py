"""The progress bar of ``collect`` and ``label``: calls done, tokens and dollars spent
(tqdm, from the train extra, on stderr; nothing when it is off or tqdm is missing)."""

from __future__ import annotations

import sys
from typing import Any

from models.labeling.spend import Spend


class Progress:
    def __init__(self, total: int, what: str, enabled: bool) -> None:
        self._bar: Any = None
        if enabled and total:
            try:
                from tqdm import tqdm
            except ImportError:
                return
            self._bar = tqdm(total=total, desc=what, unit="call", file=sys.stderr, leave=True)

    def update(self, spend: Spend) -> None:
        if self._bar is None:
            return
        usd = f"{spend.usd:.4f}" if spend.usd >= 1 else f"{spend.usd:.6f}"
        self._bar.set_postfix_str(
            f"tokens {spend.tokens:,}, ${usd}, errors {spend.errors}", refresh=False
        )
        self._bar.update(1)

    def note(self, text: str) -> None:
        if self._bar is not None:
            self._bar.write(text, file=sys.stderr)
        else:
            print(text, file=sys.stderr)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
