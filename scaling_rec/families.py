"""The model families by config schema: the one table every layer may import (it imports nothing).

scaling_rec.config holds the sequential retrievers' schema, scaling_rec.ctr_config the CTR models',
scaling_rec.tiger_config TIGER's. A module that only needs to know which schema a family uses (the run
id, data provenance, the size table) reads it here instead of importing the schema modules.
"""

SEQUENCE_FAMILIES = ("hstu", "sasrec")
CTR_FAMILIES = ("wukong", "dlrm", "dcnv2", "rankmixer")
TIGER_FAMILIES = ("tiger",)
