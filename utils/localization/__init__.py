"""Localizing new panoramas against a reference database cut from a georeferenced map."""
