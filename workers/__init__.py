"""scalesweep's compute: teachers, data, networks, training, convex solvers, spectra, the task Ray runs."""
