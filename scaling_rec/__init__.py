"""scaling_rec: scaling-law studies of generative recommenders (HSTU, SASRec, Wukong, DLRM, TIGER)."""

from scaling_rec import host_memory

__version__ = "0.1.0"
HOST_MEMORY_RETAINED = host_memory.apply_default()  # see scaling_rec/host_memory.py
