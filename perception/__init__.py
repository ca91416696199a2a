"""Perception: BEV encoders, warping, fusion, detection heads, boxes, NMS and evaluation."""
