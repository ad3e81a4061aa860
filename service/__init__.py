"""scalesweep's core: the shared contract (spec, results, errors), storage, orchestration, theory.

Kept empty on purpose: ``import service.spec`` must not pull SQLAlchemy into a Ray worker.
"""
