perturbation p = samplewise linf eps []
