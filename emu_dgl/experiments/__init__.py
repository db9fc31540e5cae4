"""Many runs of one config: side-by-side arms and seeds (:mod:`~emu_dgl.experiments.compare`)
and hyperparameter search (:mod:`~emu_dgl.experiments.tune`)."""
