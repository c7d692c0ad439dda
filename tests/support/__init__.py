"""Test helpers, each written once: generators with planted flaws (``planted``), real-style
generators as people write them (``corpus``, ``corpus_seeded``), faults (``faulty``), the notebook
API's factories (``api_factories``), user models (``models``), and a child that hangs at exit.

They are named ``support.MODULE:CALLABLE`` as plug-ins: ``tests/`` is on ``sys.path`` (pytest's
``pythonpath``), and feedbench's child processes inherit it.
"""
