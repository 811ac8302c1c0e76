"""Presentation: figures, tables, labels and the misclassified-image widget."""
