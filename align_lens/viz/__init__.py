"""Figures (plotly) and the self-contained HTML report."""
