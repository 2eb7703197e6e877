"""Explanations and shortcut audits: Grad-CAM, FaceMass, counterfactual test sets, figures."""
