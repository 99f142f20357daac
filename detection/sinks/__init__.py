"""Writers of the pipeline's outputs (annotated video, and the file formats of later stages)."""
