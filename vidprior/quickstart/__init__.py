"""The built-in quickstart: the paper's comparison in miniature on real data that ships with scikit-learn."""
