"""AVA preparation in PySlowFast's layout: download → cut → frames → lists → annotations → proposals.

Each step reads the previous step's folder under the dataset root, so a user can start at any step
with files of their own, and each returns a :class:`~data_prep.ava.report.StepReport`.
"""
