"""The benchmark and league application, built on tandem's Python API.

Tasks (`tasks`), players (`players`, `baselines`), MLGym-style performance profiles and AUP
(`performance_profiles`), Elo matches (`league`), the results store (`results_store`) and their
commands (`cli`). The default suite and its data ship as package data (`suite.toml`, `data/`).
"""
