"""``python -m aggregator``: the same as the ``aggregator`` command."""

from __future__ import annotations

from ._cli import main_exit

if __name__ == "__main__":
    main_exit()
