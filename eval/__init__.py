"""Evaluation of action detections: AVA frame-mAP and tube video-mAP. Imports no torch."""
