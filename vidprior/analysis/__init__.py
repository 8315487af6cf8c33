"""Looking inside a trained model and shipping it: Grad-CAM, kernel-slice energy, prediction on files, export and
profiling. Each tool is a ``vidprior`` command (:mod:`vidprior.analysis.commands`)."""
