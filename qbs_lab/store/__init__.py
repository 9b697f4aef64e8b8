"""Where runs live: one zarr store per run (:mod:`.run_store`) and the SQLite catalog of runs
(:mod:`.catalog`), both under the data directory::

    data/<YYYY-MM-DD>/<run_id>-<procedure>.zarr
    data/catalog.sqlite
"""

from qbs_lab.store.catalog import Catalog, CatalogError, RunRecord
from qbs_lab.store.run_store import Damage, RunStore, RunStoreError, live_dataset

__all__ = ["Catalog", "CatalogError", "Damage", "RunRecord", "RunStore", "RunStoreError", "live_dataset"]
