"""Thin Streamlit layer: caches, session-state keys and map helpers shared by the pages."""
