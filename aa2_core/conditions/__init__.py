"""Conditions from the driving video: environment, objects, pose."""
