"""Dataset preparation: AVA layout, custom-dataset conversion and the synthetic AVA-format dataset.

Light to import: modules here use numpy, OpenCV and ``detection.structures`` / ``detection.formats``;
video encoding (PyAV) is imported only when something is rendered to disk.
"""
