"""Benchmark evaluation on the 9 IR-TD tasks (docs/method.md, "The benchmark").

``parse`` reads answers, ``metrics`` scores parsed values, ``readers`` loads
annotation and prediction files, ``tasks`` names and infers tasks, ``score``
ties them together (``score_records``, ``score_all``), ``cli`` adds
``irgpt eval score``. Importing this package imports nothing heavy.
"""
