"""scalesweep's compute: teachers, data, networks, training, convex solvers, spectra, tasks."""
