perturbation p = global linf eps 8/255
