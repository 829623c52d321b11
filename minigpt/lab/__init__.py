"""The book's laboratory: experiment harnesses, toy models and stored results.

Nothing in the concept modules of :mod:`minigpt` imports from here (a test checks it); the
chapters and the scripts in ``experiments/`` do.

- :mod:`~minigpt.lab.record`: the stored results in ``lab/results/`` (one JSON format), and
  re-running a stored experiment live to compare it with what was stored.
- :mod:`~minigpt.lab.tiny`: tiny models (``TinyLM``, ``TinyTransformer``, ``DeepMLP``) that train
  in seconds (chapters 4-6).
- :mod:`~minigpt.lab.surfaces`: two-parameter loss surfaces and optimizer paths (chapter 3).
- :mod:`~minigpt.lab.fitting`: a small regression problem for watching training (chapter 3).
- :mod:`~minigpt.lab.sweep`: a scaling-law sweep of tiny GPTs (chapter 9).
- :mod:`~minigpt.lab.isoflop`: IsoFLOP profiles at a fixed budget (chapter 11).
- :mod:`~minigpt.lab.icl`: training and scoring small GPTs for in-context learning (chapter 10).
- :mod:`~minigpt.lab.controlled`: seeded comparisons of architectures (chapter 11).
"""
