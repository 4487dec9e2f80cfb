"""The Dask cluster of ``ped sweep`` and ``ped score --workers``: :func:`dask_client`."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover - typing only
    import distributed

__all__ = ["dask_client", "require_distributed"]

logger = logging.getLogger("ped.tools.sweep")


def require_distributed() -> Any:
    """The ``distributed`` module, or an :class:`ImportError` that names the optional group to
    install (``ped[sweep]``): ``ped sweep`` and ``ped score --workers`` call it before any work."""
    try:
        import distributed
    except ImportError:
        raise ImportError(
            "this command runs on Dask, which is not installed: pip install 'ped[sweep]'"
        ) from None
    return distributed


@contextlib.contextmanager
def dask_client(
    scheduler: str | distributed.Client | None, n_workers: int, threads_per_worker: int
) -> Iterator[distributed.Client]:
    """A client of ``scheduler``: an address (``tcp://host:8786``), an existing client, or
    ``None``, a ``LocalCluster`` of ``n_workers`` processes with ``threads_per_worker`` threads,
    closed on exit (``ped sweep`` and ``ped score --workers``)."""
    distributed = require_distributed()

    if isinstance(scheduler, distributed.Client):
        yield scheduler
        return
    if scheduler is not None:
        logger.info("connecting to the Dask scheduler at %s", scheduler)
        with distributed.Client(scheduler) as client:
            yield client
        return
    logger.info(
        "starting a LocalCluster: %d worker process(es) x %d thread(s)",
        n_workers,
        threads_per_worker,
    )
    with distributed.LocalCluster(
        n_workers=n_workers,
        threads_per_worker=threads_per_worker,
        processes=True,
        dashboard_address=":0",
    ) as cluster, distributed.Client(cluster) as client:
        logger.info("Dask dashboard: %s", client.dashboard_link)
        yield client
