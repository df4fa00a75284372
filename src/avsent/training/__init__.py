"""Training, evaluation, checkpoints and reports.

``train(config, run_dir=...)`` runs everything; the modules are usable on their own:
:mod:`.loop` (the optimisation loop), :mod:`.metrics`, :mod:`.checkpoint`, :mod:`.report`,
:mod:`.schedule`, :mod:`.distributed`, :mod:`.augment`.
"""
