"""Response pools: recorded completions, their file format, importers and validation."""

from __future__ import annotations

from iapo.pools._arrays import PoolArrays
from iapo.pools._cache import cache_enabled, cached_tables, code_fingerprint, user_cache_dir
from iapo.pools._dump import dump_pool
from iapo.pools._format import POOL_SCHEMA
from iapo.pools._load import load_pool
from iapo.pools._model import Cell, Pool, full_cell, pool_from_arrays, pool_from_cells
from iapo.pools._renze import import_renze, import_renze_configs
from iapo.pools._tot import import_tot_game24, import_tot_text

__all__ = [
    "POOL_SCHEMA",
    "Cell",
    "Pool",
    "PoolArrays",
    "cache_enabled",
    "cached_tables",
    "code_fingerprint",
    "dump_pool",
    "full_cell",
    "import_renze",
    "import_renze_configs",
    "import_tot_game24",
    "import_tot_text",
    "load_pool",
    "pool_from_arrays",
    "pool_from_cells",
    "user_cache_dir",
]
