"""scaling_rec.sweep: from a study's declared sweep to finished runs in the results store.

  spec.py       get_sweep(preset) → RunSpecs (full configs, stable run ids, size/family/budget labels)
  sizes.py      the one size table (hstu/XS..XL, sasrec/XS..XL) with N_dense stated
  store.py      <workdir>/<study>/: run statuses, spec files, run locks, manifest (atomic writes)
  executors.py  inline · local (worker processes running launch.train) · slurm (submitit)
  runner.py     skip finished, resume unfinished, console progress with ETA, summary, overhead
  worker.py     a SLURM job's run (spec file -> scaling_rec.train.run.run_one: cache, lock, trainer)
"""
