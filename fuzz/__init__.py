"""Fuzzing every parser of untrusted bytes in this project (see docs/fuzzing.md).

``python -m fuzz`` (what ``scripts/fuzz`` runs) drives each target in its own process with a
budget and prints what it found. Targets live in :mod:`fuzz.targets`; the checks every input goes
through (typed errors only, no hang, no allocation driven by a declared length) in
:mod:`fuzz.engine`.
"""
