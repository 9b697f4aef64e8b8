"""Experiments, one module each. Installed as ``qbs_lab.procedures``.

Procedures arrive with the "Procedures, the runner and the run store" work.
"""
