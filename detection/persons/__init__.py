"""Person detectors behind one small interface: frames in, normalized person boxes and scores out."""
