"""``plait.explain``: for a function and items (``_auto``), or for a pipeline (``_pipeline``).

Kept apart so ``import plait`` does not import the pipeline machinery (and asyncio with it): a
flow can only exist once ``_pipeline`` was imported.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, overload

if TYPE_CHECKING:
    from typing import Unpack

    from ._decision import Decision
    from ._options import RunOptions
    from ._pipeline import FlowPlan, Pipeline

_NO_ITEMS: Any = object()


@overload
def explain(flow: Pipeline, /) -> FlowPlan: ...
@overload
def explain(fn: Callable[..., Any], items: Any, /, **opts: Unpack[RunOptions]) -> Decision: ...
def explain(fn: Any, items: Any = _NO_ITEMS, /, **opts: Any) -> Decision | FlowPlan:
    """What ``plait.map(fn, items, **opts)`` would choose, and why; or, for a pipeline,
    ``plait.explain(flow)``: each stage's backend, workers and why (nothing is run).

    For a function this measures as ``map`` does: it calls ``fn`` on the first items (for
    about 50 ms, or up to 64 microsecond calls; CPU-bound calls then also run a few more on
    2-4 threads), so a generator passed here is consumed that far. The results are dropped.
    """
    flows = sys.modules.get(f"{__package__}._pipeline")
    if flows is not None and isinstance(fn, flows.Pipeline):
        if items is not _NO_ITEMS or opts:
            raise TypeError("plait.explain(flow) takes the flow alone")
        return flows.explain_flow(fn)  # type: ignore[no-any-return]
    if items is _NO_ITEMS:
        raise TypeError("plait.explain(fn, items, **options) needs the items (or a pipeline)")
    from ._auto import explain as explain_call

    return explain_call(fn, items, **opts)
