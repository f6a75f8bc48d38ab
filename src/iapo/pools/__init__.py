"""Response pools: recorded completions, their file format, importers and validation."""

from __future__ import annotations

from iapo.pools._format import POOL_SCHEMA, dump_pool, load_pool
from iapo.pools._importers import import_renze, import_tot_game24, import_tot_text
from iapo.pools._model import Cell, Pool

__all__ = [
    "POOL_SCHEMA",
    "Cell",
    "Pool",
    "dump_pool",
    "import_renze",
    "import_tot_game24",
    "import_tot_text",
    "load_pool",
]
