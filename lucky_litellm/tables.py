"""Fitting a rich table to a width without splitting or cutting a header.

Rich narrows the widest wrappable columns first and ignores a column's minimum while it does, so
a header can end up folded (`IN_A_RO`/`W`) or cut (`THRESHO…`). Here each column gets a fixed
width instead: its natural width, the widest ones narrowed one character at a time down to
their floor (at least the header) until the table fits; their values wrap, the headers never.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def chrome_width(table: Any) -> int:
    """What rich adds around the cells of `table`: cell padding, column dividers, the edges."""
    return int(table._extra_width) + sum(table._get_padding_width(i) for i in range(len(table.columns)))


def fit_columns(
    table: Any,
    width: int,
    natural: Sequence[int],
    floors: Sequence[int],
    preferred: Sequence[int] | None = None,
) -> None:
    """Give each column of `table` a fixed width so the table fits `width` if the floors allow;
    columns are narrowed to their `preferred` floor (e.g. short names kept on one line) before
    any goes below it."""
    widths = [max(n, f) for n, f in zip(natural, floors, strict=True)]
    chrome = chrome_width(table)
    for limit in ([max(p, f) for p, f in zip(preferred, floors, strict=True)] if preferred else [], floors):
        if not limit:
            continue
        while sum(widths) + chrome > width:
            index = max(range(len(widths)), key=lambda i: widths[i] if widths[i] > limit[i] else -1)
            if widths[index] <= limit[index]:
                break
            widths[index] -= 1
    for column, fixed in zip(table.columns, widths, strict=True):
        column.width = fixed
