"""Orchestration: the runner loop (:mod:`.runner`), where tasks run (:mod:`.executor`) and
how runs are packed into tasks (:mod:`.packing`).

It never imports ``workers``: the task function and the Ray executor are injected by the
composition root (``cli.runtime``). Import from the modules: this package's ``__init__``
stays empty so that a Ray worker importing the executor protocol loads no SQL code.
"""
