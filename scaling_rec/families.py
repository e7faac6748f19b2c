"""The model families by config schema: the one table every layer may import (it imports nothing of ours).

scaling_rec.config holds the sequential retrievers' schema, scaling_rec.ctr_config the CTR models',
scaling_rec.tiger_config TIGER's. A module that only needs to know which schema a family uses (the run
id, data provenance, the size table) reads it here instead of importing the schema modules.

The CTR families are the modules of scaling_rec/models/ctr/ (one file each, declaring the family: see that
package), listed from the directory without importing them, so a new CTR family needs no entry here.
"""

import pathlib
import pkgutil

SEQUENCE_FAMILIES = ("hstu", "sasrec")
_CTR_DIR = pathlib.Path(__file__).parent / "models" / "ctr"
CTR_FAMILIES = tuple(sorted(m.name for m in pkgutil.iter_modules([str(_CTR_DIR)]) if not m.name.startswith("_")))
TIGER_FAMILIES = ("tiger",)
