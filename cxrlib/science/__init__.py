"""The science: data splits and pipelines, models, training, metrics, Otsu, Grad-CAM, ensembles, calibration."""
