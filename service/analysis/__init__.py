"""Answers computed from the stored runs (numpy/scipy only; cached per sweep state).

* :mod:`.reports` -- the shapes of the answers (what the API serves);
* :mod:`.grouping` -- axis values, which runs count, groups of runs;
* :mod:`.exponents` -- fitted exponents per group (``GET .../exponents``);
* :mod:`.theory_comparison` -- the state evolution next to the measurement (``.../theory``);
* :mod:`.phase_diagram` -- exponent against the decay power of lambda (``.../phase-diagram``);
* :mod:`.spectra_summary` -- spectral exponents next to the risk, one run's spectrum next to
  its prediction (``.../spectra/summary``, ``/runs/{id}/spectrum?theory=true``);
* :mod:`.cache` -- answers cached per sweep state.
"""
