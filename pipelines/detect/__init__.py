"""Detections over the lake, their enrichment, and their evaluation against labelled traffic."""
