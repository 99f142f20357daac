"""Readers and writers of the file formats the pipeline exchanges (one of each per format)."""
