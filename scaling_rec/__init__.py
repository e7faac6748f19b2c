"""scaling_rec: scaling-law studies of generative recommenders (HSTU, SASRec, Wukong, DLRM, TIGER)."""

__version__ = "0.1.0"
